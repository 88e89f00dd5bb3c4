r"""Sampling benchmark: sampler cost against the model's forward pass, and long videos.

  python -m vidiff.sample_bench --workdir=DIR [--lengths=16,32,64 --prompts=16 --steps=50]

Prints two tables (and writes them, with JSON and a PNG of every video's frames per long-video
row, to DIR/sample_bench/):
1. Speed: for each sampler, wall time of one jitted sampling call against (model calls x one
   jitted guided forward pass on the same batch), measured in the same run. The ratio is the
   sampler's overhead: 1.00 means the loop costs nothing beyond the model.
2. Long videos: for each length in --lengths and long-video mode in --rows, after a reference
   row of one chunk (the training clip length), on the same prompts: the share of videos whose
   prompted object persists and of each way it did not (`metrics/persistence.py`: vanished and
   came back, teleported, faded out, changed colour or shape), whole-video prompt adherence
   (direction from the full track), the seam ratios of the persisting videos (mean frame
   difference, and warping error, at chunk boundaries over inside chunks; 1.0: seams are
   invisible) and seconds per video. Below it, the mean frame difference by pair position in
   plain one-chunk samples: how the model's motion depends on where a frame sits in its clip.

The prompts are the synthetic grammar's: 'bouncing' ones for models whose data has bouncing
videos (a constant motion leaves the frame within 64 frames), else 'moving' (--motion).
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from etils import epath

from vidiff import cli, generate, inference, metric_writer, video_io
from vidiff.data import pipeline, synthetic
from vidiff.diffusion import long_video, samplers
from vidiff.errors import check
from vidiff.metrics import flow, persistence
from vidiff.models import text

FLAGS = flags.FLAGS
LONG_ROWS = ('splice', 'trim', 'reconstruction', 'window', 'unanchored', 'freenoise')
DEFAULT_ROWS = ('splice', 'trim', 'window', 'unanchored', 'freenoise')


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing the module defines none)."""
  flags.DEFINE_string('workdir', None, 'Training workdir with checkpoints.', required=True)
  flags.DEFINE_list('lengths', ['16', '32', '64'], 'Frames of the long videos.')
  flags.DEFINE_integer('prompts', 16, 'Prompts (videos) per row; the speed table\'s batch is 8.')
  flags.DEFINE_enum('motion', None, ['constant', 'bounce'], 'Prompts: moving or bouncing objects '
                    '(default: bouncing if the model\'s data has them).')
  flags.DEFINE_integer('steps', 50, 'Sampler steps.')
  flags.DEFINE_integer('repeats', 3, 'Timed repetitions of the speed table (the median).')
  flags.DEFINE_bool('speed', True, 'Measure the speed table.')
  flags.DEFINE_float('reconstruction', 2.0, 'Reconstruction guidance weight of the row that '
                     'uses it.')
  flags.DEFINE_integer('trim', 3, 'Trim of the row that drops each chunk\'s last frames.')
  flags.DEFINE_list('rows', list(DEFAULT_ROWS), 'Long-video modes to measure (of '
                    f'{", ".join(LONG_ROWS)}); each samples the prompts once per length. splice: '
                    'chunks continuing clean frames; trim: the same, each chunk\'s last --trim '
                    'frames sampled again by the next; reconstruction: splice by reconstruction '
                    'guidance; window: sliding windows, each anchored on a clean frame; '
                    'unanchored: free sliding windows; freenoise: anchored windows with FreeNoise.')
  flags.DEFINE_string('out', None, 'Output directory (default: WORKDIR/sample_bench).')


def median_seconds(fn, repeats: int) -> float:
  """Median wall time of fn() (blocking on its result) after one warm-up call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def speed_rows(setup, params, prompts, steps: int, repeats: int) -> list[dict]:
  """One row per sampler: wall time vs model calls x the guided forward pass."""
  cfg = setup.config
  res, frames, batch = cfg.data.resolution, cfg.data.num_frames, len(prompts)
  tokens = jnp.asarray(text.tokenize(prompts, cfg.model.text.max_len, cfg.model.text.vocab_size))
  noise = jax.random.normal(jax.random.PRNGKey(0), (batch, frames, res, res, 3))
  known, mask = jnp.zeros_like(noise), jnp.zeros((frames,))
  guidance = cfg.sample.guidance

  @jax.jit
  def forward(params, x, t):
    return generate.guided_denoise_fn(setup, params, tokens, guidance)(x, t)

  with setup.context():
    t = jnp.full((batch,), 0.5)
    forward_s = median_seconds(lambda: forward(params, noise, t), repeats)
    rows = []
    for name in samplers.SAMPLERS:
      options = generate.Options(num_frames=frames, sampler=name, steps=steps, guidance=guidance)
      fn = generate.sampler_fn(setup, options)
      key = jax.random.PRNGKey(1)
      wall = median_seconds(lambda: fn(params, tokens, noise, key, known, mask), repeats)
      calls = samplers.model_calls(name, steps)
      rows.append(dict(sampler=name, steps=steps, model_calls=calls, wall_s=wall,
                       forward_ms=1e3 * forward_s, ratio=wall / (calls * forward_s)))
  return rows


def frame_differences(videos: np.ndarray) -> np.ndarray:
  """Mean |frame t+1 - frame t| [T - 1] of uint8 videos [N, T, H, W, 3], over videos and pixels."""
  return np.abs(np.diff(videos.astype(np.float32), axis=1)).mean(axis=(0, 2, 3, 4))


def warping_errors(videos: np.ndarray) -> np.ndarray:
  """`flow.warping_error` [T - 1] of each pair of consecutive frames, pooled over videos: unlike
  the frame difference it does not count coherent motion, only what the flow cannot explain."""
  return np.array([flow.warping_error(videos[:, t:t + 2]) for t in range(videos.shape[1] - 1)])


def seam_ratio(per_pair: np.ndarray, boundaries: list[int]) -> tuple[float, float, float]:
  """(mean of per_pair [T - 1] at pairs (b - 1, b) for b in boundaries, inside, their ratio)."""
  at = np.zeros(len(per_pair), bool)
  at[[b - 1 for b in boundaries]] = True
  seam, inside = float(per_pair[at].mean()), float(per_pair[~at].mean())
  return seam, inside, seam / inside


def position_profile(setup, params, prompts, steps: int) -> list[float]:
  """Mean |frame difference| [chunk - 1] by pair position in one-chunk samples."""
  options = generate.options_from_config(setup.config, steps=steps)
  videos = generate.generate(setup, params, prompts, options)
  return frame_differences(videos).round(2).tolist()


def new_frame_starts(num_frames: int, chunk: int, overlap: int, trim: int = 0) -> list[int]:
  """The first frame each spliced chunk after the first samples (where seams would show)."""
  return [s + chunk - trim for s in long_video.chunk_starts(num_frames, chunk, overlap, trim)[:-1]]


def variant(name: str, trim: int, reconstruction: float) -> dict:
  """The `generate.Options` overrides of the long-video row `name` (of LONG_ROWS)."""
  return {'splice': dict(long_mode='splice', trim=0),
          'trim': dict(long_mode='splice', trim=trim),
          'reconstruction': dict(long_mode='splice', trim=0, reconstruction=reconstruction),
          'window': dict(long_mode='window'),
          'unanchored': dict(long_mode='window', anchor=False),
          'freenoise': dict(long_mode='window', freenoise=True)}[name]


def long_rows(setup, params, prompts, lengths, steps: int, names=DEFAULT_ROWS, trim: int = 3,
              reconstruction: float = 2.0, max_speed: float | None = None,
              grids=None) -> list[dict]:
  """One row per video length of `lengths` and long-video mode of `names` (LONG_ROWS), after a
  reference row of one chunk (the training clip length): the share of videos whose object
  persists and each `persistence` flag, whole-video prompt adherence, seam ratios of the videos
  that persist (frame difference and warping error at the plain splice's chunk boundaries, or
  the trimmed splice's, over inside them; nan when none persists) and seconds per video.
  grids: a directory to write each row's videos to, as a PNG of frames (a row per video)."""
  chunk = setup.config.data.num_frames
  plans = [(chunk, 'one chunk', {})] + [(n, name, variant(name, trim, reconstruction))
                                         for n in lengths if n > chunk for name in names]
  rows = []
  for frames, name, overrides in plans:
    options = generate.options_from_config(setup.config, num_frames=frames, steps=steps,
                                           **overrides)
    if frames > chunk and generate.overlap_of(setup, options, chunk) + options.trim >= chunk:
      continue  # a trim that leaves a chunk no new frames
    start = time.perf_counter()
    videos = generate.generate(setup, params, prompts, options)
    wall = time.perf_counter() - start
    scores = [persistence.judge(v, p, chunk, max_speed) for v, p in zip(videos, prompts)]
    mean = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
    kept = videos[[s['persists'] == 1. for s in scores]]
    overlap = generate.overlap_of(setup, generate.Options(num_frames=frames), chunk)
    boundaries = new_frame_starts(frames, chunk, overlap, options.trim) if frames > chunk else []
    ratios = ([seam_ratio(frame_differences(kept), boundaries)[2],
               seam_ratio(warping_errors(kept), boundaries)[2]] if len(kept) and boundaries
              else [float('nan')] * 2)
    rows.append(dict(frames=frames, mode=name, **mean, seam_ratio=ratios[0],
                     warp_ratio=ratios[1], s_per_video=wall / len(prompts)))
    if grids is not None:
      path = epath.Path(grids) / f'{frames}_{"_".join(name.split())}.png'
      video_io.write_image(path, video_io.grid(video_io.upscale(videos, 64)))
  return rows


def markdown(speed: list[dict], rows: list[dict], device: str, prompts: int,
             profile: list[float] | None = None) -> str:
  lines = []
  if speed:
    lines += [f'Sampler speed on {device} (guided forward pass = 1 model call):', '',
              '| sampler | steps | model calls | wall s | forward ms | wall / (calls x forward) |',
              '|---|---|---|---|---|---|']
    lines += [f'| {r["sampler"]} | {r["steps"]} | {r["model_calls"]} | {r["wall_s"]:.3f} | '
              f'{r["forward_ms"]:.2f} | {r["ratio"]:.3f} |' for r in speed]
    lines.append('')
  if rows:
    lines += [f'Long videos, {prompts} prompts: share of videos whose object persists and of each '
              'failure, whole-video adherence, seam ratios of the persisting videos:', '',
              '| frames | mode | persists | vanish | teleport | fade | recolor | reshape | color '
              '| direction | shape | all | seam ratio | warping-error ratio | s / video |',
              '|' + '---|' * 15]
    cell = lambda v: '-' if np.isnan(v) else f'{v:.2f}'
    lines += [f'| {r["frames"]} | {r["mode"]} | ' + ' | '.join(
        f'{r[k]:.2f}' for k in ('persists', *persistence.FLAGS, 'color', 'direction', 'shape',
                                'all')) +
        f' | {cell(r["seam_ratio"])} | {cell(r["warp_ratio"])} | {r["s_per_video"]:.1f} |'
        for r in rows]
  if profile:
    lines += ['', f'Mean |frame difference| by pair position in {len(profile) + 1}-frame samples: '
              + ' '.join(f'{d:.2f}' for d in profile)]
  return '\n'.join(lines)


def bench_prompts(data_config, count: int, motion: str | None) -> list[str]:
  """`count` prompts of the synthetic grammar; motion None: 'bounce' for data that has bouncing
  videos (long motion stays in the frame), else 'constant'."""
  if motion is None:
    motion = 'constant' if data_config.synthetic.motion == 'constant' else 'bounce'
  return synthetic.example_prompts(count, seed=1, max_objects=data_config.synthetic.max_objects,
                                   motion=motion)


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.rows) - set(LONG_ROWS))
  check(not unknown, f'--rows: unknown {", ".join(unknown)}; use some of {", ".join(LONG_ROWS)}.')
  check(all(n.isdigit() and int(n) > 0 for n in FLAGS.lengths),
        f'--lengths={",".join(FLAGS.lengths)}: use frame counts, e.g. --lengths=16,32,64.')
  setup, state = inference.restore_setup(FLAGS.workdir)
  cfg = setup.config
  check(cfg.data.source == 'synthetic', f'vidiff.sample_bench judges the synthetic data\'s '
        f'prompts; this model was trained on data.source={cfg.data.source!r}.')
  prompts = bench_prompts(cfg.data, FLAGS.prompts, FLAGS.motion)
  out = epath.Path(FLAGS.out or epath.Path(FLAGS.workdir) / 'sample_bench')
  out.mkdir(parents=True, exist_ok=True)
  source = pipeline.make_source(cfg.data, 'train').config
  speed = (speed_rows(setup, state.ema_params, prompts[:8], FLAGS.steps, FLAGS.repeats)
           if FLAGS.speed else [])
  rows = long_rows(setup, state.ema_params, prompts, [int(n) for n in FLAGS.lengths],
                   FLAGS.steps, tuple(FLAGS.rows), FLAGS.trim, FLAGS.reconstruction,
                   synthetic.max_speed(source, cfg.data.frame_stride), out / 'grids')
  profile = position_profile(setup, state.ema_params, prompts[:8], FLAGS.steps)
  device = f'{jax.devices()[0].device_kind} x{jax.device_count()}'
  table = markdown(speed, rows, device, len(prompts), profile)
  (out / 'sample_bench.md').write_text(table + '\n')
  (out / 'sample_bench.json').write_text(json.dumps(
      dict(device=device, jax=jax.__version__, prompts=prompts, speed=speed, long=rows,
           profile=profile), indent=1))
  metric_writer.say(table + f'\n\n-> {out}')


if __name__ == '__main__':
  define_flags()
  cli.run(main)
