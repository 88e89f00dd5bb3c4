"""The denoiser: prompt encoder + timestep embedding + a video backbone (U-Net or ST-Transformer)."""

import flax.linen as nn
import jax.numpy as jnp

from vidiff.models import layers
from vidiff.models.text import TextEncoder


class Denoiser(nn.Module):
  """x_t: [B,T,H,W,C] float, t: [B] or per frame [B, T] in [0, 1], tokens: [B, L] int32 ->
  prediction [B,T,H,W,C].

  The timestep and the pooled prompt form the conditioning `cond` [B, T, cond_dim], one
  vector per frame (per-frame t: frames given clean as context carry t = 0): with `frame_embedding` a zero-initialised embedding of the frame index is
  added, which tells frames apart where the backbone is otherwise shift-invariant in time
  (a model fed pure noise can only draw motion if frame k knows it is frame k). Zero at
  initialisation, so a fresh video model still acts frame by frame.
  The prompt's token embeddings are the cross-attention context.

  `control` (models/controlnet.py): None, or a function (x, cond, context, context_mask) ->
  the backbone's `control_residuals`, called with this model's conditioning.
  """
  backbone: nn.Module
  text: TextEncoder
  cond_dim: int = 256
  frame_embedding: bool = True
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, t, tokens, train: bool = False, control=None):
    context, mask, pooled = self.text(tokens)
    t = jnp.broadcast_to(t[:, None], x.shape[:2]) if t.ndim == 1 else t
    emb = layers.sinusoidal_embedding(t * 1000., self.cond_dim)
    emb = layers.dense(self.cond_dim, (None, 'embed'), dtype=self.dtype, name='time_fc1')(emb)
    emb = layers.dense(self.cond_dim, ('embed', 'mlp'), dtype=self.dtype, name='time_fc2')(nn.silu(emb))
    emb = emb + layers.dense(self.cond_dim, ('embed', 'mlp'), dtype=self.dtype,
                             name='text_pool')(pooled)[:, None]
    if self.frame_embedding:
      frames = layers.sinusoidal_embedding(jnp.arange(x.shape[1]), self.cond_dim)
      emb = emb + layers.dense(self.cond_dim, (None, 'mlp'), zero_init=True, dtype=self.dtype,
                               name='frame_embed')(frames)
    x = layers.constrain(x.astype(self.dtype), layers.VIDEO)
    if control is None:
      return self.backbone(x, emb, context, mask, train=train)
    return self.backbone(x, emb, context, mask, train=train,
                         control_residuals=control(x, emb, context, mask))
