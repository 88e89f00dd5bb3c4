"""Throughput and model FLOPs utilisation (MFU) of a compiled step.

MFU = (FLOPs of one step, from XLA's cost analysis of the compiled program) / step time /
(peak FLOP/s of the devices). Accelerator peaks are the vendors' dense bf16 figures per chip
(`PEAK_FLOPS`); a CPU has no such figure, so `peak_flops` measures the host's f32 matmul rate.
"""

import time

import jax
import jax.numpy as jnp

MIB = 2 ** 20
# For programs compiled only to be measured on CPU: the same buffer assignment as the default
# optimisation level, in less compile time.
COMPILE_ONLY_CPU_OPTIONS = {'xla_backend_optimization_level': 0}

# Dense bf16 FLOP/s per chip (vendor data sheets), matched by the longest prefix of device_kind.
PEAK_FLOPS = {
    'TPU v4': 275e12,
    'TPU v5 lite': 197e12,
    'TPU v5e': 197e12,
    'TPU v5p': 459e12,
    'TPU v5': 459e12,
    'TPU v6 lite': 918e12,
    'TPU v6e': 918e12,
    'NVIDIA A100': 312e12,
    'NVIDIA H100': 989e12,
    'NVIDIA H200': 989e12,
    'NVIDIA B200': 2250e12,
}


def step_flops(compiled, num_devices: int) -> float | None:
  """Total FLOPs of one call of `compiled` (cost analysis is per device for SPMD programs)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  (not every backend implements it)
    return None
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = (cost or {}).get('flops')
  return None if not flops or flops <= 0 else float(flops) * num_devices


def step_memory_mib(compiled) -> dict[str, float]:
  """Per-device MiB of a compiled step from XLA's `memory_analysis()`: 'temp', 'arguments',
  'outputs', 'aliased' and 'peak' = arguments + outputs + temp - aliased. (XLA's own
  `peak_memory_in_bytes` is not used: on CPU it reports about the arguments alone.)"""
  m = compiled.memory_analysis()
  sizes = {'temp': m.temp_size_in_bytes, 'arguments': m.argument_size_in_bytes,
           'outputs': m.output_size_in_bytes, 'aliased': m.alias_size_in_bytes}
  peak = sizes['arguments'] + sizes['outputs'] + sizes['temp'] - sizes['aliased']
  return {'peak': peak / MIB, **{k: v / MIB for k, v in sizes.items()}}


def peak_flops(devices) -> tuple[float | None, str]:
  """(peak FLOP/s of all `devices` together, where the figure comes from)."""
  kind = devices[0].device_kind
  if devices[0].platform == 'cpu':  # virtual CPU devices share the host's cores
    return measured_matmul_flops(devices[0]), 'measured f32 matmul on this host'
  matches = [k for k in PEAK_FLOPS if kind.startswith(k)]
  if not matches:
    return None, f'no peak known for {kind!r}'
  best = max(matches, key=len)
  return PEAK_FLOPS[best] * len(devices), f'{best} bf16 data sheet x {len(devices)}'


def measured_matmul_flops(device, n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of an n x n f32 matmul on `device` (best of `repeats`)."""
  a = jax.device_put(jnp.ones((n, n), jnp.float32), device)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best
