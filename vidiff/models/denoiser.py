"""The denoiser: prompt encoder + timestep embedding + a video backbone (U-Net or ST-Transformer)."""

import flax.linen as nn
import jax.numpy as jnp

from vidiff.models import layers
from vidiff.models.text import TextEncoder


class Denoiser(nn.Module):
  """x_t: [B,T,H,W,C] float, t: [B] in [0, 1], tokens: [B, L] int32 -> prediction [B,T,H,W,C].

  The timestep and the pooled prompt form the conditioning vector `cond` [B, cond_dim];
  the prompt's token embeddings are the cross-attention context.
  """
  backbone: nn.Module
  text: TextEncoder
  cond_dim: int = 256
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, t, tokens, train: bool = False):
    context, mask, pooled = self.text(tokens)
    emb = layers.sinusoidal_embedding(t * 1000., self.cond_dim)
    emb = layers.dense(self.cond_dim, (None, 'embed'), dtype=self.dtype, name='time_fc1')(emb)
    emb = layers.dense(self.cond_dim, ('embed', 'mlp'), dtype=self.dtype, name='time_fc2')(nn.silu(emb))
    emb = emb + layers.dense(self.cond_dim, ('embed', 'mlp'), dtype=self.dtype, name='text_pool')(pooled)
    x = layers.constrain(x.astype(self.dtype), layers.VIDEO)
    return self.backbone(x, emb, context, mask, train=train)
