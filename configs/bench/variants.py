"""The bench's model variants per size, widths tuned to matched parameter counts.

A (2+1)D conv has 9 + 3 = 12 C^2 weights where a 3x3x3 conv has 27 C^2, so 'unet3d-3d' runs
narrower channels than 'unet3d-2plus1d'; a joint block has one self-attention where a factorized
block has two, so 'st-joint' is deeper than 'st-factorized'. Sizes: 'tiny' (the test: one
U-Net level, one or two blocks, 0.3-0.5M parameters with the prompt encoder; built to compile
fast, not matched), 'small' (CPU minutes, 3.2-3.6M), 'base' (GPU, 180-195M).
"""

import ml_collections

from configs import common

VARIANTS = ('unet3d-3d', 'unet3d-2plus1d', 'st-factorized', 'st-joint')
SIZES = ('tiny', 'small', 'base')
# The prompt encoder and the quickstart/base fields each size starts from (configs/common.py).
_COMMON_SIZE = {'tiny': 'tiny', 'small': 'quickstart', 'base': 'base'}

MODELS = {
    ('unet3d-2plus1d', 'tiny'): dict(channels=(32,), attention_levels=(True,),
                                     temporal_attention_levels=(True,),
                                     temporal_downsample=(False,)),
    ('unet3d-3d', 'tiny'): dict(channels=(24,), attention_levels=(True,),
                                temporal_attention_levels=(True,), temporal_downsample=(False,),
                                head_dim=12),
    ('st-factorized', 'tiny'): dict(width=64, depth=1, num_heads=2),
    ('st-joint', 'tiny'): dict(width=64, depth=2, num_heads=2),
    ('unet3d-2plus1d', 'small'): dict(channels=(32, 64, 96)),
    ('unet3d-3d', 'small'): dict(channels=(24, 48, 72), head_dim=24),
    ('st-factorized', 'small'): dict(width=128, depth=6, num_heads=4),
    ('st-joint', 'small'): dict(width=128, depth=8, num_heads=4),
    ('unet3d-2plus1d', 'base'): dict(),
    ('unet3d-3d', 'base'): dict(channels=(96, 192, 384, 384), head_dim=64),
    ('st-factorized', 'base'): dict(width=768, depth=11, num_heads=12),
    ('st-joint', 'base'): dict(width=768, depth=14, num_heads=12),
}


def backbone(variant: str) -> str:
  """'unet3d' or 'st_transformer'."""
  return 'unet3d' if variant.startswith('unet3d') else 'st_transformer'


def family(variant: str) -> str:
  """'3D U-Net' or 'ST-Transformer'."""
  return '3D U-Net' if variant.startswith('unet3d') else 'ST-Transformer'


def model_config(variant: str, size: str) -> ml_collections.ConfigDict:
  """config.model of `variant` at `size`."""
  model = common.model_config(backbone(variant), _COMMON_SIZE[size])
  model.update(MODELS[variant, size])
  if backbone(variant) == 'unet3d':
    model.conv = variant.split('-')[1]
    model.cond_dim = 4 * model.channels[0]
  else:
    model.attention = variant.split('-')[1]
    model.cond_dim = model.width
  return model
