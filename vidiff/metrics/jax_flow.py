"""Differentiable optical flow in pure JAX, cheap enough for a training loss.

Coarse-to-fine iterative Lucas-Kanade (Lucas and Kanade 1981; Bouguet 2001, "Pyramidal
Implementation of the Lucas Kanade Feature Tracker"), dense: at every pyramid level (coarsest
first) the flow from the level above is upsampled, then `iterations` times frame 1 is warped by
the current flow (bilinear) and a Tikhonov-regularised 2x2 least-squares step over a Gaussian
window is added. Everything is smooth in the frames (the regulariser keeps the 2x2 systems
invertible), so `jax.grad` through the flow is finite. A pair of identical frames gives exactly
zero flow.

Frames are float [..., H, W, 3] in [-1, 1]; flows are float32 [..., H, W, 2] holding (dx, dy)
in pixels, forward: pixel x of frame t moves to x + flow(x) in frame t+1.
"""

import functools
import math

import jax
import jax.numpy as jnp

from vidiff.errors import check

_LUMA = (0.299, 0.587, 0.114)
MIN_COARSE_SIZE = 8  # pixels; no pyramid level is smaller than this
LOSS_MIN_FRAMES = 3  # temporal_coherence_loss compares consecutive flows: two need 3 frames


def num_levels(height: int, width: int, levels: int) -> int:
  """Returns how many of `levels` pyramid levels fit with the coarsest side >= 8 pixels."""
  fit = 1 + int(math.floor(math.log2(max(min(height, width), 1) / MIN_COARSE_SIZE)))
  return max(1, min(levels, fit))


@functools.partial(jax.jit, static_argnames=('levels', 'iterations', 'sigma', 'eps'))
def pair_flow(frame0, frame1, levels: int = 3, iterations: int = 2, sigma: float = 1.5,
              eps: float = 1e-2):
  """Estimates the flow from frame0 to frame1.

  Args:
    frame0: float [..., H, W, 3] in [-1, 1].
    frame1: float [..., H, W, 3], same shape.
    levels: most pyramid levels (fewer if the coarsest would be under 8 pixels).
    iterations: warp-and-solve steps per level.
    sigma: standard deviation (pixels) of the Gaussian window of each least-squares solve.
    eps: Tikhonov regulariser of the 2x2 systems (squared intensity-gradient units).

  Returns:
    float32 [..., H, W, 2].
  """
  check(frame0.shape == frame1.shape and frame0.ndim >= 3 and frame0.shape[-1] == 3,
        f'pair_flow needs two frames [..., H, W, 3] of one shape, got {frame0.shape} and '
        f'{frame1.shape}.')
  floats = all(jnp.issubdtype(f.dtype, jnp.floating) for f in (frame0, frame1))
  check(floats,
        f'pair_flow needs float frames in [-1, 1], got {frame0.dtype} and {frame1.dtype}; '
        'convert uint8 frames with x / 127.5 - 1.')
  lead, (h, w) = frame0.shape[:-3], frame0.shape[-3:-1]
  gray0, gray1 = (_gray(f).reshape((-1, h, w)) for f in (frame0, frame1))
  pyramid0, pyramid1 = _pyramid(gray0, levels), _pyramid(gray1, levels)
  flow = jnp.zeros(pyramid0[-1].shape + (2,), jnp.float32)
  for g0, g1 in zip(reversed(pyramid0), reversed(pyramid1)):
    flow = _upsample_flow(flow, g0.shape[1:])
    step = functools.partial(_lk_step, g0, g1, sigma=sigma, eps=eps)
    flow = jax.lax.fori_loop(0, iterations, lambda _, f: step(f), flow)
  return flow.reshape(lead + (h, w, 2))


def flow(video, **kwargs):
  """Forward flows of float video [..., T, H, W, 3] in [-1, 1] (T >= 2): float32
  [..., T-1, H, W, 2] from frame t to t+1. Keyword arguments go to `pair_flow`."""
  video = jnp.asarray(video)
  check(video.ndim >= 4 and video.shape[-4] >= 2 and video.shape[-1] == 3,
        f'flow needs a video [..., T, H, W, 3] with T >= 2, got shape {video.shape}; '
        'pass at least two RGB frames.')
  return pair_flow(video[..., :-1, :, :, :], video[..., 1:, :, :, :], **kwargs)


def temporal_coherence_loss(x0_hat, along_motion: bool = False, **kwargs):
  """Mean squared change of consecutive flow fields, per video.

  With F_t = flow from frame t to t+1, returns mean over t, x, (dx, dy) of
  (F_t(x) - F_{t-1}(x))^2: 0 for a static video, small for constant-velocity motion. With
  `along_motion`, F_t is sampled where the pixel went, F_t(x + F_{t-1}(x)) (acceleration along
  trajectories), which is also ~0 inside a translating object.

  Args:
    x0_hat: float [B, T, H, W, 3] in [-1, 1], T >= LOSS_MIN_FRAMES.
    along_motion: compare flows along the motion instead of at the same pixel.
    **kwargs: passed to `pair_flow`.

  Returns:
    float32 [B] (pixels^2 per frame^2).
  """
  check(x0_hat.ndim == 5 and x0_hat.shape[1] >= LOSS_MIN_FRAMES,
        f'temporal_coherence_loss needs videos [B, T, H, W, 3] with T >= {LOSS_MIN_FRAMES}, got '
        f'shape {x0_hat.shape}.')
  flows = flow(x0_hat, **kwargs)  # [B, T-1, H, W, 2]
  prev, nxt = flows[:, :-1], flows[:, 1:]
  if along_motion:
    nxt = warp(nxt, prev)
  return jnp.mean((nxt - prev) ** 2, axis=(1, 2, 3, 4))


def warp(image, flow_field):
  """Backward-warps image [..., H, W, C] by flow [..., H, W, 2] (same leading shape):
  out(x) = image(x + flow(x)), bilinear, clamped to the border. Returns [..., H, W, C]."""
  check(image.ndim >= 3 and flow_field.shape == image.shape[:-1] + (2,),
        f'warp needs image [..., H, W, C] and flow [..., H, W, 2] with the same leading shape, '
        f'got {image.shape} and {flow_field.shape}.')
  h, w, c = image.shape[-3:]
  lead = image.shape[:-3]
  images = jnp.moveaxis(image.reshape((-1, h, w, c)), -1, 1)  # [N, C, H, W]
  flows = flow_field.reshape((-1, h, w, 2))
  out = jax.vmap(_warp_channels)(images, flows)  # [N, C, H, W]
  return jnp.moveaxis(out, 1, -1).reshape(lead + (h, w, c))


def _warp_channels(images, flow_field):
  """[C, H, W] sampled at x + flow(x), flow [H, W, 2] -> [C, H, W]."""
  c, h, w = images.shape
  rows = jnp.clip(jnp.arange(h, dtype=jnp.float32)[:, None] + flow_field[..., 1], 0, h - 1)
  cols = jnp.clip(jnp.arange(w, dtype=jnp.float32)[None, :] + flow_field[..., 0], 0, w - 1)
  r0 = jnp.minimum(jnp.floor(rows), max(h - 2, 0)).astype(jnp.int32)
  c0 = jnp.minimum(jnp.floor(cols), max(w - 2, 0)).astype(jnp.int32)
  wr, wc = rows - r0, cols - c0
  flat = images.reshape(c, h * w)
  r1, c1 = jnp.minimum(r0 + 1, h - 1), jnp.minimum(c0 + 1, w - 1)
  pick = lambda r, col: flat[:, (r * w + col).reshape(-1)].reshape(c, h, w)
  top = pick(r0, c0) * (1 - wc) + pick(r0, c1) * wc
  bottom = pick(r1, c0) * (1 - wc) + pick(r1, c1) * wc
  return top * (1 - wr) + bottom * wr


def _gray(frames):
  """float [..., H, W, 3] in [-1, 1] -> luma [..., H, W] float32."""
  return jnp.tensordot(frames.astype(jnp.float32), jnp.array(_LUMA, jnp.float32), axes=1)


def _pyramid(gray, levels: int) -> list:
  """[N, H, W] -> [finest, ..., coarsest], each level half the size (rounded up) of the last."""
  out = [gray]
  for _ in range(num_levels(*gray.shape[1:], levels) - 1):
    n, h, w = out[-1].shape
    out.append(jax.image.resize(out[-1], (n, -(-h // 2), -(-w // 2)), 'linear'))
  return out


def _upsample_flow(flow, size):
  """float [N, h, w, 2] -> [N, H, W, 2] for size (H, W), vectors rescaled to the new pixels."""
  n, h, w, _ = flow.shape
  if (h, w) == tuple(size):
    return flow
  scale = jnp.array([size[1] / w, size[0] / h], jnp.float32)
  return jax.image.resize(flow, (n,) + tuple(size) + (2,), 'linear') * scale


def _lk_step(gray0, gray1, flow, sigma: float, eps: float):
  """One Lucas-Kanade step: gray [N, H, W], flow [N, H, W, 2] -> refined flow."""
  warped = warp(gray1[..., None], flow)[..., 0]
  gx, gy = _gradient(0.5 * (gray0 + warped))
  gt = warped - gray0
  products = jnp.stack([gx * gx, gx * gy, gy * gy, gx * gt, gy * gt], -1)
  a, b, c, d, e = jnp.unstack(_blur(products, sigma), axis=-1)
  a, c = a + eps, c + eps
  det = a * c - b * b
  du = (b * e - c * d) / det
  dv = (b * d - a * e) / det
  return flow + jnp.clip(jnp.stack([du, dv], -1), -1.0, 1.0)


def _gradient(gray):
  """Central differences of [N, H, W] (edge-replicated): (d/dx, d/dy), each [N, H, W]."""
  p = jnp.pad(gray, ((0, 0), (1, 1), (1, 1)), mode='edge')
  return 0.5 * (p[:, 1:-1, 2:] - p[:, 1:-1, :-2]), 0.5 * (p[:, 2:, 1:-1] - p[:, :-2, 1:-1])


def _blur(x, sigma: float):
  """Separable Gaussian blur of [N, H, W, C] over H and W (edge-replicated)."""
  radius = max(1, int(math.ceil(2 * sigma)))
  taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1, dtype=jnp.float32) / sigma) ** 2)
  taps = taps / taps.sum()
  n, h, w, c = x.shape
  p = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode='edge')
  p = sum(taps[i] * p[:, i:i + h] for i in range(2 * radius + 1))
  return sum(taps[i] * p[:, :, i:i + w] for i in range(2 * radius + 1))
