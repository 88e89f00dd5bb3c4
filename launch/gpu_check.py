r"""Correctness of vidiff's accelerator paths on one GPU, against float32 on the host CPU.

  python launch/gpu_check.py [--out=DIR]

1. Attention: `layers.attention` with implementation 'cudnn' (fused flash attention) and 'xla'
   on bf16 inputs of the shapes the base models use (spatial, temporal, causal, joint), output
   and input gradients, each against a float32 XLA reference computed on the CPU:
   ||x - ref|| / ||ref||.
2. Both backbones (quickstart size) in bf16 and float32 on the GPU, attention 'auto', against
   the same parameters and inputs in float32 on the CPU: forward output and parameter
   gradient.

Prints a table, writes DIR/gpu_check.json, exits 1 if an error exceeds its tolerance (bf16
attention 3e-2, bf16 models 6e-2, float32 models on the GPU, whose matmuls may run in TF32,
1e-2) or is not finite.
"""

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import quickstart
from vidiff import models
from vidiff.models import layers

# Relative errors allowed for whole models: bf16 rounding accumulates over the layers; float32
# matmuls on the GPU may run in TF32.
MODEL_TOLERANCE = {'bfloat16': 6e-2, 'float32': 1e-2}
# (name, q [B, L, N, D], keys S, causal): the base ST-Transformer's attentions at 16x64x64
# (patch 2: 32x32 tokens a frame, width 768 = 12 heads of 64) with fewer rows of the batch.
ATTENTION_CASES = (('spatial', (16, 1024, 12, 64), 1024, False),
                   ('temporal', (1024, 16, 12, 64), 16, False),
                   ('temporal causal', (1024, 16, 12, 64), 16, True),
                   ('joint', (1, 4096, 12, 64), 4096, False))


def relative_error(x, ref) -> float:
  x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
  return float(np.linalg.norm(x - ref) / max(np.linalg.norm(ref), 1e-30))


def attention_loss(q, k, v, w, causal, implementation):
  out = layers.attention(q, k, v, causal=causal, implementation=implementation)
  return jnp.sum(out.astype(jnp.float32) * w), out


def attention_rows(gpu, cpu) -> list[dict]:
  """Per case and implementation: errors of output and dq/dk/dv against float32 on the CPU."""
  rows, rng = [], np.random.default_rng(0)
  for name, shape, keys, causal in ATTENTION_CASES:
    b, length, n, d = shape
    q = rng.standard_normal(shape, np.float32)
    k, v = (rng.standard_normal((b, keys, n, d), np.float32) for _ in range(2))
    w = rng.standard_normal(shape, np.float32)
    grad = jax.value_and_grad(attention_loss, argnums=(0, 1, 2), has_aux=True)
    ref_fn = jax.jit(lambda *a: grad(*a, causal, 'xla'))
    (_, ref_out), ref_grads = ref_fn(*jax.device_put((q, k, v, w), cpu))
    for impl in ('cudnn', 'xla'):
      fn = jax.jit(lambda *a: grad(*a, causal, impl))
      args = [jax.device_put(jnp.asarray(a, jnp.bfloat16), gpu) for a in (q, k, v)]
      try:
        (_, out), grads = fn(*args, jax.device_put(w, gpu))
      except Exception as e:  # pylint: disable=broad-except
        rows.append({'case': name, 'impl': impl, 'dtype': 'bfloat16', 'tol': 3e-2,
                     'error': f'{type(e).__name__}: {str(e)[:200]}'})
        continue
      rows.append({'case': name, 'impl': impl, 'dtype': 'bfloat16', 'tol': 3e-2,
                   'out': relative_error(out, ref_out),
                   **{f'd{x}': relative_error(g, r) for x, g, r in zip('qkv', grads, ref_grads)}})
  return rows


def perturbed(params):
  """params + 0.02 N(0, 1) (fixed seed): the zero-initialised output layers of a fresh model
  would make its output, and so every error, exactly zero."""
  rng = np.random.default_rng(2)
  return jax.tree.map(lambda p: p + 0.02 * rng.standard_normal(p.shape).astype(p.dtype), params)


def model_rows(gpu, cpu) -> list[dict]:
  """Per backbone and GPU dtype: errors of the forward output and parameter gradient against
  float32 on the CPU (same parameters and inputs)."""
  rows, rng = [], np.random.default_rng(1)
  for backbone in ('unet3d', 'st_transformer'):
    config = quickstart.get_config(f'{backbone},quickstart')
    b, t, r = 2, 8, 32
    x = rng.standard_normal((b, t, r, r, 3), np.float32)
    time = np.full((b,), 0.5, np.float32)
    tokens = rng.integers(1, config.model.text.vocab_size, (b, config.model.text.max_len),
                          dtype=np.int32)
    outs = {}
    for dtype, device, where in (('float32', cpu, 'cpu'), ('float32', gpu, 'gpu'),
                                 ('bfloat16', gpu, 'gpu')):
      config.model.dtype = dtype
      model = models.get_model(config.model)
      params = jax.jit(model.init)(*jax.device_put(
          (jax.random.PRNGKey(0), x[:1], time[:1], tokens[:1]), cpu))
      params = perturbed(params)
      loss = lambda p, *a: jnp.mean(model.apply(p, *a) ** 2)
      put = lambda a: jax.device_put(a, device)
      fn = jax.jit(lambda p, *a: (model.apply(p, *a), jax.grad(loss)(p, *a)))
      out, g = fn(*map(put, (params, x, time, tokens)))
      outs[dtype, where] = (np.asarray(out), np.concatenate(
          [np.ravel(np.asarray(l, np.float32)) for l in jax.tree.leaves(g)]))
    ref_out, ref_grad = outs['float32', 'cpu']
    for dtype in ('float32', 'bfloat16'):
      out, grad = outs[dtype, 'gpu']
      rows.append({'case': backbone, 'impl': 'auto', 'dtype': dtype, 'tol': MODEL_TOLERANCE[dtype],
                   'out': relative_error(out, ref_out), 'dparams': relative_error(grad, ref_grad)})
  return rows


def failures(rows) -> list[str]:
  bad = []
  for r in rows:
    errors = {k: v for k, v in r.items() if k not in ('case', 'impl', 'dtype', 'tol', 'error')}
    if 'error' in r or not all(np.isfinite(v) and v <= r['tol']
                               for v in errors.values()):
      bad.append(f'{r["case"]} {r["impl"]} {r["dtype"]}: {r.get("error", errors)}')
  return bad


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', default=None, help='folder for gpu_check.json')
  args = parser.parse_args()
  gpu, cpu = jax.devices()[0], jax.devices('cpu')[0]
  if gpu.platform != 'gpu':
    print(f'gpu_check: the default device is {gpu.platform}, not a GPU; nothing to check.')
    return 1
  print(f'{gpu.device_kind}, jax {jax.__version__}')
  start = time.perf_counter()
  rows = attention_rows(gpu, cpu)
  print(f'attention checks: {time.perf_counter() - start:.0f} s')
  start = time.perf_counter()
  rows += model_rows(gpu, cpu)
  print(f'model checks: {time.perf_counter() - start:.0f} s')
  keys = ('out', 'dq', 'dk', 'dv', 'dparams')
  print('| case | impl | dtype | ' + ' | '.join(keys) + ' |')
  print('|---|---|---|' + '---:|' * len(keys))
  for r in rows:
    cells = [r.get('error', '')[:60] if k == 'out' and 'error' in r else
             (f'{r[k]:.2e}' if k in r else '-') for k in keys]
    print(f'| {r["case"]} | {r["impl"]} | {r["dtype"]} | ' + ' | '.join(cells) + ' |')
  if args.out:
    with open(f'{args.out}/gpu_check.json', 'w') as f:
      json.dump({'device': gpu.device_kind, 'jax': jax.__version__, 'rows': rows}, f, indent=1)
  bad = failures(rows)
  print('\n'.join(['FAILED:', *bad]) if bad else 'all within tolerance')
  return 1 if bad else 0


if __name__ == '__main__':
  sys.exit(main())
