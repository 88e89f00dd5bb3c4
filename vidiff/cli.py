"""Entry-point plumbing: flag parsing and user errors as one clear line, not a traceback."""

import os
import sys

import jax
from absl import app, flags, logging

from vidiff.errors import UserError
from vidiff.preemption import Preempted

FLAGS = flags.FLAGS


def fail(message: str) -> None:
  """Prints `vidiff: error: message` to stderr and exits with status 2."""
  print(f'vidiff: error: {message}', file=sys.stderr)
  sys.exit(2)


def parse_flags(argv):
  """absl flag parsing with config-override mistakes reported in one line."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    fail(f'{e}. Run with --helpshort for the flags.')
  except (KeyError, AttributeError, TypeError, ValueError) as e:
    overrides = [a.split('=')[0] for a in argv[1:] if a.startswith('--config.')]
    detail = str(e).strip('\'"').replace('\\n', ' ').replace('\n', ' ')
    fail(f'bad config override ({detail}). Overrides given: {" ".join(overrides) or "none"}; '
         f'every --config.X must name an existing field of the config file.')


def config_from_flag(name: str = 'config'):
  """The parsed ConfigDict flag; a missing or broken config file is a UserError."""
  config = FLAGS[name].value
  error = getattr(config, '_error', None)  # ml_collections defers load failures to first access.
  if error is not None:
    detail = ' '.join(str(error).split())
    raise UserError(f'--{name}: could not load the config file ({detail}). Pass an existing file '
                    f'such as --{name}=configs/quickstart.py[:arg].')
  return config


def split_cpu(devices: int) -> bool:
  """Splits this host's CPU into `devices` JAX devices (`jax_num_cpu_devices`), so that a mesh
  runs parts of each batch at once on the cores (one XLA CPU device computes mostly on one
  core). Left alone (False) when `devices` <= 0, when the user chose a count (XLA_FLAGS'
  --xla_force_host_platform_device_count or JAX_NUM_CPU_DEVICES), or when JAX has already
  started (a notebook, a test). Accelerator backends are not affected."""
  chosen = ('xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', '')
            or 'JAX_NUM_CPU_DEVICES' in os.environ)
  if devices <= 0 or chosen:
    return False
  try:
    jax.config.update('jax_num_cpu_devices', int(devices))
  except RuntimeError:  # backends already initialised: keep their devices
    return False
  return True


def initialize_distributed(coordinator_address: str | None, num_processes: int | None,
                           process_id: int | None, auto: bool) -> None:
  """`jax.distributed.initialize` from flags, or auto-detected from the cluster (TPU pod,
  SLURM, Open MPI, Kubernetes) with `auto`; a single process needs neither."""
  given = [v is not None for v in (coordinator_address, num_processes, process_id)]
  if any(given) and not all(given):
    raise UserError('--coordinator_address, --num_processes and --process_id go together; '
                    'pass all three, or --distributed to detect them from the cluster.')
  if all(given):
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif auto:
    jax.distributed.initialize()


def run(main) -> None:
  """app.run(main) where UserError becomes `vidiff: error: ...` and exit status 2."""
  def wrapped(argv):
    # Library INFO logs (orbax writes several per checkpoint) drown the progress bar;
    # an explicit --verbosity=0 brings them back.
    if not FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    try:
      return main(argv)
    except UserError as e:
      fail(str(e))
    except Preempted as e:
      print(f'vidiff: {e}', file=sys.stderr)
      sys.exit(143)  # 128 + SIGTERM: "terminated", so schedulers restart the job
  app.run(wrapped, flags_parser=parse_flags)
