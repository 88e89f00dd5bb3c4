"""Precomputed per-frame depth for real videos: `NAME.depth.npy` next to `NAME.mp4`.

Compute it once per video with any monocular depth model and save a float array [T, H, W]
(one map per decoded frame, at the video's size or any other) with `numpy.save`. Such models
return arbitrary units (often inverse depth); `unit_depth` maps a video's maps to the [0, 1]
convention of the synthetic sources (0 nearest, 1 farthest) that `controlnet.depth_hint` takes.
"""

import cv2
import numpy as np
from etils import epath

from vidiff import video_io
from vidiff.errors import UserError

SUFFIX = '.depth.npy'


class DepthFileError(UserError):
  """A depth file is missing or is not a float array [T, H, W]."""


def depth_path(video_path) -> epath.Path:
  """'dir/clip.mp4' -> 'dir/clip.depth.npy' (local or gs://)."""
  path = epath.Path(video_path)
  return path.with_name(path.stem + SUFFIX)


def load_depth(video_path, num_frames: int | None = None) -> np.ndarray:
  """The depth maps of the video at `video_path`: float32 [T, H, W] from `depth_path(...)`.

  Raises DepthFileError when the file is missing or unreadable, is not a finite real array
  [T, H, W], or (given `num_frames`) has another number of frames than the video.
  """
  path = depth_path(video_path)
  fix = (f'save one depth map per frame as a float array [T, H, W] with '
         f'numpy.save({str(path)!r}, depth)')
  depth = read_maps(path, f'depth file for {video_path}', fix)
  if num_frames is not None and depth.shape[0] != num_frames:
    raise DepthFileError(f'depth file {path} has {depth.shape[0]} frames but the video has '
                         f'{num_frames}; {fix}.')
  return depth


def read_maps(path, what: str, fix: str, channel: bool = False) -> np.ndarray:
  """float32 [T, H, W] from the .npy at `path` ([T, H, W, 1] too with `channel`). Raises
  DepthFileError (naming `what` and the `fix`) if it is missing or unreadable, not a real
  array of that shape, or not finite."""
  path = epath.Path(path)
  if not path.is_file():
    raise DepthFileError(f'no {what}: expected {path}; {fix}.')
  try:
    with path.open('rb') as f:
      maps = np.load(f, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DepthFileError(f'cannot read {path} ({e}); {fix}.') from None
  maps = maps[..., 0] if channel and maps.ndim == 4 and maps.shape[-1] == 1 else maps
  if maps.ndim != 3 or not (np.issubdtype(maps.dtype, np.floating)
                            or np.issubdtype(maps.dtype, np.integer)):
    raise DepthFileError(f'{path} holds a {maps.dtype} array of shape {maps.shape}, not '
                         f'[T, H, W]; {fix}.')
  if not np.isfinite(maps).all():
    raise DepthFileError(f'{path} contains NaN or infinite values; {fix}.')
  return maps.astype(np.float32)


def unit_depth(depth: np.ndarray, inverse: bool = False) -> np.ndarray:
  """Depth maps [T, H, W] in any units -> [0, 1] over the whole video (0 nearest, 1 farthest).

  `inverse`: the maps are inverse depth / disparity (larger is nearer, as MiDaS returns)."""
  depth = np.asarray(depth, np.float32)
  depth = -depth if inverse else depth
  low, high = float(depth.min()), float(depth.max())
  return np.zeros_like(depth) if high == low else (depth - low) / (high - low)


def depth_frames(video_path, num_frames: int, frame_indices,
                 size: tuple[int, int] | None = None) -> np.ndarray:
  """float32 [N, H, W]: the maps of `frame_indices` from the video's depth file, resized
  (nearest, so edges stay sharp) to `size` = (H, W) if given."""
  maps = load_depth(video_path, num_frames)[np.asarray(frame_indices)]
  if size is None or tuple(size) == maps.shape[1:]:
    return maps
  return np.stack([cv2.resize(m, tuple(size[::-1]), interpolation=cv2.INTER_NEAREST)
                   for m in maps])


def read_stream(path, size: int) -> np.ndarray:
  """A depth stream for `vidiff.sample --control`: float32 [T, size, size] in [0, 1] (0 nearest),
  centre-cropped to a square and resized (nearest).

  `path`: a .npy of depth maps [T, H, W] (or [T, H, W, 1]; any units: maps outside [0, 1] are
  rescaled by `unit_depth`), or a video of grey depth maps (mp4, gif, ...: black is nearest).
  """
  path = epath.Path(path)
  fix = ('pass a .npy of depth maps [T, H, W] (numpy.save) or a video of grey depth maps, '
         'black nearest')
  if path.suffix.lower() in video_io.VIDEO_SUFFIXES:
    maps = video_io.read_video(path).astype(np.float32).mean(-1) / 255.
  else:
    maps = read_maps(path, '--control file', fix, channel=True)
    maps = maps if maps.min() >= 0 and maps.max() <= 1 else unit_depth(maps)
  maps = video_io.square_crop(maps[..., None])[..., 0]
  return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in maps])
