"""Parameter counts and FLOPs of a config's model, from shapes only (nothing is allocated).

  python -m vidiff.model_info --config=configs/quickstart.py:st_transformer
  python -m vidiff.model_info --config=configs/quickstart.py:unet3d,size=base --flops=false
  python -m vidiff.model_info --config=configs/quickstart.py:st_transformer,base \
      --config.model.dtype=bfloat16 --config.data.resolution=64 --train_steps=20

FLOPs are XLA's count for one clip of the config's data shape (`data.num_frames` x
`data.resolution`^2): the forward pass, and forward + backward (a train step without the
optimizer). The large presets compile for minutes on CPU: pass --flops=false for counts only.
`--train_steps=N` also compiles the config's whole train step (its mesh, batch, optimizer)
and times N steps on a random batch: s/step, clips/s, TFLOP/s, MFU and memory per device.
`--attention_impls=xla,auto` times it once per `model.attention_impl`, all from one initialised
state (on a GPU, initialising a 200M model compiles for about a minute).
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import linen as nn
from ml_collections import config_flags

from vidiff import cli, models, perf, sharding, train

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing the module defines none)."""
  config_flags.DEFINE_config_file('config', None, 'Training config file[:arg].', lock_config=True)
  flags.DEFINE_bool('flops', True, 'Also compile forward and backward to count FLOPs.')
  flags.DEFINE_integer('train_steps', 0, 'Also time this many train steps (after 2 warm-up '
                       'steps).')
  flags.DEFINE_list('attention_impls', [], 'With --train_steps: time the train step once per '
                    'model.attention_impl in this list (e.g. xla,auto), from one initial state.')
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


def random_batch(setup, seed: int = 0) -> dict:
  """A global batch of random uint8 clips and token ids in the setup's shardings."""
  rng, shapes = np.random.default_rng(seed), train.batch_shape(setup.config)
  local = {'video': rng.integers(0, 256, shapes['video'], dtype=np.uint8),
           'tokens': rng.integers(1, setup.config.model.text.vocab_size, shapes['tokens'],
                                  dtype=np.int32)}
  return sharding.global_batch(local, setup.batch_shardings)


def train_step_speed(config, steps: int, state=None) -> tuple[dict, object]:
  """Seconds per train step (mean of `steps` after 2 warm-ups), TFLOP/s, MFU, GiB per device;
  and the state after the steps. `state`: start from it (the config's shapes and shardings)
  instead of initialising one."""
  setup = train.make_setup(config)
  compiled = train.compile_train_step(setup)
  state, batch = state if state is not None else train.init_state(setup), random_batch(setup)
  with setup.context():
    for i in range(steps + 2):
      if i == 2:
        jax.block_until_ready(state)
        start = time.perf_counter()
      state, _ = compiled(state, batch)
    jax.block_until_ready(state)
  seconds = (time.perf_counter() - start) / steps
  devices = list(setup.mesh.devices.flat)
  flops, (peak, source) = perf.step_flops(compiled, len(devices)), perf.peak_flops(devices)
  return {'seconds_per_step': seconds, 'clips_per_sec': config.train.batch_size / seconds,
          'tflops_per_sec': flops / seconds / 1e12 if flops else float('nan'),
          'mfu': flops / seconds / peak if flops and peak else float('nan'),
          'peak_source': source,
          'gib_per_device': perf.step_memory_mib(compiled)['peak'] / 1024}, state


def speed_line(config, r: dict) -> str:
  """One printed line of `train_step_speed`'s result."""
  return (f'  train step ({config.train.batch_size} clips, {jax.devices()[0].device_kind}, '
          f'model.dtype={config.model.dtype}, remat={config.model.remat_policy}, '
          f'attention={config.model.get("attention_impl", "auto")}): '
          f'{r["seconds_per_step"] * 1e3:.1f} ms, {r["clips_per_sec"]:.1f} clips/s, '
          f'{r["tflops_per_sec"]:.3g} TFLOP/s, MFU {100 * r["mfu"]:.1f}% ({r["peak_source"]}), '
          f'{r["gib_per_device"]:.2f} GiB per device')


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
  if FLAGS.train_steps > 0:
    state = None
    for impl in FLAGS.attention_impls or [None]:
      if impl is not None:
        config = config.copy_and_resolve_references()
        config.model.attention_impl = impl
      r, state = train_step_speed(config, FLAGS.train_steps, state)
      print(speed_line(config, r), flush=True)


if __name__ == '__main__':
  define_flags()
  cli.run(main)
