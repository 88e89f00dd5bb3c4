r"""Ahead-of-time compile of the train step for a TPU slice you do not have: does it fit?

  python launch/aot_compile.py --config=configs/quickstart.py:st_transformer,base \
      --topology=v5p-128 --config.train.batch_size=64 --config.mesh.fsdp=8
  python launch/aot_compile.py --config=configs/quickstart.py:st_transformer,tiny \
      --topology=v5e-8 --config.mesh.data=-1

The step is lowered and compiled against abstract state and batch shapes, as training compiles
it (`train.compile_train_step`); nothing is allocated or run. Prints the mesh, the parameter
count, the per-device peak memory (arguments + outputs + temp - aliased, from XLA's
`memory_analysis()`) against the chip's HBM, the FLOPs of one step (XLA's cost analysis) and
an estimated step time at `--mfu` of the chip's bf16 peak. A step that does not fit is a
one-line `vidiff: error: ... does not fit ...` with exit status 2.

With libtpu installed (`pip install -e '.[tpu]'`; no TPU needed, though libtpu logs warnings
about its absence) the compile targets the real topology
(`jax.experimental.topologies.get_topology_desc`), as MaxText's `train_compile.py` does, and
the TPU compiler's own out-of-memory check applies. Without it (or with `--mock`) the script
says so on stderr and compiles for a CPU mock of as many devices, re-executing itself with
`XLA_FLAGS=--xla_force_host_platform_device_count=<chips>`. The numbers are then estimates:
CPU buffer assignment is not TPU's (no TPU fusion or tiled layouts, bf16 math widened to f32).
FLOPs agree; memory can be off by 2x (st_transformer,base on v5e-16, batch 32, fsdp=8: 9.2 GiB
per device on the mock, 5.0 GiB from libtpu). The mock also runs one process, so it does not
check what a multi-host slice would (e.g. frames split across hosts).
"""

import dataclasses
import os
import re
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script: `vidiff` and `configs` live in the repo root
  sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
import jax
from absl import flags
from ml_collections import config_flags

from vidiff import cli, perf, sharding, train
from vidiff.errors import UserError, check

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file[:arg].', lock_config=True)
flags.DEFINE_string('topology', None, 'TPU slice by its accelerator type, e.g. v5p-128, v5e-256, '
                    'v4-32 (v4/v5p count TensorCores, 2 per chip; v5e/v6e count chips).')
flags.DEFINE_float('hbm_gib', None, 'Per-device memory budget in GiB (default: the chip\'s HBM).')
flags.DEFINE_float('mfu', 0.4, 'Model FLOPs utilisation assumed for the step-time estimate.')
flags.DEFINE_bool('mock', False, 'Compile on a CPU mock even where libtpu can describe the slice.')
flags.mark_flags_as_required(['config', 'topology'])

FALLBACK_ENV = 'VIDIFF_AOT_FALLBACK'  # set on the re-executed CPU-mock process: why no TPU
FIT_ADVICE = ('raise --config.mesh.fsdp, set --config.model.remat_policy=full, or lower '
              'train.batch_size / data.num_frames')

# ICI shapes by chip count, as MaxText's accelerator_to_spec_map.py
# (AI-Hypercomputer/maxtext, src/MaxText/accelerator_to_spec_map.py) and Google's TPU docs
# (cloud.google.com/tpu/docs/v5p, /v5e, /v4) give them: v5e-16 = v5e:4x4 (16 chips),
# v4-32 = v4:2x2x4 (16 chips), v5p-128 = v5:4x4x4 (64 chips, one cube).
TORUS_2D = {1: '1x1', 4: '2x2', 8: '2x4', 16: '4x4', 32: '4x8', 64: '8x8', 128: '8x16',
            256: '16x16'}
CUBE_3D = {4: '2x2x1', 8: '2x2x2', 16: '2x2x4', 32: '2x4x4', 64: '4x4x4', 128: '4x4x8',
           256: '4x8x8', 512: '8x8x8', 1024: '8x8x16', 2048: '8x16x16', 4096: '16x16x16'}


@dataclasses.dataclass(frozen=True)
class Generation:
  """A TPU generation: how its slices are named and described, and one chip's HBM and peak."""
  prefix: str  # of the libtpu topology name, e.g. 'v5' in 'v5:4x4x4'
  cores_per_chip: int  # what the accelerator-type number counts per chip
  shapes: dict  # chips -> ICI shape
  chip_config: str  # libtpu chip_config_name: v4/v5p chips run as one 'megacore'
  hbm_gib: float  # per chip (Google's TPU docs: v4 32 GiB; v5e 16 GB; v5p 95 GB; v6e 32 GB)
  peak: str  # key of perf.PEAK_FLOPS (bf16 per chip)


GENERATIONS = {
    'v4': Generation('v4', 2, {c: s for c, s in CUBE_3D.items() if c <= 2048}, 'megacore', 32,
                     'TPU v4'),
    'v5p': Generation('v5', 2, CUBE_3D, 'megacore', 95, 'TPU v5p'),
    'v5e': Generation('v5e', 1, TORUS_2D, 'default', 16, 'TPU v5e'),
    'v6e': Generation('v6e', 1, TORUS_2D, 'default', 32, 'TPU v6e'),
}
ALIASES = {'v5litepod': 'v5e'}  # Cloud's accelerator type for v5e


@dataclasses.dataclass(frozen=True)
class Slice:
  """One named TPU slice, e.g. v5p-128: 64 chips in a 4x4x4 cube."""
  name: str
  generation: str
  chips: int
  shape: str

  @property
  def spec(self) -> Generation:
    return GENERATIONS[self.generation]

  @property
  def topology_name(self) -> str:
    return f'{self.spec.prefix}:{self.shape}'

  def topology_kwargs(self) -> dict:
    """libtpu's description of the slice (MaxText's SystemCharacteristics fields)."""
    dims = [int(d) for d in self.shape.split('x')]
    if len(dims) == 2:  # v5e/v6e: 2D torus; a 16-chip side wraps around
      wrap = tuple(d == 16 for d in dims) + (False,)
    else:  # v4/v5p: a full cube and its multiples are tori
      wrap = (min(dims) >= 4,) * 3
    return dict(topology_name=self.topology_name, chip_config_name=self.spec.chip_config,
                chips_per_host_bounds=(1, 1, 1) if self.chips == 1 else (2, 2, 1),
                num_slices=1, wrap=wrap)


def known_topologies() -> str:
  """The names `slice_for` accepts, one brace group per generation."""
  return ', '.join(f'{g}-{{{",".join(str(c * s.cores_per_chip) for c in s.shapes)}}}'
                   for g, s in GENERATIONS.items())


def slice_for(name: str) -> Slice:
  """The Slice named like a Cloud TPU accelerator type; UserError for unknown names."""
  match = re.fullmatch(r'(v\d+[a-z]*)-(\d+)', name.strip().lower())
  generation = match and ALIASES.get(match[1], match[1])
  spec = GENERATIONS.get(generation)
  chips = spec and int(match[2]) // spec.cores_per_chip
  if not spec or chips * spec.cores_per_chip != int(match[2]) or chips not in spec.shapes:
    raise UserError(f'--topology={name} is not a TPU slice this tool knows; known: '
                    f'{known_topologies()}.')
  return Slice(name, generation, chips, spec.shapes[chips])


def topology_devices(tpu: Slice):
  """(compile-only TPU devices of the slice, None), or (None, why not) without libtpu."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  try:
    return topologies.get_topology_desc(platform='tpu', **tpu.topology_kwargs()).devices, None
  except Exception as e:  # pylint: disable=broad-except  (no libtpu: RuntimeError; others vary)
    return None, str(e).split('. ')[0].strip().rstrip('.')


def mock_env(chips: int, reason: str) -> dict[str, str]:
  """This process's environment for a CPU mock of `chips` devices."""
  xla_flags = re.sub(r'--xla_force_host_platform_device_count=\S+', '',
                     os.environ.get('XLA_FLAGS', ''))
  return {**os.environ, 'JAX_PLATFORMS': 'cpu', FALLBACK_ENV: reason,
          'XLA_FLAGS': f'{xla_flags} --xla_force_host_platform_device_count={chips}'.strip()}


def is_mock_of(chips: int) -> bool:
  """Whether jax will start (or has started) with exactly `chips` CPU devices."""
  counts = re.findall(r'--xla_force_host_platform_device_count=(\d+)',
                      os.environ.get('XLA_FLAGS', ''))
  return (os.environ.get('JAX_PLATFORMS') == 'cpu' and bool(counts) and int(counts[-1]) == chips
          and jax.device_count() == chips)


def mock_devices(tpu: Slice, reason: str) -> list:
  """`tpu.chips` CPU devices; re-executes this script with the XLA flags for them if needed
  (they take effect only before jax starts its backend)."""
  if not is_mock_of(tpu.chips):
    check(FALLBACK_ENV not in os.environ,
          f'could not start a CPU mock of {tpu.chips} devices (jax has {jax.device_count()}).')
    sys.stdout.flush()
    sys.stderr.flush()
    script = os.path.abspath(__file__)
    os.execve(sys.executable, [sys.executable, script, *sys.argv[1:]], mock_env(tpu.chips, reason))
  print(f'vidiff: no TPU topology for {tpu.name} ({reason}); compiling for a CPU mock of '
        f'{tpu.chips} devices instead: memory and FLOPs are estimates.', file=sys.stderr)
  return jax.devices()


def ordered_devices(devices, mesh_config) -> list:
  """`devices` in the order that lays the mesh along the TPU's physical links (as
  `mesh_utils.create_device_mesh` does); `sharding.make_mesh` reshapes them in that order."""
  from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
  shape = sharding.mesh_shape(mesh_config, len(devices))
  try:
    return list(mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True).flat)
  except (ValueError, NotImplementedError, AssertionError):
    return list(devices)


def compiled_step(setup, mock: bool):
  """The compiled train step of `setup`; a TPU compile that runs out of HBM is a
  UserError."""
  options = perf.COMPILE_ONLY_CPU_OPTIONS if mock else None
  try:
    return train.compile_train_step(setup, compiler_options=options)
  except Exception as e:  # pylint: disable=broad-except  (XlaRuntimeError has no stable home)
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), str(e))
    raise UserError(f'does not fit: the TPU compiler ran out of memory ({first}); '
                    f'{FIT_ADVICE}.') from e


def report(tpu: Slice, setup, state, compiled, mock: bool, compile_s: float,
           hbm_gib: float) -> dict:
  """The numbers of the table: memory per device, FLOPs, params, estimated step time."""
  memory = perf.step_memory_mib(compiled)
  flops = perf.step_flops(compiled, tpu.chips)
  peak = perf.PEAK_FLOPS[tpu.spec.peak]
  device = setup.mesh.devices.flat[0]
  return {
      'peak_gib': memory['peak'] / 1024, 'memory_gib': {k: v / 1024 for k, v in memory.items()},
      'hbm_gib': hbm_gib, 'flops': flops, 'peak_flops': peak,
      'step_s': flops / (tpu.chips * peak * FLAGS.mfu) if flops else None,
      'params': train.count_params(state.params),
      'compiled_for': (f'{tpu.chips} CPU devices (mock)' if mock else
                       f'{tpu.chips} x {device.device_kind} (libtpu, compile only)'),
      'compile_s': compile_s,
  }


def flops_text(flops: float) -> str:
  """FLOPs with an SI prefix: '12.3 TFLOPs'."""
  scale, prefix = next(((s, p) for s, p in ((1e15, 'P'), (1e12, 'T'), (1e9, 'G'), (1e6, 'M'))
                        if flops >= s), (1, ''))
  return f'{flops / scale:.3g} {prefix}FLOPs'


def seconds_text(seconds: float) -> str:
  """A duration in s, ms or us."""
  scale, unit = next(((s, u) for s, u in ((1, 's'), (1e-3, 'ms')) if seconds >= s), (1e-6, 'us'))
  return f'{seconds / scale:.3g} {unit}'


def table(tpu: Slice, setup, numbers: dict, mock: bool) -> str:
  """The report as aligned `name  value` lines."""
  c, n = setup.config, numbers
  mesh = ' x '.join(f'{axis}={size}' for axis, size in setup.mesh.shape.items())
  per_shard = c.train.batch_size // sharding.ways(setup.batch_shardings['video'])
  m = n['memory_gib']
  estimate = ' (CPU estimate)' if mock else ''
  flops = ('n/a (no cost analysis)' if not n['flops'] else
           f'{flops_text(n["flops"])} total, {flops_text(n["flops"] / tpu.chips)} per device')
  step = ('n/a' if not n['step_s'] else
          f'{seconds_text(n["step_s"])} at {FLAGS.mfu:.0%} MFU of {n["peak_flops"] / 1e12:.0f} '
          f'TFLOP/s bf16 per chip (estimate)')
  k = c.train.grad_accum_steps
  accum = f', {k} microbatches' if k > 1 else ''
  rows = [
      ('topology', f'{tpu.name}: {tpu.chips} chips, {tpu.topology_name}'),
      ('compiled for', f'{n["compiled_for"]} in {n["compile_s"]:.0f} s'),
      ('mesh', mesh),
      ('batch', f'{c.train.batch_size} clips of {c.data.num_frames} x {c.data.resolution}x'
                f'{c.data.resolution} frames ({per_shard} per batch shard{accum})'),
      ('params', f'{n["params"] / 1e6:.1f} M'),
      ('peak per device', f'{n["peak_gib"]:.3g} GiB of {n["hbm_gib"]:g} GiB HBM '
                          f'({n["peak_gib"] / n["hbm_gib"]:.0%}){estimate}'),
      ('  of which', f'arguments {m["arguments"]:.3g}, outputs {m["outputs"]:.3g}, temp '
                     f'{m["temp"]:.3g}, aliased {m["aliased"]:.3g} GiB'),
      ('FLOPs per step', flops),
      ('step time', step),
  ]
  width = max(len(name) for name, _ in rows)
  return '\n'.join(f'{name:<{width}}  {value}' for name, value in rows)


def main(argv):
  del argv
  tpu = slice_for(FLAGS.topology)
  config = cli.config_from_flag()
  check(FLAGS.mfu > 0 and (FLAGS.hbm_gib is None or FLAGS.hbm_gib > 0),
        f'--mfu={FLAGS.mfu} and --hbm_gib={FLAGS.hbm_gib} must be positive.')
  reason = os.environ.get(FALLBACK_ENV) or ('--mock given' if FLAGS.mock else None)
  devices = None
  if reason is None:
    devices, reason = topology_devices(tpu)
  mock = devices is None
  devices = mock_devices(tpu, reason) if mock else ordered_devices(devices, config.mesh)
  setup = train.make_setup(config, devices)
  print(f'compiling the train step for {tpu.name} ({tpu.chips} chips); this can take '
        f'minutes...', file=sys.stderr, flush=True)
  start = time.perf_counter()
  state = train.abstract_state(setup)
  compiled = compiled_step(setup, mock)
  hbm = FLAGS.hbm_gib or tpu.spec.hbm_gib
  numbers = report(tpu, setup, state, compiled, mock, time.perf_counter() - start, hbm)
  print(table(tpu, setup, numbers, mock), flush=True)
  check(numbers['peak_gib'] <= hbm,
        f'does not fit: {numbers["peak_gib"]:.3g} GiB per device > {hbm:g} GiB HBM of '
        f'{tpu.generation}{" (CPU estimate)" if mock else ""}; {FIT_ADVICE}.')


if __name__ == '__main__':
  cli.run(main)
