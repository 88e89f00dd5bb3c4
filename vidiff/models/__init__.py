"""Model construction from `config.model` and input-shape checks shared by the backbones."""

import jax.numpy as jnp

from vidiff.errors import UserError, check
from vidiff.models.denoiser import Denoiser
from vidiff.models.text import TextEncoder
from vidiff.models.st_transformer import STTransformer
from vidiff.models.unet3d import UNet3D

BACKBONES = {'unet3d': UNet3D, 'st_transformer': STTransformer}
_SHARED = ('name', 'dtype', 'cond_dim', 'frame_embedding', 'text')


def backbone(model_config, out_channels: int = 3):
  """Returns the backbone module named by `model_config.name`, built from its other fields."""
  name = model_config.name
  if name not in BACKBONES:
    raise UserError(f'model.name={name!r} is not a backbone; choose one of {sorted(BACKBONES)} '
                    f'(e.g. --config=configs/quickstart.py:{sorted(BACKBONES)[0]}).')
  fields = {k: v for k, v in model_config.items() if k not in _SHARED}
  try:
    return BACKBONES[name](**fields, out_channels=out_channels, dtype=dtype(model_config))
  except TypeError as e:
    raise UserError(f'config.model does not fit model.name={name!r}: {e}. Pick the backbone '
                    f'through the config argument (configs/<exp>.py:{name}) so its fields match.')


def dtype(model_config):
  """The compute dtype of `model.dtype` ('float32' or 'bfloat16'); params stay float32."""
  check(model_config.dtype in ('float32', 'bfloat16'),
        f"model.dtype={model_config.dtype!r}; use 'float32' or 'bfloat16'.")
  return jnp.dtype(model_config.dtype)


def get_model(model_config, out_channels: int = 3) -> Denoiser:
  """The full denoiser (prompt encoder + backbone) described by `config.model`."""
  text = TextEncoder(**model_config.text, dtype=dtype(model_config))
  return Denoiser(backbone(model_config, out_channels), text, model_config.cond_dim,
                  model_config.get('frame_embedding', True), dtype(model_config))


def check_video_shape(model_config, num_frames: int, resolution: int,
                      frames_name: str = 'data.num_frames') -> None:
  """Raises a UserError naming valid values if the backbone cannot take this clip shape;
  `frames_name` is the setting the error tells the user to change."""
  time_factor, space_factor = backbone(model_config).factors()
  for field, value, factor in ((frames_name, num_frames, time_factor),
                               ('data.resolution', resolution, space_factor)):
    if value < factor or value % factor:
      valid = ', '.join(str(factor * k) for k in range(1, 5))
      raise UserError(f'{field}={value} cannot go through model {model_config.name!r}, which needs '
                      f'multiples of {factor}; valid values include {valid}, ...')
