"""A factorized space-time Transformer (Latte / Open-Sora STDiT style) over tubelet tokens.

Tokens keep the video layout [B, T', H', W', D] (T' = T / pt, ...), so the activation
sharding of the U-Net applies unchanged: spatial attention sees whole frames (FRAMES),
temporal attention each token's whole time series (PIXELS), and the re-shard between them
is an all-to-all chosen by the partitioner, not a gather of the video.

Positions work for any frame count and size: 2D sinusoidal (h, w) embeddings are added to
the tokens (and with `space_rope` the spatial attention rotates queries and keys by (h, w)),
time enters as rotary positions in the attention over frames and (see
`Denoiser.frame_embedding`) as a per-frame term of the adaLN conditioning.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from vidiff.errors import check
from vidiff.models import layers
from vidiff.models.remat import remat

# Self-attentions of each block by `attention` mode (ViViT's factorizations; 'joint' is the
# full space-time baseline). 'alternating' gives even blocks spatial, odd blocks temporal.
MIXERS = {'factorized': (('spatial', 'temporal'),), 'alternating': (('spatial',), ('temporal',)),
          'joint': (('joint',),)}


def modulate(x, shift, scale):
  """adaLN: x [B, T, H, W, D] * (1 + scale) + shift, with shift/scale [B, 1, 1, 1, D]."""
  return x * (1 + scale) + shift


def sincos_2d(height: int, width: int, dim: int):
  """Fixed 2D sinusoidal position embedding [H, W, dim]: half the channels for rows, half for
  columns (dim divisible by 4)."""
  rows = layers.sinusoidal_embedding(jnp.arange(height), dim // 2)  # [H, dim/2]
  cols = layers.sinusoidal_embedding(jnp.arange(width), dim // 2)  # [W, dim/2]
  return jnp.concatenate([jnp.broadcast_to(rows[:, None], (height, width, dim // 2)),
                          jnp.broadcast_to(cols[None, :], (height, width, dim // 2))], axis=-1)


def grid_positions(height: int, width: int):
  """(row, column) of each token of a row-major [H, W] frame: [H * W, 2]."""
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')
  return jnp.stack([rows.ravel(), cols.ravel()], axis=1)


class STBlock(nn.Module):
  """Self-attentions (`mixers`, in order) -> cross-attention -> MLP, adaLN-Zero on `cond`.

  x: [B, T, H, W, D], cond: [B, T, Dc], context: [B, L, Cc], context_mask: [B, L] -> x's shape.
  Every modulated branch has a zero-initialised gate, so a fresh block is the identity.
  """
  num_heads: int
  mixers: Sequence[str] = ('spatial', 'temporal')
  mlp_ratio: int = 4
  temporal_window: int | None = None
  temporal_causal: bool = False
  dtype: layers.Dtype = jnp.float32
  attention_impl: str = 'auto'
  space_rope: bool = False
  mlp_conv: bool = False

  @nn.compact
  def __call__(self, x, cond, context, context_mask):
    width = x.shape[-1]
    branches = (*self.mixers, 'mlp')
    mods = layers.dense(3 * width * len(branches), ('embed', 'mlp'), zero_init=True,
                        dtype=self.dtype, name='ada_ln')(nn.silu(cond))
    mods = jnp.split(mods[:, :, None, None, :], 3 * len(branches), axis=-1)
    norm = lambda name: nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype, name=name)
    for i, branch in enumerate(branches):
      shift, scale, gate = mods[3 * i:3 * i + 3]
      h = modulate(norm(f'norm_{branch}')(x), shift, scale)
      if branch == 'mlp':
        h = layers.MLP(self.mlp_ratio, dtype=self.dtype, frame_conv=self.mlp_conv, name='mlp')(h)
      else:
        h = self.mix(branch, h)
      x = layers.constrain(x + gate * h, layers.VIDEO)
      if i == len(self.mixers) - 1:  # cross-attention after the self-attentions
        x = x + layers.attend_prompt(self.attention('cross', x.shape[-1]),
                                     layers.layer_norm(self.dtype, name='norm_cross')(x),
                                     context, context_mask)
    return x

  def attention(self, name, width):
    return layers.MultiHeadAttention(self.num_heads, width // self.num_heads, dtype=self.dtype,
                                     implementation=self.attention_impl, name=name)

  def attend(self, name, h, **kw):
    return self.attention(name, h.shape[-1])(h, **kw)

  def mix(self, mixer: str, x):
    """One self-attention over frames ('spatial'), frames ('temporal') or everything ('joint')."""
    shape = x.shape
    b, t, hh, ww, d = shape
    if mixer == 'spatial':
      rope = grid_positions(hh, ww) if self.space_rope else None
      return layers.split_time(self.attend('spatial', layers.merge_time(
          layers.constrain(x, layers.FRAMES)), rotary_positions=rope), shape)
    time_positions = jnp.arange(t)
    if mixer == 'temporal':
      h = layers.merge_space(layers.constrain(x, layers.PIXELS))
      h = self.attend('temporal', h, rotary_positions=time_positions,
                      local_window=self.temporal_window, causal=self.temporal_causal)
      return layers.split_space(h, shape)
    # joint: one sequence of all T*H*W tokens, time-major
    h = layers.constrain(x, ('act_batch', None, None, None, 'act_embed')).reshape(b, t * hh * ww, d)
    rope = jnp.repeat(time_positions, hh * ww)
    if self.space_rope:
      rope = jnp.concatenate([rope[:, None], jnp.tile(grid_positions(hh, ww), (t, 1))], axis=1)
    h = self.attend('joint', h, rotary_positions=rope)
    return h.reshape(shape)


class STTransformer(nn.Module):
  """Video DiT. x: [B,T,H,W,C], cond: [B,T,Dc] (per frame), context: [B,L,Cc], mask: [B,L] -> [B,T,H,W,out].

  `patch_size` (t, h, w) tubelets are embedded to `width` channels, `depth` blocks of
  `attention` mode (MIXERS) follow, and an adaLN-modulated zero-initialised linear layer
  unpatchifies. `pixel_conv` > 0 overlaps the patches: a 3x3 conv to that many channels runs
  on the frames before the patch embedding, and the unpatchify writes that many channels per
  pixel to a zero-initialised 3x3 conv (U-ViT's output conv), so each pixel near a patch's
  edge is drawn by the tokens on both sides of it. `space_rope` adds 2D rotary (row, column)
  positions to the spatial attention (and (t, h, w) to joint attention); `mlp_conv` puts a
  depthwise 3x3 conv over the tokens of each frame inside every MLP (layers.MLP).
  `remat_policy` recomputes each block's activations in the backward pass.
  `attention_impl`: the attention kernel (layers.ATTENTION_IMPLS; 'auto' is cuDNN flash
  attention where it applies).
  """
  width: int = 128
  depth: int = 4
  num_heads: int = 4
  patch_size: Sequence[int] = (1, 2, 2)
  attention: str = 'factorized'
  mlp_ratio: int = 4
  temporal_window: int | None = None
  temporal_causal: bool = False
  remat_policy: str = 'none'
  out_channels: int = 3
  dtype: layers.Dtype = jnp.float32
  attention_impl: str = 'auto'
  pixel_conv: int = 0
  # Off here, on in configs/common.py: a checkpoint saved before the field existed (its model
  # config lacks it, and `common.from_saved` keeps the model section as saved) rebuilds as trained.
  space_rope: bool = False
  mlp_conv: bool = False

  def setup_check(self):
    check(self.attention in MIXERS, f'model.attention={self.attention!r}; use one of {sorted(MIXERS)}.')
    layers.check_attention_impl(self.attention_impl)
    check(self.pixel_conv >= 0,
          f'model.pixel_conv={self.pixel_conv} must be >= 0 (channels of the overlapping-patch '
          f'convs; 0: plain patches).')
    check(self.width % self.num_heads == 0 and self.width % 4 == 0,
          f'model.width={self.width} must be divisible by 4 and by model.num_heads={self.num_heads}.')

  def factors(self) -> tuple[int, int]:
    """(time, space) factors that frame counts and sizes must be divisible by."""
    pt, ph, pw = self.patch_size
    check(ph == pw, f'model.patch_size={tuple(self.patch_size)} must have equal h and w.')
    return pt, ph

  @nn.compact
  def __call__(self, x, cond, context, context_mask, train: bool = False,
               control_residuals: Sequence | None = None):
    """`control_residuals` (a ControlNet's, see models/controlnet.py): arrays [B,T',H',W',width]
    added to the outputs of the first len(control_residuals) blocks. None is the plain model."""
    del train  # no dropout
    self.setup_check()
    residuals = () if control_residuals is None else tuple(control_residuals)
    check(len(residuals) <= self.depth,
          f'{len(residuals)} control residuals for an ST-Transformer of depth {self.depth}.')
    h, cond = embed(self, x, cond)
    for i in range(self.depth):
      h = block(self, i)(h, cond, context, context_mask)
      if i < len(residuals):
        h = h + residuals[i]
    shift, scale = jnp.split(layers.dense(2 * self.width, ('embed', 'mlp'), zero_init=True,
                                          dtype=self.dtype, name='final_ada_ln')(nn.silu(cond))
                             [:, :, None, None, :], 2, axis=-1)
    h = modulate(nn.LayerNorm(use_scale=False, use_bias=False, dtype=self.dtype,
                              name='norm_out')(h), shift, scale)
    return unpatchify(self, h).astype(jnp.float32)


def unpatchify(net: STTransformer, h):
  """Tokens [B, T', H', W', width] -> [B, T, H, W, out_channels]: a zero-initialised linear
  layer per token, or with `pixel_conv` one to that many channels a pixel, then a
  zero-initialised 3x3 conv (the model still starts at 0)."""
  channels = net.pixel_conv or net.out_channels
  out = layers.dense(channels * math.prod(net.patch_size), ('embed', None),
                     zero_init=not net.pixel_conv, dtype=net.dtype, name='unpatchify')(h)
  out = layers.depth_to_space(out, net.patch_size)
  if net.pixel_conv:
    out = layers.conv(net.out_channels, (1, 3, 3), init='zeros', dtype=net.dtype,
                      name='pixel_conv_out')(out)
  return out


def embed(net: STTransformer, x, cond):
  """Tubelet embedding + 2D positions, in the calling module's scope (the model, or a
  ControlNet's trainable copy): x [B,T,H,W,C], cond [B,T,Dc] -> (tokens [B,T',H',W',width],
  cond pooled per token frame [B,T',Dc])."""
  if net.pixel_conv:
    x = layers.conv(net.pixel_conv, (1, 3, 3), dtype=net.dtype, name='pixel_conv_in')(x)
  tokens = layers.space_to_depth(x, net.patch_size)
  h = layers.dense(net.width, (None, 'embed'), dtype=net.dtype, name='patch_embed')(tokens)
  h = layers.constrain(h + sincos_2d(*h.shape[2:4], net.width).astype(h.dtype), layers.VIDEO)
  return h, layers.per_frame(cond, h.shape[1])


def block(net: STTransformer, i: int) -> nn.Module:
  """Block `i` of `net`, named 'block_{i}' in the calling module's scope."""
  mixers = MIXERS[net.attention]
  return remat(STBlock, net.remat_policy)(net.num_heads, mixers[i % len(mixers)], net.mlp_ratio,
                                          net.temporal_window, net.temporal_causal, net.dtype,
                                          net.attention_impl, net.space_rope, net.mlp_conv,
                                          name=f'block_{i}')
