"""All the motion metrics of a generated set against a real one, as one dict of scalars.

`score(real, generated)` -> {'fvd', 'frame_fid', 'temporal_fid' (lower = closer to the real
set), 'warping_error', 'flow_consistency' (of the generated set; lower = more coherent), and
the same two for the real set ('real_warping_error', 'real_flow_consistency') as the level to
reach}. Used by `python -m vidiff.evaluate` and by the periodic evaluation in training.
"""

import numpy as np

from vidiff.errors import check
from vidiff.metrics import flow, fvd, i3d

NAMES = ('fvd', 'frame_fid', 'temporal_fid', 'warping_error', 'flow_consistency',
         'real_warping_error', 'real_flow_consistency')


def score(real: np.ndarray, generated: np.ndarray, params: dict | None = None,
          resolution: int = i3d.RESOLUTION, flow_method: str = 'dis',
          batch_size: int = 8) -> dict[str, float]:
  """Metrics of uint8 videos generated [M, T, H, W, 3] against real [N, T', H', W', 3].

  FVD and the FIDs resize frames to `resolution` (224 is the standard; smaller numbers are only
  comparable with each other). Optical flow (warping error, flow consistency) runs at the videos'
  own size, which must be at least 16x16. params: `i3d.load_params()`, loaded when None.
  """
  real, generated = np.asarray(real), np.asarray(generated)
  for name, videos in (('real', real), ('generated', generated)):
    check(videos.ndim == 5 and videos.dtype == np.uint8 and len(videos) >= 2,
          f'{name} videos must be uint8 [N >= 2, T, H, W, 3], got {videos.dtype} {videos.shape}.')
  params = i3d.load_params() if params is None else params
  kw = dict(params=params, resolution=resolution)
  return {
      'fvd': fvd.fvd(real, generated, batch_size=batch_size, **kw),
      'frame_fid': fvd.frame_fid(real, generated, batch_size=8 * batch_size, **kw),
      'temporal_fid': fvd.temporal_fid(real, generated, batch_size=8 * batch_size, **kw),
      'warping_error': flow.warping_error(generated, flow_method),
      'flow_consistency': flow.flow_consistency(generated, flow_method),
      'real_warping_error': flow.warping_error(real, flow_method),
      'real_flow_consistency': flow.flow_consistency(real, flow_method),
  }


def summary(scores: dict[str, float]) -> str:
  """One line: 'fvd 123.4, frame_fid ..., ...'."""
  return ', '.join(f'{k} {scores[k]:.4g}' for k in NAMES if k in scores)
