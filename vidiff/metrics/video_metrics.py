"""All the motion metrics of a generated set against a real one, as one dict of scalars.

`score(real, generated)` -> {'fvd', 'frame_fid', 'temporal_fid' (lower = closer to the real
set), 'warping_error', 'flow_consistency' (of the generated set; lower = more coherent), the
same two for the real set ('real_warping_error', 'real_flow_consistency') as the level to
reach, and 'blank_fvd': the FVD of `blank_videos(real)`, what a model that draws nothing would
score}. Used by `python -m vidiff.evaluate` and by the periodic evaluation in training.

Read FVD against 'blank_fvd': on small, mostly empty frames (the quickstart's shapes on black)
Kinetics I3D features barely see the content, and a set scoring above 'blank_fvd' is farther
from the data by FVD than empty videos are, however it looks (README, "Video metrics").
"""

import numpy as np

from vidiff.errors import check
from vidiff.metrics import flow, frechet, fvd, i3d

NAMES = ('fvd', 'blank_fvd', 'frame_fid', 'temporal_fid', 'warping_error', 'flow_consistency',
         'real_warping_error', 'real_flow_consistency')


def blank_videos(videos: np.ndarray) -> np.ndarray:
  """uint8 [N, T, H, W, 3]: each video replaced by its mean colour in every pixel and frame."""
  mean = np.round(videos.mean((1, 2, 3), keepdims=True)).astype(np.uint8)
  return np.broadcast_to(mean, videos.shape).copy()


def set_stats(videos: np.ndarray, params: dict, resolution: int = i3d.RESOLUTION,
              flow_method: str = 'dis', batch_size: int = 8, reference: bool = True) -> dict:
  """What `score` needs of one set of uint8 videos [N, T, H, W, 3]: I3D features of the clips
  ('video' [N, 400]), of all frames ('frame') and of all frame differences ('difference'), the
  set's warping error and flow consistency, and for a reference (real) set the features of its
  `blank_videos` ('blank' [N, 400]). The periodic eval in training computes the real set's once
  and scores every step's samples against it."""
  videos = _checked(videos, 'videos')
  blank = {'blank': i3d.features(blank_videos(videos), params, batch_size=batch_size,
                                 resolution=resolution)} if reference else {}
  return blank | {
      'video': i3d.features(videos, params, batch_size=batch_size, resolution=resolution),
      'frame': fvd.frame_features(videos, params, 8 * batch_size, resolution),
      'difference': fvd.difference_features(videos, params, 8 * batch_size, resolution),
      'warping_error': flow.warping_error(videos, flow_method),
      'flow_consistency': flow.flow_consistency(videos, flow_method),
  }


def score(real, generated: np.ndarray, params: dict | None = None,
          resolution: int = i3d.RESOLUTION, flow_method: str = 'dis',
          batch_size: int = 8) -> dict[str, float]:
  """Metrics of uint8 videos generated [M, T, H, W, 3] against real [N, T', H', W', 3], or
  against `set_stats` of the real set computed with the same resolution and flow method.

  FVD and the FIDs resize frames to `resolution` (224 is the standard; smaller numbers are only
  comparable with each other). Optical flow (warping error, flow consistency) runs at the videos'
  own size, which must be at least 16x16. params: `i3d.load_params()`, loaded when None.
  """
  if not isinstance(real, dict):
    real = _checked(real, 'real')
  generated = _checked(generated, 'generated')
  params = i3d.load_params() if params is None else params
  stats = lambda videos, ref: set_stats(videos, params, resolution, flow_method, batch_size, ref)
  ref = real if isinstance(real, dict) else stats(real, True)
  check('blank' in ref, 'the real set\'s statistics must come from set_stats(..., reference=True).')
  gen = stats(generated, False)
  return {
      'fvd': frechet.distance(ref['video'], gen['video']),
      'blank_fvd': frechet.distance(ref['video'], ref['blank']),
      'frame_fid': frechet.distance(ref['frame'], gen['frame']),
      'temporal_fid': frechet.distance(ref['difference'], gen['difference']),
      'warping_error': gen['warping_error'],
      'flow_consistency': gen['flow_consistency'],
      'real_warping_error': ref['warping_error'],
      'real_flow_consistency': ref['flow_consistency'],
  }


def _checked(videos, name: str) -> np.ndarray:
  """`videos` as an array, or a UserError naming the set unless uint8 [N >= 2, T, H, W, 3]."""
  videos = np.asarray(videos)
  check(videos.ndim == 5 and videos.dtype == np.uint8 and len(videos) >= 2,
        f'{name} videos must be uint8 [N >= 2, T, H, W, 3], got {videos.dtype} {videos.shape}.')
  return videos


def summary(scores: dict[str, float]) -> str:
  """One line: 'fvd 123.4, frame_fid ..., ...'."""
  return ', '.join(f'{k} {scores[k]:.4g}' for k in NAMES if k in scores)
