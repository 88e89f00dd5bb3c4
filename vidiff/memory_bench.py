"""Peak per-device memory of the ST-Transformer train step over frames x remat x time shards.

  python -m vidiff.memory_bench --out=/tmp/membench
  python -m vidiff.memory_bench --frames=8,16 --remat=none,full --time_shards=1,2 --resolution=16

Each grid point is the quickstart ST-Transformer (`configs/quickstart.py:st_transformer`) with
`data.num_frames` = T, `model.remat_policy` and a mesh of `time` = k devices (every other axis
1) at a fixed global batch, so a device holds T/k frames. The train step is compiled ahead of
time and XLA's `memory_analysis()` of the compiled program is read; nothing runs. Per device:

  peak = arguments + outputs + temp - aliased   (temp: activations and other scratch)

XLA's own `peak_memory_in_bytes` is not used: on the CPU backend it reports about the size of
the arguments alone, without the temp buffers.

The step is compiled as training compiles it (`train.compile_train_step`): on CPU with the
pass `cse_barrier_expander` disabled (`remat.compiler_options`), since jaxlib 0.10.2's CPU
compiler otherwise drops the optimization barriers of `jax.checkpoint` first
thing, CSE merges the recomputation back into the forward pass, and remat saves nothing (on a
toy chain of 8 checkpointed blocks, temp 256 MiB with and without remat; 80 MiB with the pass
off, as jaxlib 0.11.2's CPU compiler gives by itself and the GPU compiler gives 288 -> 120 MiB).
The numbers are what the step's buffer assignment needs; an accelerator's allocator needs
that plus its fragmentation and library workspaces.

Prints a table of peak and temp MiB per (T, remat) and time shards, then the largest T of the
grid that fits a per-device budget (`--budget_mib`) per remat policy and time shards. `--out`
also writes both to memory.json and memory.md.
"""

import json
import os
import time

import jax
from absl import flags
from etils import epath
from tqdm import tqdm

from configs import quickstart
from vidiff import cli, perf, train
from vidiff.errors import check
from vidiff.models import remat

FLAGS = flags.FLAGS
flags.DEFINE_list('frames', ['8', '16', '32', '64'], 'Clip lengths T (data.num_frames).')
flags.DEFINE_list('remat', ['none', 'full'],
                  f'model.remat_policy values ({", ".join(remat.POLICIES)}).')
flags.DEFINE_list('time_shards', ['1', '2', '4'], 'Sizes of the `time` mesh axis (devices).')
flags.DEFINE_integer('batch_size', 1, 'Global batch size (clips), the same at every grid point.')
flags.DEFINE_integer('resolution', 32, 'Frame height and width (data.resolution).')
flags.DEFINE_float('budget_mib', None, 'Per-device budget for the fit table (MiB); default: '
                   'between the unsharded peaks of the 2nd and 3rd smallest T (first --remat).')
flags.DEFINE_string('out', None, 'Optional directory for memory.json and memory.md.')

def grid_config(base, frames: int, policy: str, time_shards: int, batch_size: int,
                resolution: int | None = None):
  """`base` (a train config) with T frames, the remat policy and a time-only mesh of k devices."""
  config = base.copy_and_resolve_references()
  config.data.num_frames = frames
  if resolution is not None:
    config.data.resolution = resolution
  config.model.remat_policy = policy
  config.train.update(batch_size=batch_size, grad_accum_steps=1)
  config.mesh.update(data=1, fsdp=1, time=time_shards, space=1, tensor=1)
  return config


def measure(base, frames, policies, time_shards, batch_size: int = 1,
            resolution: int | None = None, devices=None, progress: bool = True) -> list[dict]:
  """One row per (T, remat, k) of the grid: {'frames', 'remat', 'time_shards',
  'compile_s', and perf.step_memory_mib's MiB}; k devices are the first k of `devices`."""
  devices = list(jax.devices() if devices is None else devices)
  check(max(time_shards) <= len(devices),
        f'--time_shards up to {max(time_shards)} need as many devices but {len(devices)} are '
        f'available; on CPU set XLA_FLAGS=--xla_force_host_platform_device_count='
        f'{max(time_shards)} (or leave XLA_FLAGS unset).')
  grid = [(t, p, k) for t in frames for p in policies for k in time_shards]
  rows = []
  for t, p, k in tqdm(grid, desc='compile', disable=not progress, dynamic_ncols=True):
    start = time.perf_counter()
    setup = train.make_setup(grid_config(base, t, p, k, batch_size, resolution), devices[:k])
    options = perf.COMPILE_ONLY_CPU_OPTIONS if devices[0].platform == 'cpu' else None
    memory = perf.step_memory_mib(train.compile_train_step(setup, compiler_options=options))
    rows.append({'frames': t, 'remat': p, 'time_shards': k,
                 'compile_s': round(time.perf_counter() - start, 1), **memory})
  return rows


def _axes(rows):
  """(frames, remat policies, time shards) of the rows, in first-seen order."""
  return tuple(list(dict.fromkeys(r[key] for r in rows))
               for key in ('frames', 'remat', 'time_shards'))


def _lookup(rows):
  return {(r['frames'], r['remat'], r['time_shards']): r for r in rows}


def memory_table(rows: list[dict]) -> str:
  """Markdown: a row per (T, remat); peak and temp MiB per device for each time-shard count."""
  frames, policies, shards = _axes(rows)
  at = _lookup(rows)
  head = ['T', 'remat', *(f'peak, time={k}' for k in shards), *(f'temp, time={k}' for k in shards)]
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * 2 + '---:|' * (2 * len(shards))]
  for t in frames:
    for p in policies:
      cells = [f'{at[t, p, k][key]:.1f}' if (t, p, k) in at else '-'
               for key in ('peak', 'temp') for k in shards]
      lines.append('| ' + ' | '.join([str(t), p, *cells]) + ' |')
  return '\n'.join(lines)


def default_budget_mib(rows: list[dict]) -> float:
  """A device that fits the second-smallest T but not the third, unsharded with the first remat
  policy: the geometric mean of those two peaks (MiB). Between grid points, so which T fits
  does not hinge on the few MiB that sharding adds."""
  frames, policies, shards = _axes(rows)
  ts = sorted(frames)
  low, high = (_lookup(rows)[ts[min(i, len(ts) - 1)], policies[0], min(shards)]['peak']
               for i in (1, 2))
  return (low * high) ** 0.5


def largest_fitting(rows: list[dict], budget_mib: float) -> dict[tuple[str, int], int | None]:
  """{(remat, time shards): the largest T whose peak is <= budget_mib, or None}."""
  frames, policies, shards = _axes(rows)
  at = _lookup(rows)
  return {(p, k): max((t for t in frames if (t, p, k) in at and at[t, p, k]['peak'] <= budget_mib),
                      default=None) for p in policies for k in shards}


def fit_table(rows: list[dict], budget_mib: float) -> str:
  """Markdown: the largest T of the grid within budget_mib per device, per remat x time shards."""
  _, policies, shards = _axes(rows)
  fits = largest_fitting(rows, budget_mib)
  lines = [f'Largest T with peak <= {budget_mib:.1f} MiB per device:', '',
           '| remat | ' + ' | '.join(f'time={k}' for k in shards) + ' |',
           '|---|' + '---:|' * len(shards)]
  for p in policies:
    cells = [str(fits[p, k]) if fits[p, k] else 'none fits' for k in shards]
    lines.append(f'| {p} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def report_markdown(rows: list[dict], budget_mib: float, title: str) -> str:
  """Both tables under a title line."""
  return f'{title}\n\n{memory_table(rows)}\n\n{fit_table(rows, budget_mib)}\n'


def write_report(out: str, rows: list[dict], budget_mib: float, markdown: str, settings: dict):
  """Writes `out`/memory.json (settings, rows, budget, fits) and `out`/memory.md."""
  path = epath.Path(out)
  path.mkdir(parents=True, exist_ok=True)
  fits = [{'remat': p, 'time_shards': k, 'largest_frames': t}
          for (p, k), t in largest_fitting(rows, budget_mib).items()]
  record = {'settings': settings, 'rows': rows, 'budget_mib': budget_mib, 'largest_fitting': fits}
  (path / 'memory.json').write_text(json.dumps(record, indent=1) + '\n')
  (path / 'memory.md').write_text(markdown)


def int_list(name: str) -> list[int]:
  """The comma-separated positive integers of list flag --name."""
  try:
    values = [int(v) for v in FLAGS[name].value]
  except ValueError:
    values = []
  check(bool(values) and min(values) >= 1,
        f'--{name}={",".join(FLAGS[name].value)} must be positive integers separated by commas.')
  return values


def force_host_devices(count: int) -> None:
  """Asks XLA for `count` host (CPU) devices unless XLA_FLAGS already sets a count; works only
  before jax initialises its backend."""
  xla_flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_force_host_platform_device_count' not in xla_flags:
    os.environ['XLA_FLAGS'] = f'{xla_flags} --xla_force_host_platform_device_count={count}'.strip()


def main(argv):
  del argv
  frames, shards = int_list('frames'), int_list('time_shards')
  force_host_devices(max(shards))
  for policy in FLAGS.remat:
    check(policy in remat.POLICIES, f'--remat: {policy!r} is not a policy; use names from '
                                    f'{sorted(remat.POLICIES)}.')
  check(FLAGS.batch_size >= 1, f'--batch_size={FLAGS.batch_size} must be >= 1.')
  base = quickstart.get_config('st_transformer')
  start = time.perf_counter()
  rows = measure(base, frames, FLAGS.remat, shards, FLAGS.batch_size, FLAGS.resolution)
  budget = default_budget_mib(rows) if FLAGS.budget_mib is None else FLAGS.budget_mib
  device = jax.devices()[0]
  title = (f'Train-step memory per device (MiB), ST-Transformer quickstart, global batch '
           f'{FLAGS.batch_size}, {FLAGS.resolution}x{FLAGS.resolution} frames, compiled for '
           f'{device.platform} ({device.device_kind}).')
  markdown = report_markdown(rows, budget, title)
  print(markdown)
  print(f'{len(rows)} compiles in {time.perf_counter() - start:.0f} s.')
  if FLAGS.out:
    settings = {'frames': frames, 'remat': FLAGS.remat, 'time_shards': shards,
                'batch_size': FLAGS.batch_size, 'resolution': FLAGS.resolution,
                'platform': device.platform, 'device_kind': device.device_kind}
    write_report(FLAGS.out, rows, budget, markdown, settings)
    print(f'wrote {epath.Path(FLAGS.out) / "memory.json"} and memory.md')


if __name__ == '__main__':
  cli.run(main)
