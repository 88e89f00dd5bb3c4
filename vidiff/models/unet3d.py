"""A 3D U-Net for video: (2+1)D or 3x3x3 residual conv blocks, spatial/temporal/cross attention.

Temporal layers start as identities (identity-initialised temporal convs, centre-slice 3D
kernels, zero-initialised temporal attention output), so a freshly built model acts frame by
frame like an image U-Net and image weights can be inflated to video.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from vidiff.errors import check
from vidiff.models import layers
from vidiff.models.remat import remat


class ConvBlock(nn.Module):
  """A 'same' conv over (t, h, w). conv='2plus1d': 1x3x3 then 3x1x1; conv='3d': 3x3x3.

  x: [B, T, H, W, Cin] -> [B, T, H, W, features]. `temporal=False` is the image layer the
  video layer inflates from: the 1x3x3 conv alone ('2plus1d'), or a 1x3x3 'conv3d'.
  `time_padding` ('zeros' or 'replicate') is what the temporal taps see past the clip's ends.
  """
  features: int
  conv: str = '2plus1d'
  temporal: bool = True
  dtype: layers.Dtype = jnp.float32
  time_padding: str = 'zeros'

  @nn.compact
  def __call__(self, x):
    if self.conv == '3d':
      return layers.conv(self.features, (3 if self.temporal else 1, 3, 3), init='center',
                         time_padding=self.time_padding, dtype=self.dtype, name='conv3d')(x)
    x = layers.conv(self.features, (1, 3, 3), init='default',
                    dtype=self.dtype, name='spatial')(x)
    if not self.temporal:
      return x
    return layers.conv(self.features, (3, 1, 1), init='identity', time_padding=self.time_padding,
                       dtype=self.dtype, name='temporal')(x)


class ResBlock(nn.Module):
  """GroupNorm-SiLU-conv twice, per-frame scale-shift conditioning, residual.

  x: [B, T, H, W, C], cond: [B, T0, D] with T0 a multiple of T (pooled to T frames).
  """
  features: int
  conv: str = '2plus1d'
  groups: int = 32
  dropout: float = 0.0
  temporal: bool = True
  dtype: layers.Dtype = jnp.float32
  time_padding: str = 'zeros'

  @nn.compact
  def __call__(self, x, cond, train: bool = False):
    x = layers.constrain(x, layers.VIDEO)
    h = nn.silu(layers.GroupNorm(self.groups, self.dtype, name='norm1')(x))
    h = ConvBlock(self.features, self.conv, self.temporal, self.dtype, self.time_padding,
                  name='conv1')(h)
    scale_shift = layers.dense(2 * self.features, ('embed', 'conv_out'), dtype=self.dtype,
                               name='cond')(nn.silu(layers.per_frame(cond, x.shape[1])))
    scale, shift = jnp.split(scale_shift[:, :, None, None, :], 2, axis=-1)
    h = layers.GroupNorm(self.groups, self.dtype, name='norm2')(h) * (1 + scale) + shift
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
    h = ConvBlock(self.features, self.conv, self.temporal, self.dtype, self.time_padding,
                  name='conv2')(h)
    if x.shape[-1] != self.features:
      x = layers.conv(self.features, (1, 1, 1), dtype=self.dtype, name='skip')(x)
    return x + h


class AttentionBlock(nn.Module):
  """Spatial self-attention, cross-attention to the prompt, temporal self-attention, MLP
  (the MLP only with the spatial layers).

  x: [B, T, H, W, C]; context: [B, L, Cc]; context_mask: [B, L] -> [B, T, H, W, C].
  Temporal attention uses rotary time positions (any frame count) and starts as zero.
  """
  head_dim: int = 32
  spatial: bool = True
  temporal: bool = True
  temporal_window: int | None = None
  dtype: layers.Dtype = jnp.float32
  attention_impl: str = 'auto'

  @nn.compact
  def __call__(self, x, context, context_mask):
    shape, width = x.shape, x.shape[-1]
    heads = max(1, width // self.head_dim)
    mha = lambda name, **kw: layers.MultiHeadAttention(heads, width // heads, dtype=self.dtype,
                                                       implementation=self.attention_impl,
                                                       name=name, **kw)
    norm = lambda name: layers.layer_norm(self.dtype, name=name)
    if self.spatial:
      h = layers.merge_time(layers.constrain(x, layers.FRAMES))
      x = layers.split_time(h + mha('spatial')(norm('norm_spatial')(h)), shape)
      x = x + layers.attend_prompt(mha('cross'), norm('norm_cross')(x), context, context_mask)
    if self.temporal:
      h = layers.merge_space(layers.constrain(x, layers.PIXELS))
      positions = jnp.arange(shape[1])
      h = h + mha('temporal', zero_init_out=True)(norm('norm_temporal')(h),
                                                   rotary_positions=positions,
                                                   local_window=self.temporal_window)
      x = layers.split_space(h, shape)
    if self.spatial:  # a temporal-only block stays a pure (zero-init) temporal layer
      h = layers.merge_time(layers.constrain(x, layers.FRAMES))
      x = layers.split_time(h + layers.MLP(dtype=self.dtype, name='mlp')(norm('norm_mlp')(h)), shape)
    return layers.constrain(x, layers.VIDEO)


def downsample(net: 'UNet3D', x, time: bool, name: str):
  """Strided conv of `net` halving (h, w), and t when `time`. [B,T,H,W,C] -> [B,T',H/2,W/2,C].

  Without time striding a 3x3x3 kernel starts on its centre slice (frame by frame)."""
  kernel = (3 if time or (net.conv == '3d' and net.temporal) else 1, 3, 3)
  return layers.conv(x.shape[-1], kernel, strides=(2 if time else 1, 2, 2),
                     init='default' if time else 'center', time_padding=net.time_padding,
                     dtype=net.dtype, name=name)(x)


def upsample(net: 'UNet3D', x, time: bool, name: str):
  """Nearest-neighbour doubling of (h, w), and t when `time`, then a conv of `net`."""
  x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
  if time:
    x = jnp.repeat(x, 2, axis=1)
  return conv_block(net, x.shape[-1], name)(x)


def conv_block(net: 'UNet3D', features: int, name: str) -> ConvBlock:
  """A ConvBlock with `net`'s conv type, temporal switch, dtype and time padding."""
  return ConvBlock(features, net.conv, net.temporal, net.dtype, net.time_padding, name=name)


class UNet3D(nn.Module):
  """Video U-Net. x: [B,T,H,W,C], cond: [B,T,D], context: [B,L,Cc], mask: [B,L] -> [B,T,H,W,out].

  Level i has `channels[i]` features; `attention_levels[i]` adds spatial + cross attention,
  `temporal_attention_levels[i]` temporal attention, `temporal_downsample[i]` halves time
  after level i (Lumiere's space-time U-Net). `patch_size` (t, h, w) folds patches into
  channels before the first conv and unfolds them after the last (Simple Diffusion's
  cheap high-resolution stem). `temporal=False` builds the image U-Net (no temporal convs
  or attention) whose parameters `inflate_from_image_params` turns into this video U-Net's.
  `remat_policy` (see models/remat.py) recomputes block activations in the backward pass.
  `time_padding`: 'zeros' (the default) or 'replicate' for every temporal conv tap past the
  clip's ends; with 'replicate' (and no frame embedding) nothing tells a frame at the clip's
  edge from one in the middle. `attention_impl`: the attention kernel
  (layers.ATTENTION_IMPLS; 'auto' is cuDNN flash attention where it applies).
  """
  channels: Sequence[int] = (32, 64, 128)
  num_res_blocks: int = 1
  attention_levels: Sequence[bool] = (False, True, True)
  temporal_attention_levels: Sequence[bool] = (True, True, True)
  temporal_downsample: Sequence[bool] = (False, False, False)
  conv: str = '2plus1d'
  head_dim: int = 32
  groups: int = 8
  dropout: float = 0.0
  temporal_window: int | None = None
  patch_size: Sequence[int] = (1, 1, 1)
  temporal: bool = True
  remat_policy: str = 'none'
  out_channels: int = 3
  dtype: layers.Dtype = jnp.float32
  time_padding: str = 'zeros'
  attention_impl: str = 'auto'

  def setup_check(self):
    n = len(self.channels)
    for name in ('attention_levels', 'temporal_attention_levels', 'temporal_downsample'):
      check(len(getattr(self, name)) == n,
            f'model.{name} has {len(getattr(self, name))} entries but model.channels has {n}; '
            f'give one per level.')
    check(self.conv in ('3d', '2plus1d'), f"model.conv={self.conv!r}; use '3d' or '2plus1d'.")
    layers.check_attention_impl(self.attention_impl)
    check(self.time_padding in layers.TIME_PADDINGS,
          f'model.time_padding={self.time_padding!r}; use one of {layers.TIME_PADDINGS}.')
    check(self.temporal or not any(self.temporal_downsample),
          'an image U-Net (temporal=False) cannot downsample time; set temporal_downsample to False.')

  def factors(self) -> tuple[int, int]:
    """(time, space) factors that frame counts and sizes must be divisible by."""
    levels = len(self.channels) - 1
    pt, ph, pw = self.patch_size
    check(ph == pw, f'model.patch_size={tuple(self.patch_size)} must have equal h and w.')
    return pt * 2 ** sum(bool(d) for d in self.temporal_downsample[:levels]), ph * 2 ** levels

  @nn.compact
  def __call__(self, x, cond, context, context_mask, train: bool = False,
               control_residuals: Sequence | None = None):
    """`control_residuals` (a ControlNet's, see models/controlnet.py): one array per skip
    connection, in `encode`'s order, then one for the mid block's output, each added to it
    before the up path. None is the plain U-Net."""
    self.setup_check()
    h, skips = encode(self, x, cond, context, context_mask, train)
    if control_residuals is not None:
      check(len(control_residuals) == len(skips) + 1,
            f'the U-Net takes {len(skips) + 1} control residuals, got {len(control_residuals)}.')
      skips = [s + r for s, r in zip(skips, control_residuals)]
      h = h + control_residuals[-1]
    return decode(self, h, skips, cond, context, context_mask, train)


def _blocks(net: UNet3D):
  """(res block, attention block, has-attention) builders for `net`'s levels."""
  res_block = remat(ResBlock, net.remat_policy, static_argnums=(3,))
  attn_block = remat(AttentionBlock, net.remat_policy)
  block = lambda ch, name: res_block(ch, net.conv, net.groups, net.dropout, net.temporal,
                                     net.dtype, net.time_padding, name=name)
  temporal_attn = lambda lvl: net.temporal and net.temporal_attention_levels[lvl]
  attn = lambda lvl, name: attn_block(net.head_dim, net.attention_levels[lvl], temporal_attn(lvl),
                                      net.temporal_window, net.dtype, net.attention_impl,
                                      name=name)
  has_attn = lambda lvl: net.attention_levels[lvl] or temporal_attn(lvl)
  return block, attn, has_attn


def encode(net: UNet3D, x, cond, context, context_mask, train: bool = False, hint=None):
  """conv_in + down path + mid block of `net`: x [B,T,H,W,C] -> (h, skips).

  h: the mid block's output; skips: the conv_in output, then each down block's and each
  downsample's output (what the up path concatenates, last first). The modules are created in
  the calling module's scope (UNet3D, or a ControlNet's trainable copy, with the same names).
  `hint` (a ControlNet's stem) maps the conv_in output to features added to it.
  """
  block, attn, has_attn = _blocks(net)
  last = len(net.channels) - 1
  h = conv_block(net, net.channels[0], 'conv_in')(layers.space_to_depth(x, net.patch_size))
  if hint is not None:
    h = h + hint(h)
  skips = [h]
  for lvl, ch in enumerate(net.channels):
    for i in range(net.num_res_blocks):
      h = block(ch, f'down_{lvl}_res_{i}')(h, cond, train)
      if has_attn(lvl):
        h = attn(lvl, f'down_{lvl}_attn_{i}')(h, context, context_mask)
      skips.append(h)
    if lvl != last:
      h = downsample(net, h, net.temporal_downsample[lvl], f'down_{lvl}_sample')
      skips.append(h)
  h = block(net.channels[-1], 'mid_res_0')(h, cond, train)
  h = attn(last, 'mid_attn')(h, context, context_mask)
  h = block(net.channels[-1], 'mid_res_1')(h, cond, train)
  return h, skips


def decode(net: UNet3D, h, skips, cond, context, context_mask, train: bool = False):
  """The up path and output conv of `net` (in the calling module's scope): -> [B,T,H,W,out]."""
  block, attn, has_attn = _blocks(net)
  skips = list(skips)
  for lvl in reversed(range(len(net.channels))):
    for i in range(net.num_res_blocks + 1):
      h = jnp.concatenate([h, skips.pop()], axis=-1)
      h = block(net.channels[lvl], f'up_{lvl}_res_{i}')(h, cond, train)
      if has_attn(lvl):
        h = attn(lvl, f'up_{lvl}_attn_{i}')(h, context, context_mask)
    if lvl != 0:
      h = upsample(net, h, net.temporal_downsample[lvl - 1], f'up_{lvl}_sample')
  h = nn.silu(layers.GroupNorm(net.groups, net.dtype, name='norm_out')(h))
  out = conv_block(net, net.out_channels * math.prod(net.patch_size), 'conv_out')(h)
  return layers.depth_to_space(out, net.patch_size).astype(jnp.float32)


def inflate_from_image_params(image_params, video_params):
  """Video U-Net params that act like the image U-Net's on every frame (Make-A-Video inflation).

  Both are param trees of the same model config, built with temporal=False (and
  frame_embedding=False) and True. Shared parameters are copied; a 1x3x3 image kernel goes onto
  the centre slice of a 3x3x3 video kernel; temporal layers keep the video tree's frame-by-frame
  initialisation (identity temporal convs, zero temporal attention output, zero frame
  embedding).
  """
  return layers.transplant(image_params, video_params, inflated)


def inflated(image, video, path):
  """The video parameter at `path` from the image model's (unboxed arrays)."""
  if image.shape == video.shape:
    return image
  check(image.ndim == 5 and image.shape[0] == 1 and image.shape[1:] == video.shape[1:],
        f'cannot inflate {"/".join(path)}: image shape {image.shape}, video shape {video.shape}.')
  return jnp.zeros_like(video).at[video.shape[0] // 2].set(image[0])
