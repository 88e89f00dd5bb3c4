"""Parameter counts and FLOPs of a config's model, from shapes only (nothing is allocated).

  python -m vidiff.model_info --config=configs/quickstart.py:st_transformer
  python -m vidiff.model_info --config=configs/quickstart.py:unet3d,size=base --flops=false

FLOPs are XLA's count for one clip of the config's data shape (`data.num_frames` x
`data.resolution`^2): the forward pass, and forward + backward (a train step without the
optimizer). The large presets compile for minutes on CPU: pass --flops=false for counts only.
"""

import jax
import jax.numpy as jnp
from absl import flags
from flax import linen as nn
from ml_collections import config_flags

from vidiff import cli, models, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file[:arg].', lock_config=True)
flags.DEFINE_bool('flops', True, 'Also compile forward and backward to count FLOPs.')
flags.mark_flags_as_required(['config'])


def abstract_inputs(config, batch: int = 1):
  """ShapeDtypeStructs (x, t, tokens) of `batch` clips of the config's data shape."""
  d = config.data
  return (jax.ShapeDtypeStruct((batch, d.num_frames, d.resolution, d.resolution, 3), jnp.float32),
          jax.ShapeDtypeStruct((batch,), jnp.float32),
          jax.ShapeDtypeStruct((batch, config.model.text.max_len), jnp.int32))


def abstract_variables(model, config):
  """The model's variables {'params': ...} as unboxed ShapeDtypeStructs."""
  return nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), *abstract_inputs(config)))


def param_counts(config) -> dict[str, int]:
  """Parameters per top-level part of the denoiser ('backbone', 'text', ...) and 'total'."""
  variables = abstract_variables(models.get_model(config.model), config)
  parts = {name: train.count_params(tree) for name, tree in variables['params'].items()}
  return {**parts, 'total': train.count_params(variables)}


def flops_per_clip(config) -> dict[str, float]:
  """XLA-counted FLOPs of the forward pass and of forward + backward for one clip."""
  model = models.get_model(config.model)
  inputs = abstract_inputs(config)
  params = abstract_variables(model, config)
  forward = lambda p, x, t, tok: jnp.sum(model.apply(p, x, t, tok) ** 2)
  count = lambda fn: float(jax.jit(fn).lower(params, *inputs).compile().cost_analysis()['flops'])
  return {'forward': count(forward), 'forward_backward': count(jax.grad(forward))}


def main(argv):
  del argv
  config = cli.config_from_flag()
  models.check_video_shape(config.model, config.data.num_frames, config.data.resolution)
  d = config.data
  print(f'model {config.model.name}, clip {d.num_frames}x{d.resolution}x{d.resolution}')
  for part, n in param_counts(config).items():
    print(f'  params {part:<12} {n / 1e6:10.2f}M')
  if FLAGS.flops:
    for name, flops in flops_per_clip(config).items():
      print(f'  GFLOPs/clip {name:<17} {flops / 1e9:10.2f}')


if __name__ == '__main__':
  cli.run(main)
