"""Checks the flow estimators against the synthetic dataset's exact flow.

  python -m vidiff.metrics.flow_check [--videos=32 --resolution=64 --frames=8]

Renders synthetic videos (`vidiff.data.synthetic`, source length = --frames, so objects cross
half or more of the frame) and prints a markdown table of the mean end-point error (pixels)
of OpenCV DIS, OpenCV Farneback, the JAX estimator and a zero-flow baseline, over object
pixels (non-black in frame t) and over all pixels, plus milliseconds per frame pair (JAX
after compilation).
"""

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from vidiff.data.synthetic import MOTIONS, SyntheticConfig, SyntheticVideos
from vidiff.errors import UserError, check
from vidiff.metrics import flow as cv_flow
from vidiff.metrics import jax_flow


def render_batch(videos: int, resolution: int, frames: int, max_objects: int = 1,
                 motion: str = 'constant', seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Returns (uint8 [N, T, H, W, 3] videos, float32 [N, T-1, H, W, 2] true forward flows)."""
  check(videos >= 1 and frames >= 2, f'need --videos >= 1 and --frames >= 2, got {videos} '
        f'and {frames}.')
  config = SyntheticConfig(resolution=resolution, length=frames, max_objects=max_objects,
                           motion=motion)
  source = SyntheticVideos(videos, seed, config)
  outs = [source.read(i, np.arange(frames)) for i in range(videos)]
  return np.stack([o['video'] for o in outs]), np.stack([o['flow'] for o in outs])


def estimate(method: str, videos: np.ndarray) -> tuple[np.ndarray, float]:
  """Returns (flows float32 [N, T-1, H, W, 2], seconds) for 'dis' | 'farneback' | 'jax' | 'zero'."""
  if method == 'zero':
    return np.zeros(videos.shape[:-1] + (2,), np.float32)[:, 1:], 0.0
  if method == 'jax':
    run = jax.jit(jax_flow.flow)
    x = jnp.asarray(videos, jnp.float32) / 127.5 - 1
    run(x).block_until_ready()  # compile
    start = time.perf_counter()
    return np.asarray(run(x).block_until_ready()), time.perf_counter() - start
  start = time.perf_counter()
  flows = np.stack([cv_flow.flow(v, method) for v in videos])
  return flows, time.perf_counter() - start


def table(videos: np.ndarray, true: np.ndarray) -> str:
  """Markdown table: EPE over object and all pixels and ms per pair, one row per method."""
  objects = videos[:, :-1].any(-1)
  pairs = true.shape[0] * true.shape[1]
  rows = ['| method | EPE object px | EPE all px | ms / pair |', '|---|---|---|---|']
  for method in ('dis', 'farneback', 'jax', 'zero'):
    pred, seconds = estimate(method, videos)
    rows.append(f'| {method} | {cv_flow.epe(pred, true, objects):.3f} | '
                f'{cv_flow.epe(pred, true):.3f} | {1000 * seconds / pairs:.2f} |')
  return '\n'.join(rows)


def main(argv=None) -> None:
  """Parses the command line, renders the videos, prints the table."""
  parser = argparse.ArgumentParser(prog='python -m vidiff.metrics.flow_check',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--videos', type=int, default=32)
  parser.add_argument('--resolution', type=int, default=64)
  parser.add_argument('--frames', type=int, default=8)
  parser.add_argument('--max_objects', type=int, default=1, choices=(1, 2))
  parser.add_argument('--motion', default='constant', choices=MOTIONS)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  try:
    videos, true = render_batch(args.videos, args.resolution, args.frames, args.max_objects,
                                args.motion, args.seed)
  except (UserError, ValueError) as e:
    sys.exit(f'vidiff: error: {e}')
  print(f'{args.videos} synthetic videos, {args.frames} frames at {args.resolution}x'
        f'{args.resolution}, max_objects={args.max_objects}, motion={args.motion}; mean speed '
        f'{np.linalg.norm(true, axis=-1)[videos[:, :-1].any(-1)].mean():.2f} px/frame on objects.')
  print(table(videos, true))


if __name__ == '__main__':
  main()
