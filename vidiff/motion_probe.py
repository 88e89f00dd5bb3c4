r"""Does the prompt steer motion (or shape)? The model's clean-video prediction, per noise level:

  python -m vidiff.motion_probe --workdir=DIR [--num_videos=32 --levels=0.5,0.8,0.9,0.95,1
                                              --context=0 --word=direction]

For held-out clips of the synthetic data (captions 'a COLOR SHAPE moving DIRECTION'), each clip
is noised to level t and the model predicts the clean clip twice from the same x_t: with its
caption, and with one word of it altered. `--word=direction` (default) reverses the direction
(left <-> right, up <-> down) and measures the drift of each prediction along the caption's
direction (pixels the brightness-weighted centroid moves from the first frame to the last; the
clips' own drift is the first line). `--word=shape` swaps the shape (circle -> square ->
triangle -> circle) and measures whether `metrics.adherence`'s shape judge names the TRUE
caption's shape in each prediction (1 or 0; the clips' own score is the first line). The last
column is the fraction of clips whose measure is larger with the true caption.
With --context=K the first K frames are given clean (t = 0, as image-to-video sampling gives
them to a model trained with `diffusion.context`) and only the others are noised.

A model that draws motion from the prompt has 'true' > 'reversed' at high noise, where x_t no
longer shows where the object goes; one that only copies the motion it sees in x_t has
'true' = 'reversed' at every level, and its samples, whose motion is decided at high noise,
move at random. At low noise the shape rows also show whether the model's prediction keeps the
shape that x_t plainly shows (a soft, blurred prediction is judged wrong with either caption).
Writes DIR/motion_probe.json (`--word=shape`: DIR/shape_probe.json).
"""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from etils import epath

from vidiff import cli, generate, inference, video_io
from vidiff.data import pipeline
from vidiff.data.synthetic import DIRECTIONS, SHAPES
from vidiff.errors import check
from vidiff.metrics import adherence
from vidiff.models import text

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Diffusion workdir trained on synthetic data.', required=True)
flags.DEFINE_integer('num_videos', 32, 'Held-out clips to probe.')
flags.DEFINE_list('levels', ['0.5', '0.8', '0.9', '0.95', '0.98', '1.0'], 'Noise levels t.')
flags.DEFINE_integer('seed', 0, 'Seed of the noise.')
flags.DEFINE_integer('context', 0, 'Leading frames given clean (image-to-video).')
flags.DEFINE_enum('word', 'direction', ['direction', 'shape'], 'The caption word to alter.')

REVERSED = {'left': 'right', 'right': 'left', 'up': 'down', 'down': 'up'}
_DIRECTION_WORD = re.compile(rf'\b({"|".join(DIRECTIONS)})\b')
NEXT_SHAPE = {s: SHAPES[(i + 1) % len(SHAPES)] for i, s in enumerate(SHAPES)}
_SHAPE_WORD = re.compile(rf'\b({"|".join(SHAPES)})\b')


def reversed_caption(caption: str) -> str:
  """'a red circle moving left' -> 'a red circle moving right' (every object's direction)."""
  adherence.parse_caption(caption)  # a clear error for captions outside the grammar
  return _DIRECTION_WORD.sub(lambda m: REVERSED[m.group(1)], caption)


def swapped_shape_caption(caption: str) -> str:
  """'a red circle moving left' -> 'a red square moving left' (every object's shape, by NEXT_SHAPE)."""
  adherence.parse_caption(caption)
  return _SHAPE_WORD.sub(lambda m: NEXT_SHAPE[m.group(1)], caption)


def direction_of(caption: str) -> np.ndarray:
  """The first object's direction as a unit (dx, dy) float [2]."""
  return np.asarray(DIRECTIONS[adherence.parse_caption(caption)[0]['direction']], np.float32)


def drift(videos, directions) -> np.ndarray:
  """Pixels the brightness-weighted centroid moves from the first frame to the last, along each
  direction: videos float [N, T, H, W, 3] in [-1, 1] on a black background, directions [N, 2]
  (dx, dy) -> float [N]."""
  weight = np.clip(np.asarray(videos, np.float32) + 1., 0., None).sum(-1)  # [N, T, H, W]
  total = weight.sum((2, 3)) + 1e-6
  ys, xs = np.mgrid[:weight.shape[2], :weight.shape[3]]
  centroid = np.stack([(weight * xs).sum((2, 3)), (weight * ys).sum((2, 3))], -1) / total[..., None]
  return ((centroid[:, -1] - centroid[:, 0]) * np.asarray(directions)).sum(-1)


def shape_judged_right(videos, captions) -> np.ndarray:
  """float [N]: 1 where `adherence`'s shape judge names the first object's shape of each caption
  in videos float [N, T, H, W, 3] in [-1, 1]."""
  return np.array([adherence.score(video_io.to_uint8(v), c)['shape']
                   for v, c in zip(videos, captions)], np.float32)


def measure(word: str, videos, captions) -> np.ndarray:
  """float [N]: the drift along each caption's direction (px), or whether its shape is judged
  right (1 / 0)."""
  if word == 'shape':
    return shape_judged_right(videos, captions)
  return drift(videos, np.stack([direction_of(c) for c in captions]))


ALTER = {'direction': reversed_caption, 'shape': swapped_shape_caption}


def probe(predict, clips, captions, levels, schedule, seed: int = 0,
          context: int = 0, word: str = 'direction') -> list[dict]:
  """One row per noise level: {'t', 'alpha', 'true', 'altered', 'true_gt_altered'}.

  predict(x_t [N,T,H,W,3], t [N, T], captions) -> x0 prediction [N,T,H,W,3] in [-1, 1];
  clips float [N,T,H,W,3] in [-1, 1]; the first `context` frames are given clean (t = 0) and
  kept in the prediction. Both predictions are measured (`measure`) against the true captions;
  'true' and 'altered' are means over clips (drift in pixels, or the fraction judged right).
  """
  altered = [ALTER[word](c) for c in captions]
  eps = jax.random.normal(jax.random.PRNGKey(seed), clips.shape)
  clean = (np.arange(clips.shape[1]) < context)[None, :, None, None, None]
  rows = []
  for level in levels:
    t = jnp.where(clean[:, :, 0, 0, 0], 0., jnp.full(clips.shape[:2], level, jnp.float32))
    alpha, sigma = schedule.marginal(t)
    x_t = alpha[..., None, None, None] * clips + sigma[..., None, None, None] * eps
    true, other = (measure(word, np.where(clean, clips, predict(x_t, t, c)), captions)
                   for c in (captions, altered))
    rows.append(dict(t=float(level), alpha=float(schedule.marginal(jnp.float32(level))[0]),
                     true=float(true.mean()), altered=float(other.mean()),
                     true_gt_altered=float((true > other).mean())))
  return rows


HEADERS = {'direction': ('drift, true caption (px)', 'drift, reversed caption (px)',
                         'true > reversed'),
           'shape': ('shape judged right, true caption', 'shape judged right, swapped caption',
                     'true > swapped')}


def table(rows: list[dict], real: float, word: str = 'direction') -> str:
  """The probe's rows as a markdown table, the clips' own measure first."""
  lines = ['| t | alpha | ' + ' | '.join(HEADERS[word]) + ' |', '|---:|---:|---:|---:|---:|',
           f'| clips | | {real:.2f} | | |']
  lines += [f'| {r["t"]:g} | {r["alpha"]:.3f} | {r["true"]:.2f} | {r["altered"]:.2f} | '
            f'{r["true_gt_altered"]:.2f} |' for r in rows]
  return '\n'.join(lines)


def model_predictor(setup, params):
  """predict(x_t, t, captions) -> the model's x0 prediction (guidance 1: the prompt alone)."""
  m = setup.config.model.text

  @jax.jit
  def x0_hat(params, x_t, t, tokens):
    return generate.guided_denoise_fn(setup, params, tokens, 1.0)(x_t, t)[0]

  def predict(x_t, t, captions):
    tokens = jnp.asarray(text.tokenize(captions, m.max_len, m.vocab_size))
    return np.clip(np.asarray(x0_hat(params, x_t, t, tokens)), -1., 1.)
  return predict


def main(argv):
  del argv
  setup = inference.saved_setup(FLAGS.workdir)
  data = setup.config.data
  check(data.source == 'synthetic',
        f'data.source={data.source!r}: the motion probe needs captions that state a direction, '
        f'i.e. a workdir trained on the synthetic shapes (data.source=synthetic).')
  levels = [float(v) for v in FLAGS.levels]
  check(all(0. <= v <= 1. for v in levels), f'--levels={FLAGS.levels}: each must be in [0, 1].')
  check(0 <= FLAGS.context < data.num_frames,
        f'--context={FLAGS.context}: give 0 to {data.num_frames - 1} clean leading frames '
        f'(clips have {data.num_frames}).')
  state = inference.restore_state(FLAGS.workdir, setup)
  clips, captions = pipeline.held_out_clips(data, FLAGS.num_videos)
  clips = pipeline.as_float(jnp.asarray(clips))
  with setup.context():
    rows = probe(model_predictor(setup, state.ema_params), clips, captions, levels,
                 setup.schedule, FLAGS.seed, FLAGS.context, FLAGS.word)
  real = float(measure(FLAGS.word, clips, captions).mean())
  print(f'{FLAGS.num_videos} held-out clips, step {int(state.step)}, EMA parameters'
        + (f', first {FLAGS.context} frame(s) given clean:' if FLAGS.context else ':'))
  print(table(rows, real, FLAGS.word))
  name = 'motion_probe' if FLAGS.word == 'direction' else f'{FLAGS.word}_probe'
  out = epath.Path(FLAGS.workdir) / (f'{name}_context{FLAGS.context}.json' if FLAGS.context
                                     else f'{name}.json')
  out.write_text(json.dumps(dict(step=int(state.step), num_videos=FLAGS.num_videos,
                                 context=FLAGS.context, word=FLAGS.word, real=real, rows=rows),
                            indent=1))
  print(f'-> {out}')


if __name__ == '__main__':
  cli.run(main)
