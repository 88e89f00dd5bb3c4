"""Losses of the video VAE: L1, per-frame SSIM (Gaussian window), KL to N(0, 1).

No pretrained perceptual network: everything here is a few lines of JAX.
"""

import jax
import jax.numpy as jnp
import numpy as np


def l1(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute error of two arrays of one shape -> scalar."""
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def psnr(x: jax.Array, y: jax.Array, data_range: float = 2.) -> jax.Array:
  """PSNR in dB of videos in a range of width `data_range` ([-1, 1]: 2) -> scalar."""
  mse = jnp.mean(jnp.square(x.astype(jnp.float32) - y.astype(jnp.float32)))
  return 10. * jnp.log10(data_range ** 2 / jnp.maximum(mse, 1e-10))


def gaussian_window(size: int, sigma: float) -> np.ndarray:
  """[size] normalised 1D Gaussian."""
  g = np.exp(-0.5 * np.square(np.arange(size) - (size - 1) / 2) / sigma ** 2)
  return (g / g.sum()).astype(np.float32)


def _blur(x: jax.Array, window: np.ndarray) -> jax.Array:
  """Separable 'VALID' Gaussian filter of each channel. x: [N, H, W, C] -> [N, H-k+1, W-k+1, C]."""
  c, k = x.shape[-1], len(window)
  for shape in ((k, 1, 1, c), (1, k, 1, c)):
    kernel = jnp.broadcast_to(jnp.asarray(window).reshape(shape[:2] + (1, 1)), shape)
    x = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', feature_group_count=c,
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return x


def ssim(x: jax.Array, y: jax.Array, data_range: float = 2., window: int = 11,
         sigma: float = 1.5) -> jax.Array:
  """Mean SSIM of videos x, y [B, T, H, W, C], computed frame by frame (Wang et al. 2004).

  The Gaussian window shrinks (to the largest odd size) for frames smaller than `window`.
  """
  h, w, c = x.shape[-3:]
  size = min(window, h, w)
  size -= 1 - size % 2
  g = gaussian_window(size, sigma)
  x = x.astype(jnp.float32).reshape(-1, h, w, c)
  y = y.astype(jnp.float32).reshape(-1, h, w, c)
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  mx, my = _blur(x, g), _blur(y, g)
  vx, vy = _blur(x * x, g) - mx * mx, _blur(y * y, g) - my * my
  cov = _blur(x * y, g) - mx * my
  s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
  return jnp.mean(s)


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, 1)), averaged over the latent elements -> scalar."""
  mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
  return 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1. - logvar)


def as_video(video: jax.Array) -> jax.Array:
  """A batch's video in [-1, 1] float32 (uint8 [0, 255] is converted)."""
  if video.dtype == jnp.uint8:
    return video.astype(jnp.float32) / 127.5 - 1.
  return video.astype(jnp.float32)


def temporal_l1(x: jax.Array, y: jax.Array) -> jax.Array:
  """L1 between the frame-to-frame changes of videos x, y [B, T, H, W, C] -> scalar (0 for
  T = 1): what a reconstruction adds to or leaves out of the motion (flicker, jitter)."""
  if x.shape[1] < 2:
    return jnp.zeros((), jnp.float32)
  return l1(jnp.diff(x.astype(jnp.float32), axis=1), jnp.diff(y.astype(jnp.float32), axis=1))


def vae_loss(params, model, batch, rng: jax.Array | None = None, *, l1_weight: float = 1.,
             ssim_weight: float = 0.2, kl_weight: float = 1e-6, temporal_weight: float = 0.):
  """The VAE training loss of `batch['video']` [B, T, H, W, 3] -> (loss, metrics).

  loss = l1_weight * L1 + ssim_weight * (1 - SSIM) + temporal_weight * temporal_l1 +
  kl_weight * KL (KL only for a kl model; each term a per-element mean). `rng` samples the
  posterior (None: its mean). Differentiate with respect to `params` (argument 0).
  """
  video = as_video(batch['video'])
  recon, mean, logvar = model.apply({'params': params}, video, rng)
  terms = {'l1': l1(recon, video), 'ssim': ssim(recon, video),
           'temporal_l1': temporal_l1(recon, video)}
  loss = (l1_weight * terms['l1'] + ssim_weight * (1. - terms['ssim']) +
          temporal_weight * terms['temporal_l1'])
  if logvar is not None:
    terms['kl'] = kl_to_standard_normal(mean, logvar)
    loss = loss + kl_weight * terms['kl']
  return loss, {'loss': loss, 'psnr': psnr(recon, video), **terms}
