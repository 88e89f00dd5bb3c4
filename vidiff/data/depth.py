"""Precomputed per-frame depth for real videos: `NAME.depth.npy` next to `NAME.mp4`.

Compute it once per video with any monocular depth model and save a float array [T, H, W]
(one map per decoded frame, at the video's size or any other) with `numpy.save`. Such models
return arbitrary units (often inverse depth); `unit_depth` maps a video's maps to the [0, 1]
convention of the synthetic sources (0 nearest, 1 farthest) that `controlnet.depth_hint` takes.
"""

import pathlib

import numpy as np

from vidiff.errors import UserError

SUFFIX = '.depth.npy'


class DepthFileError(UserError):
  """A depth file is missing or is not a float array [T, H, W]."""


def depth_path(video_path) -> pathlib.Path:
  """'dir/clip.mp4' -> 'dir/clip.depth.npy'."""
  path = pathlib.Path(video_path)
  return path.with_name(path.stem + SUFFIX)


def load_depth(video_path, num_frames: int | None = None) -> np.ndarray:
  """The depth maps of the video at `video_path`: float32 [T, H, W] from `depth_path(...)`.

  Raises DepthFileError when the file is missing or unreadable, is not a finite real array
  [T, H, W], or (given `num_frames`) has another number of frames than the video.
  """
  path = depth_path(video_path)
  fix = (f'save one depth map per frame as a float array [T, H, W] with '
         f'numpy.save({str(path)!r}, depth)')
  if not path.is_file():
    raise DepthFileError(f'no depth file for {video_path}: expected {path}; {fix}.')
  try:
    depth = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DepthFileError(f'cannot read depth file {path} ({e}); {fix}.') from None
  if depth.ndim != 3 or not (np.issubdtype(depth.dtype, np.floating)
                             or np.issubdtype(depth.dtype, np.integer)):
    raise DepthFileError(f'depth file {path} holds a {depth.dtype} array of shape {depth.shape}, '
                         f'not [T, H, W]; {fix}.')
  if num_frames is not None and depth.shape[0] != num_frames:
    raise DepthFileError(f'depth file {path} has {depth.shape[0]} frames but the video has '
                         f'{num_frames}; {fix}.')
  if not np.isfinite(depth).all():
    raise DepthFileError(f'depth file {path} contains NaN or infinite values; {fix}.')
  return depth.astype(np.float32)


def unit_depth(depth: np.ndarray, inverse: bool = False) -> np.ndarray:
  """Depth maps [T, H, W] in any units -> [0, 1] over the whole video (0 nearest, 1 farthest).

  `inverse`: the maps are inverse depth / disparity (larger is nearer, as MiDaS returns)."""
  depth = np.asarray(depth, np.float32)
  depth = -depth if inverse else depth
  low, high = float(depth.min()), float(depth.max())
  return np.zeros_like(depth) if high == low else (depth - low) / (high - low)
