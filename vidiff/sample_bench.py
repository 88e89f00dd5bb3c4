r"""Sampling benchmark: sampler cost against the model's forward pass, and seams of long videos.

  python -m vidiff.sample_bench --workdir=DIR [--num_frames=64 --prompts=8 --steps=50]

Prints two tables (and writes them, with JSON, to DIR/sample_bench/):
1. Speed: for each sampler, wall time of one jitted sampling call against (model calls x one
   jitted guided forward pass on the same batch), measured in the same run. The ratio is the
   sampler's overhead: 1.00 means the loop costs nothing beyond the model.
2. Seams: `num_frames`-frame videos by latent splicing (and sliding windows for reference, at
   the same frames); the mean absolute frame-to-frame difference at chunk boundaries (the first
   new frame of each chunk against the frame before it) over the same inside chunks, and the
   same ratio of warping errors (`metrics.flow`), which discounts coherent motion. 1.0: seams
   are invisible. Below it, the same difference by pair position in plain one-chunk samples:
   how the model's motion depends on where a frame sits in its clip, splicing aside.
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from etils import epath

from vidiff import cli, generate, inference, metric_writer
from vidiff.data import synthetic
from vidiff.diffusion import long_video, samplers
from vidiff.errors import check
from vidiff.metrics import flow
from vidiff.models import text

FLAGS = flags.FLAGS
SEAM_ROWS = ('splice', 'freenoise', 'reconstruction', 'trim', 'window')


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing the module defines none)."""
  flags.DEFINE_string('workdir', None, 'Training workdir with checkpoints.', required=True)
  flags.DEFINE_integer('num_frames', 64, 'Frames of the long videos for the seam table.')
  flags.DEFINE_integer('prompts', 8, 'Prompts (videos) per measurement; also the batch size.')
  flags.DEFINE_integer('steps', 50, 'Sampler steps.')
  flags.DEFINE_integer('repeats', 3, 'Timed repetitions (the median is reported).')
  flags.DEFINE_float('reconstruction', 2.0, 'Reconstruction guidance weight of the seam row that '
                     'uses it.')
  flags.DEFINE_integer('trim', 2, 'Trim of the seam row that drops each chunk\'s last frames '
                       '(0: no such row).')
  flags.DEFINE_list('rows', list(SEAM_ROWS), 'Seam rows to measure (of '
                    f'{", ".join(SEAM_ROWS)}); each samples the prompts once.')
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


def seam_variants(names, reconstruction: float, trim: int,
                  trim_fits: bool) -> list[tuple[str, bool, float, int]]:
  """(long_mode, freenoise, reconstruction weight, trim) of each row of `names`, in SEAM_ROWS
  order; no trim row when trim is 0 or leaves a chunk no new frames (not `trim_fits`)."""
  variants = dict(splice=('splice', False, 0., 0), freenoise=('splice', True, 0., 0),
                  reconstruction=('splice', False, reconstruction, 0),
                  trim=('splice', False, 0., trim), window=('window', False, 0., 0))
  skip = set() if trim and trim_fits else {'trim'}
  return [variants[n] for n in SEAM_ROWS if n in names and n not in skip]


def seam_rows(setup, params, prompts, num_frames: int, steps: int, reconstruction: float,
              trim: int, names: tuple[str, ...] = SEAM_ROWS) -> list[dict]:
  """Seam statistics of long videos, the rows of `names` (of SEAM_ROWS): by splicing (clean
  context frames or replacement; + FreeNoise; + reconstruction guidance; + trimmed chunk ends)
  and by sliding windows (at the plain splice's boundaries)."""
  cfg = setup.config
  chunk = cfg.data.num_frames
  splice_overlap = generate.overlap_of(setup, generate.Options(num_frames=num_frames), chunk)
  rows = []
  for mode, freenoise, weight, cut in seam_variants(names, reconstruction, trim,
                                                    splice_overlap + trim < chunk):
    options = generate.options_from_config(cfg, num_frames=num_frames, steps=steps,
                                           long_mode=mode, freenoise=freenoise,
                                           reconstruction=weight, trim=cut)
    boundaries = new_frame_starts(num_frames, chunk, splice_overlap, cut)
    start = time.perf_counter()
    videos = generate.generate(setup, params, prompts, options)
    wall = time.perf_counter() - start
    seam, inside, ratio = seam_ratio(frame_differences(videos), boundaries)
    rows.append(dict(mode=mode + (' + freenoise' if freenoise else '') +
                     (f' + reconstruction guidance {weight:g}' if weight else '') +
                     (f' + trim {cut}' if cut else ''),
                     overlap=generate.overlap_of(setup, options, chunk),
                     seam_diff=seam, inside_diff=inside, ratio=ratio,
                     warp_ratio=seam_ratio(warping_errors(videos), boundaries)[2], wall_s=wall))
  return rows


def markdown(speed: list[dict], seams: list[dict], num_frames: int, device: str,
             profile: list[float] | None = None) -> str:
  lines = [f'Sampler speed on {device} (guided forward pass = 1 model call):', '',
           '| sampler | steps | model calls | wall s | forward ms | wall / (calls x forward) |',
           '|---|---|---|---|---|---|']
  lines += [f'| {r["sampler"]} | {r["steps"]} | {r["model_calls"]} | {r["wall_s"]:.3f} | '
            f'{r["forward_ms"]:.2f} | {r["ratio"]:.3f} |' for r in speed]
  lines += ['', f'Seams of {num_frames}-frame videos (mean |frame difference|, uint8 levels):', '',
            '| mode | overlap | at chunk boundaries | inside chunks | ratio | warping-error ratio '
            '| wall s |', '|---|---|---|---|---|---|---|']
  lines += [f'| {r["mode"]} | {r["overlap"]} | {r["seam_diff"]:.2f} | {r["inside_diff"]:.2f} | '
            f'{r["ratio"]:.2f} | {r["warp_ratio"]:.2f} | {r["wall_s"]:.1f} |' for r in seams]
  if profile:
    lines += ['', f'Mean |frame difference| by pair position in {len(profile) + 1}-frame samples: '
              + ' '.join(f'{d:.2f}' for d in profile)]
  return '\n'.join(lines)


def main(argv):
  del argv
  unknown = sorted(set(FLAGS.rows) - set(SEAM_ROWS))
  check(not unknown, f'--rows: unknown {", ".join(unknown)}; use some of {", ".join(SEAM_ROWS)}.')
  setup, state = inference.restore_setup(FLAGS.workdir)
  cfg = setup.config
  prompts = synthetic.example_prompts(FLAGS.prompts, seed=1,
                                      max_objects=cfg.data.synthetic.max_objects)
  speed = speed_rows(setup, state.ema_params, prompts, FLAGS.steps, FLAGS.repeats)
  seams = seam_rows(setup, state.ema_params, prompts, FLAGS.num_frames, FLAGS.steps,
                    FLAGS.reconstruction, FLAGS.trim, tuple(FLAGS.rows))
  profile = position_profile(setup, state.ema_params, prompts, FLAGS.steps)
  device = f'{jax.devices()[0].device_kind} x{jax.device_count()}'
  table = markdown(speed, seams, FLAGS.num_frames, device, profile)
  out = epath.Path(FLAGS.out or epath.Path(FLAGS.workdir) / 'sample_bench')
  out.mkdir(parents=True, exist_ok=True)
  (out / 'sample_bench.md').write_text(table + '\n')
  (out / 'sample_bench.json').write_text(json.dumps(
      dict(device=device, jax=jax.__version__, speed=speed, seams=seams, profile=profile),
      indent=1))
  metric_writer.say(table + f'\n\n-> {out}')


if __name__ == '__main__':
  define_flags()
  cli.run(main)
