"""ControlNet for video: a frozen denoiser steered by a per-frame control stream (e.g. depth).

The control branch is a trainable copy of the backbone's encoder, built by the backbone's own
code (`unet3d.encode`, `st_transformer.embed`/`block`) under the same parameter names, so
`init_control_from_base` can copy the base weights into it:

  U-Net           conv_in + down path + mid block; one residual per skip connection and one
                  for the mid block's output (`UNet3D(..., control_residuals=...)`).
  ST-Transformer  patch_embed + the first `num_blocks` blocks; one residual per block output.

The control stream [B, Tc, Hc, Wc, Cc] (depth: Cc = 1, in [-1, 1], see `depth_hint`) goes
through a small stem of 3x3 convs whose last layer is zero-initialised, and is added to the
copy's input features; every residual leaves through a zero-initialised 1x1 projection. A fresh
ControlNet therefore changes nothing: the controlled model predicts exactly what the base does
until the projections learn. Train only the branch with `optimizer.make(train_config,
trainable=controlnet.trainable)`.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vidiff import models, optimizer
from vidiff.errors import check
from vidiff.models import layers, st_transformer, unet3d
from vidiff.models.denoiser import Denoiser


def depth_hint(depth: jax.Array) -> jax.Array:
  """Depth [B, T, H, W] in [0, 1] (synthetic data: 1 = background, smaller is nearer) ->
  the control stream [B, T, H, W, 1] in [-1, 1], the range of the video the model sees."""
  return (2. * depth - 1.)[..., None].astype(jnp.float32)


class HintStem(nn.Module):
  """control [B, Tc, Hc, Wc, Cc] -> features of `shape` [B, T, H, W, C] (the encoder input's).

  (Tc/T, Hc/H, Wc/W) patches of the stream are folded into channels (a patch stem or a latent
  model's coarser grid), then SiLU 3x3 convs of `channels`, frame by frame, and a zero-
  initialised 3x3 conv to C: a fresh stem outputs zeros.
  """
  channels: Sequence[int] = (16, 32)
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, control, shape):
    x = layers.space_to_depth(control.astype(self.dtype), fold_factors(control.shape, shape))
    for i, ch in enumerate(self.channels):
      x = nn.silu(layers.conv(ch, (1, 3, 3), dtype=self.dtype, name=f'conv_{i}')(x))
    return layers.conv(shape[-1], (1, 3, 3), init='zeros', dtype=self.dtype, name='conv_out')(x)


def fold_factors(control_shape, shape) -> tuple[int, int, int]:
  """(t, h, w) ratios of a control stream's shape to the features' [B, T, H, W, C] shape."""
  factors = tuple(c // s for c, s in zip(control_shape[1:4], shape[1:4]))
  check(control_shape[0] == shape[0] and all(
      f >= 1 and f * s == c for f, s, c in zip(factors, shape[1:4], control_shape[1:4])),
        f'a control stream of shape {tuple(control_shape)} does not fit features of shape '
        f'{tuple(shape)}: give the control one frame per video frame at the video\'s size '
        f'(its (T, H, W) must be whole multiples of the features\').')
  return factors


class ControlNet(nn.Module):
  """The control branch: (x, cond, context, context_mask, control) -> control_residuals of
  `backbone` (a tuple of arrays, each zero at initialisation).

  `backbone` is the base model's backbone module; only its fields are read (the copy is built
  here, with this module's own parameters). `num_blocks`: how many leading ST-Transformer
  blocks the copy has (None: half the depth, at least one); ignored for the U-Net.
  """
  backbone: nn.Module
  num_blocks: int | None = None
  stem_channels: Sequence[int] = (16, 32)
  dtype: layers.Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, cond, context, context_mask, control, train: bool = False):
    hint = lambda h: HintStem(self.stem_channels, self.dtype, name='stem')(control, h.shape)
    features = encoder_features(self.backbone, x, cond, context, context_mask, train, hint,
                                self.num_blocks)
    return tuple(layers.conv(f.shape[-1], (1, 1, 1), init='zeros', dtype=self.dtype,
                             name=f'zero_{i}')(f) for i, f in enumerate(features))


def encoder_features(net, x, cond, context, context_mask, train, hint, num_blocks=None):
  """The encoder copy's outputs that become residuals, built in the calling module's scope."""
  if isinstance(net, unet3d.UNet3D):
    h, skips = unet3d.encode(net, x, cond, context, context_mask, train, hint)
    return [*skips, h]
  check(isinstance(net, st_transformer.STTransformer),
        f'ControlNet supports the unet3d and st_transformer backbones, not {type(net).__name__}.')
  h, cond = st_transformer.embed(net, x, cond)
  h = h + hint(h)
  features = []
  for i in range(control_depth(net, num_blocks)):
    h = st_transformer.block(net, i)(h, cond, context, context_mask)
    features.append(h)
  return features


def control_depth(net: st_transformer.STTransformer, num_blocks: int | None) -> int:
  """Blocks in an ST-Transformer's control copy: `num_blocks`, or half the depth (>= 1)."""
  n = max(1, net.depth // 2) if num_blocks is None else num_blocks
  check(1 <= n <= net.depth, f'controlnet.num_blocks={n} must lie in [1, model.depth={net.depth}].')
  return n


class ControlledDenoiser(nn.Module):
  """x_t [B,T,H,W,C], t, tokens [B,L], hint [B,Tc,Hc,Wc,Cc] -> prediction [B,T,H,W,C].

  Parameters: {'base': the Denoiser's, unchanged (load a trained checkpoint's), 'control': the
  ControlNet's}. The branch sees the base's conditioning (timestep, prompt); its residuals are
  scaled by `control_scale` (the inference-time conditioning strength; 0 gives the base model).
  `hint=None` skips the branch: exactly the base model. Initialise with a hint.
  """
  base: Denoiser
  control: ControlNet

  @nn.compact
  def __call__(self, x, t, tokens, hint=None, train: bool = False, control_scale=1.0):
    if hint is None:
      return self.base(x, t, tokens, train=train)
    branch = lambda x, cond, context, mask: tuple(
        control_scale * r for r in self.control(x, cond, context, mask, hint, train))
    return self.base(x, t, tokens, train=train, control=branch)


def get_controlled_model(model_config, num_blocks: int | None = None,
                         stem_channels: Sequence[int] = (16, 32),
                         out_channels: int = 3) -> ControlledDenoiser:
  """The base denoiser of `config.model` with a ControlNet on its backbone."""
  base = models.get_model(model_config, out_channels)
  branch = ControlNet(models.backbone(model_config, out_channels), num_blocks, tuple(stem_channels),
                      models.dtype(model_config))
  return ControlledDenoiser(base, branch)


def init_control_from_base(base_params, control_params):
  """ControlNet params whose encoder copy holds the base backbone's weights (ControlNet's
  initialisation); the stem and the zero projections keep theirs.

  base_params: the Denoiser's params ({'backbone': ..., 'text': ...}); control_params: the
  ControlNet's. Boxed (nn.Partitioned) or plain leaves. Raises UserError on a shape mismatch
  (a base checkpoint of another model config).
  """
  return layers.transplant(base_params['backbone'], control_params, copied)


def copied(base, own, path):
  """The control parameter at `path` from the base backbone's (unboxed arrays)."""
  check(base.shape == own.shape,
        f'cannot copy base parameter {"/".join(path)} of shape {base.shape} into the ControlNet '
        f'({own.shape}): build the ControlNet from the base checkpoint\'s model config.')
  return jnp.array(base, own.dtype)  # a copy: the base and the branch never share a buffer


# Whether the parameter at `path` (its dict keys) is trained: the ControlNet's only.
trainable = optimizer.subtree('control')
