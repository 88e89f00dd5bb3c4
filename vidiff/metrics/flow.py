"""Evaluation-time optical flow (OpenCV) and the video metrics built on it.

Flows are float32 [..., H, W, 2] holding (dx, dy) in pixels: a forward flow f_t maps pixel x of
frame t to x + f_t(x) in frame t+1, a backward flow b_t maps frame t+1 to frame t. Positions
are (x, y) = (column, row), as in `vidiff.data.synthetic`.

Metrics (each on a uint8 video [T, H, W, 3] or a batch [N, T, H, W, 3]; lower = better):

- `warping_error`: frame t+1 warped back to frame t with the estimated flow, mean squared RGB
  error in [0, 1] intensity over non-occluded pixels (Lai et al. 2018, "Learning Blind Video
  Temporal Consistency"), with the flow estimated on the video itself or, for a
  reconstruction, on its original (`motion`).
- `flow_consistency`: mean temporal acceleration |f_{t+1}(x + f_t(x)) - f_t(x)| in pixels per
  frame along forward-backward consistent trajectories; `flow_consistency_stats` adds the
  forward-backward disagreement and the fraction of consistent pixels.

Occlusions follow the forward-backward check of Sundaram, Brox and Keutzer 2010, "Dense Point
Trajectories by GPU-Accelerated Large Displacement Optical Flow" (ECCV), as used by Ruder et
al. 2016 for video style transfer: x is consistent iff, with b~(x) = b(x + f(x)),
|f(x) + b~(x)|^2 < 0.01 (|f(x)|^2 + |b~(x)|^2) + 0.5, and x + f(x) lies inside the frame.
"""

import cv2
import numpy as np

from vidiff.errors import check

METHODS = ('dis', 'farneback')
MIN_SIZE = 16  # pixels; DIS needs frames larger than its 8-pixel patches
_FIX_DTYPE = 'convert float videos in [-1, 1] with vidiff.video_io.to_uint8'


def check_video(video, min_frames: int = 2) -> np.ndarray:
  """Returns `video` as uint8 [N, T, H, W, 3] (a single [T, H, W, 3] video gets N = 1)."""
  video = np.asarray(video)
  check(video.ndim in (4, 5) and video.shape[-1] == 3,
        f'expected a video [T, H, W, 3] or a batch [N, T, H, W, 3], got shape {video.shape}; '
        'add or drop leading axes so the last four are (time, height, width, RGB).')
  check(video.dtype == np.uint8, f'expected a uint8 video, got {video.dtype}; {_FIX_DTYPE}.')
  check(video.shape[-4] >= min_frames,
        f'need at least {min_frames} frames, got {video.shape[-4]}; pass a longer clip.')
  check(min(video.shape[-3:-1]) >= MIN_SIZE,
        f'frames must be at least {MIN_SIZE}x{MIN_SIZE} pixels for optical flow, got '
        f'{video.shape[-3]}x{video.shape[-2]}; upscale them, e.g. with vidiff.video_io.upscale.')
  return video.reshape((-1,) + video.shape[-4:])


def flow(video, method: str = 'dis', backward: bool = False) -> np.ndarray:
  """Estimates optical flow between consecutive frames with OpenCV.

  Args:
    video: uint8 [T, H, W, 3] (RGB), T >= 2.
    method: 'dis' (DIS, medium preset, finest scale) or 'farneback'.
    backward: if True, flows from frame t+1 to frame t instead of t to t+1.

  Returns:
    float32 [T-1, H, W, 2]: (dx, dy) in pixels.
  """
  check(method in METHODS, f'flow method must be one of {METHODS}, got {method!r}.')
  video = check_video(video)
  check(video.shape[0] == 1, f'flow takes one video [T, H, W, 3], got shape {video.shape}; '
        'loop over the batch.')
  gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in video[0]]
  pairs = zip(gray[1:], gray[:-1]) if backward else zip(gray[:-1], gray[1:])
  estimate = _estimator(method)
  return np.stack([estimate(a, b) for a, b in pairs]).astype(np.float32)


def flows(video, method: str = 'dis') -> tuple[np.ndarray, np.ndarray]:
  """Returns (forward, backward) flows of uint8 [T, H, W, 3], each float32 [T-1, H, W, 2]."""
  return flow(video, method), flow(video, method, backward=True)


def _estimator(method: str):
  """Returns f(gray0 uint8 [H, W], gray1) -> float32 [H, W, 2] flow from gray0 to gray1."""
  if method == 'dis':
    dis = cv2.DISOpticalFlow_create(cv2.DISOpticalFlow_PRESET_MEDIUM)
    dis.setFinestScale(0)  # full resolution: generated clips are small
    return lambda a, b: dis.calc(a, b, None)
  return lambda a, b: cv2.calcOpticalFlowFarneback(
      a, b, None, pyr_scale=0.5, levels=3, winsize=9, iterations=5, poly_n=5, poly_sigma=1.1,
      flags=0)


def warp(frames, flow_field) -> np.ndarray:
  """Backward-warps `frames` by `flow_field`: out[..., y, x] = frames[..., y + dy, x + dx].

  Bilinear sampling; positions outside the frame take the nearest border pixel.

  Args:
    frames: [..., H, W, C] (any real dtype).
    flow_field: float [..., H, W, 2] (dx, dy), same leading shape as `frames`.

  Returns:
    float32 [..., H, W, C].
  """
  frames, flow_field = np.asarray(frames, np.float32), np.asarray(flow_field, np.float32)
  check(frames.ndim >= 3 and flow_field.shape == frames.shape[:-1] + (2,),
        f'warp needs frames [..., H, W, C] and flow [..., H, W, 2] with the same leading shape, '
        f'got {frames.shape} and {flow_field.shape}.')
  h, w = frames.shape[-3:-1]
  check(h >= 2 and w >= 2, f'warp needs frames of at least 2x2 pixels, got {h}x{w}.')
  x = np.clip(np.arange(w, dtype=np.float32) + flow_field[..., 0], 0, w - 1)
  y = np.clip(np.arange(h, dtype=np.float32)[:, None] + flow_field[..., 1], 0, h - 1)
  x0, y0 = np.minimum(np.floor(x), w - 2).astype(int), np.minimum(np.floor(y), h - 2).astype(int)
  wx, wy = (x - x0)[..., None], (y - y0)[..., None]
  lead = np.indices(frames.shape[:-3], sparse=True)
  lead = tuple(i[..., None, None] for i in lead)
  pick = lambda yy, xx: frames[lead + (yy, xx)]
  top = pick(y0, x0) * (1 - wx) + pick(y0, x0 + 1) * wx
  bottom = pick(y0 + 1, x0) * (1 - wx) + pick(y0 + 1, x0 + 1) * wx
  return top * (1 - wy) + bottom * wy


def inside_mask(flow_field) -> np.ndarray:
  """Returns bool [..., H, W]: x + flow(x) lies inside the frame (float [..., H, W, 2])."""
  flow_field = np.asarray(flow_field)
  h, w = flow_field.shape[-3:-1]
  x = np.arange(w) + flow_field[..., 0]
  y = np.arange(h)[:, None] + flow_field[..., 1]
  return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def occlusion_mask(forward, backward) -> np.ndarray:
  """Forward-backward check (Sundaram et al. 2010; see the module docstring).

  Args:
    forward: float [..., H, W, 2], flow from frame t to t+1.
    backward: float [..., H, W, 2], flow from frame t+1 to t.

  Returns:
    bool [..., H, W]: True where pixel x of frame t is occluded in frame t+1 (inconsistent
    flows) or leaves the frame.
  """
  forward, backward = np.asarray(forward, np.float32), np.asarray(backward, np.float32)
  check(forward.shape == backward.shape and forward.shape[-1:] == (2,),
        f'forward and backward flows must both be [..., H, W, 2], got {forward.shape} and '
        f'{backward.shape}.')
  back = warp(backward, forward)  # b(x + f(x))
  mismatch = np.sum((forward + back) ** 2, axis=-1)
  bound = 0.01 * (np.sum(forward ** 2, axis=-1) + np.sum(back ** 2, axis=-1)) + 0.5
  return (mismatch >= bound) | ~inside_mask(forward)


def epe(pred, true, mask=None) -> float:
  """Mean end-point error |pred - true| (pixels) of flows [..., H, W, 2] over bool mask
  [..., H, W] (all pixels if None); NaN if the mask is empty."""
  pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
  check(pred.shape == true.shape and pred.shape[-1:] == (2,),
        f'epe needs two flows [..., H, W, 2] of one shape, got {pred.shape} and {true.shape}.')
  error = np.sqrt(np.sum((pred - true) ** 2, axis=-1))
  if mask is None:
    return float(error.mean())
  mask = np.asarray(mask, bool)
  check(mask.shape == error.shape, f'epe mask must be {error.shape}, got {mask.shape}.')
  return float(error[mask].mean()) if mask.any() else float('nan')


def warping_error(video, method: str = 'dis', motion=None) -> float:
  """Photometric error of warping each frame t+1 back onto frame t with the estimated flow.

  For each video and pair (t, t+1): W_t = warp(V_{t+1}, f_t), M_t = not occluded (forward-backward
  check). Returns sum |V_t - W_t|^2 / (3 sum M_t) over all pairs and videos, i.e. the mean squared
  error per RGB channel with intensities in [0, 1] (0 = perfectly warpable; lower = better).
  NaN if every pixel is occluded.

  Args:
    video: uint8 [T, H, W, 3] or a batch [N, T, H, W, 3], T >= 2.
    method: OpenCV flow method, see `flow`.
    motion: None (flows and masks from `video` itself: a video with no reference, e.g. a
      sample), or a uint8 video of `video`'s shape whose flows and masks are used: the original
      of a reconstruction, as Lai et al. 2018 take the input video's flow. Then a
      reconstruction that blurs away what moves scores no better than one that keeps it, and
      frame-to-frame changes the original does not make count as error.
  """
  video = check_video(video)
  motion = video if motion is None else check_video(motion)
  check(motion.shape == video.shape, f'motion video shape {motion.shape} differs from the '
        f'video\'s {video.shape}; pass the original the video reconstructs.')
  total, count = 0.0, 0
  for clip, reference in zip(video, motion):
    forward, backward = flows(reference, method)
    frames = clip.astype(np.float32) / 255.0
    warped = warp(frames[1:], forward)
    keep = ~occlusion_mask(forward, backward)
    total += float(np.sum(((frames[:-1] - warped) ** 2)[keep]))
    count += 3 * int(keep.sum())
  return total / count if count else float('nan')


def flow_consistency_stats(video, method: str = 'dis') -> dict[str, float]:
  """Forward-backward agreement and temporal smoothness of the estimated flow.

  Args:
    video: uint8 [T, H, W, 3] or a batch [N, T, H, W, 3], T >= 3.
    method: OpenCV flow method, see `flow`.

  Returns:
    {'acceleration': mean |f_{t+1}(x + f_t(x)) - f_t(x)| (pixels/frame) over pixels x of
       frames t <= T-3 that pass the forward-backward check for both (t, t+1) and, at x + f_t(x),
       (t+1, t+2) (NaN if none; lower = smoother motion),
     'fb_error': mean |f_t(x) + b_t(x + f_t(x))| (pixels) over all in-frame pixels (lower =
       forward and backward flows agree better),
     'consistent_fraction': fraction of pixels passing the forward-backward check (higher =
       more of the video is trackable)}.
  """
  acc, fb, n_acc, n_fb, n_ok, n_all = 0.0, 0.0, 0, 0, 0, 0
  for clip in check_video(video, min_frames=3):
    forward, backward = flows(clip, method)
    ok = ~occlusion_mask(forward, backward)
    inside = inside_mask(forward)
    fb += float(np.sum(np.linalg.norm(forward + warp(backward, forward), axis=-1)[inside]))
    n_fb, n_ok, n_all = n_fb + int(inside.sum()), n_ok + int(ok.sum()), n_all + ok.size
    ahead = warp(np.concatenate([forward[1:], ok[1:, ..., None]], -1), forward[:-1])
    track = ok[:-1] & (ahead[..., 2] > 0.999)  # consistent at both ends of the step
    acc += float(np.sum(np.linalg.norm(ahead[..., :2] - forward[:-1], axis=-1)[track]))
    n_acc += int(track.sum())
  return {'acceleration': acc / n_acc if n_acc else float('nan'),
          'fb_error': fb / n_fb if n_fb else float('nan'),
          'consistent_fraction': n_ok / n_all}


def flow_consistency(video, method: str = 'dis') -> float:
  """Mean temporal acceleration of the flow along consistent trajectories, in pixels per frame
  (see `flow_consistency_stats`): 0 for constant-velocity motion; lower = more coherent."""
  return flow_consistency_stats(video, method)['acceleration']
