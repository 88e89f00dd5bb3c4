"""Gradient checkpointing of model blocks by a named policy (`model.remat_policy`)."""

import flax.linen as nn
import jax

from vidiff.errors import check

# What the backward pass may keep from the forward pass; everything else is recomputed.
POLICIES = {
    'none': None,  # no remat: keep every activation
    'full': jax.checkpoint_policies.nothing_saveable,  # keep only block inputs
    'dots': jax.checkpoint_policies.checkpoint_dots,  # keep matmul/conv outputs
    'dots_no_batch': jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep weight matmuls
}


def remat(module_class: type[nn.Module], policy: str, static_argnums: tuple[int, ...] = ()):
  """`module_class` wrapped in `nn.remat` with `policy` (a key of POLICIES); 'none' returns it
  unchanged. `static_argnums` counts `self` as 0 (e.g. (3,) for a Python `train` flag)."""
  check(policy in POLICIES, f'model.remat_policy={policy!r}; use one of {sorted(POLICIES)}.')
  if policy == 'none':
    return module_class
  return nn.remat(module_class, policy=POLICIES[policy], static_argnums=static_argnums)


def compiler_options(platform: str) -> dict[str, str]:
  """XLA options under which `jax.checkpoint` saves memory on `platform`.

  jaxlib 0.10's CPU compiler removes remat's optimization barriers first thing (pass
  `cse_barrier_expander`) and CSE then merges the recomputation back into the forward pass: a
  remat policy saved no memory at all (`python -m vidiff.memory_bench` measures it).
  """
  return {'xla_disable_hlo_passes': 'cse_barrier_expander'} if platform == 'cpu' else {}
