"""Latent video diffusion: a denoiser of a frozen causal VAE's latents.

  video [B, 1 + 4k, H, W, 3] --encode--> z [B, 1 + k, H/s, W/s, C] (x `scale`)
  z_t --denoiser--> prediction --sampler--> z_0 --decode (chunked)--> video

Parameters: {'vae': the trained VAE's (restored from its checkpoint and never trained),
'scale': a scalar that brings the latents to unit standard deviation (set from data when the
run starts), 'denoiser': the backbone + prompt encoder being trained}.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidiff.models import vae as vae_lib
from vidiff.models.denoiser import Denoiser


class LatentDenoiser(nn.Module):
  """(z_t [B, L, h, w, C], t, tokens [B, Lt]) -> the denoiser's prediction [B, L, h, w, C];
  `encode` / `decode` map videos in [-1, 1] to scaled latents and back."""
  vae: vae_lib.CausalVAE
  denoiser: Denoiser

  def setup(self):
    self.scale = self.param('scale', nn.initializers.ones, (), jnp.float32)

  def __call__(self, x, t, tokens, train: bool = False, **kwargs):
    if self.is_initializing():  # the VAE's parameters exist from the start (then restored)
      side = self.vae.spatial_downsample
      self.vae(jnp.zeros((1, 1, side, side, 3), jnp.float32))
      self.scale  # pylint: disable=pointless-statement
    return self.denoiser(x, t, tokens, train=train, **kwargs)

  def encode(self, video):
    """video [B, 1 + t*k, H, W, 3] in [-1, 1] -> scale * the posterior mean [B, 1 + k, h, w, C]."""
    return self.vae.encode(video)[0] * self.scale

  def decode(self, z):
    """Scaled latents [B, L, h, w, C] -> video [B, 1 + t(L - 1), H, W, 3] (whole)."""
    return self.vae.decode(z / self.scale)

  def latent_shape(self, video_shape) -> tuple[int, ...]:
    """[B, T, H, W, 3] -> [B, L, h, w, C] (a VAEError naming the fix if T or H, W do not fit)."""
    return self.vae.latent_shape(video_shape)


def decode_chunked(model: LatentDenoiser, params, z: jax.Array, chunk: int) -> jax.Array:
  """`model.decode` of z [B, L, h, w, C], `chunk` latent frames at a time (bounded memory,
  equal to the whole decode; `vae.decode_chunked`)."""
  return vae_lib.decode_chunked(model.vae, params['vae'], z / params['scale'], chunk)


def is_latent(model: nn.Module) -> bool:
  return isinstance(model, LatentDenoiser)
