"""The train step's gradient accumulation and non-finite skipping, and the loop's guard rails."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidiff import sharding, steps, train
from vidiff.data import pipeline
from vidiff.errors import UserError


def _setup_and_batch(config):
  setup = train.make_setup(config)
  batch = sharding.global_batch(
      next(pipeline.train_iterator(config.data, config.model.text, config.train.batch_size)),
      setup.batch_shardings)
  return setup, train.init_state(setup), batch


def test_microbatches_interleave_examples():
  x = jnp.arange(8)
  np.testing.assert_array_equal(steps.microbatches(x, 2), [[0, 2, 4, 6], [1, 3, 5, 7]])


@pytest.mark.parametrize('k,mesh', [(2, dict(data=2, fsdp=2, time=2)), (4, dict(data=2, time=2, space=2))])
def test_grad_accumulation_equals_one_big_batch(tiny_config, k, mesh):
  tiny_config.mesh.update(mesh)
  results = []
  for accum in (1, k):
    tiny_config.train.grad_accum_steps = accum
    setup, state, batch = _setup_and_batch(tiny_config)
    grads_of = jax.jit(lambda s, b, setup=setup: steps.loss_and_grads(s.params, setup, b,
                                                                      s.step_rng()))
    with setup.context():
      results.append(jax.device_get(grads_of(state, batch)))
  (loss_1, grads_1), (loss_k, grads_k) = results
  np.testing.assert_allclose(loss_k, loss_1, rtol=1e-5)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(grads_k), jax.tree.leaves(grads_1)):
    # Float32 sums in another order: absolute error scales with the leaf's largest entry.
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * float(np.abs(b).max()),
                               err_msg=jax.tree_util.keystr(path))


def test_microbatch_that_does_not_divide_the_mesh_is_a_user_error(tiny_config):
  tiny_config.mesh.update(dict(data=8))
  tiny_config.train.grad_accum_steps = 2  # 8 / 2 = 4 clips over 8 batch shards
  with pytest.raises(UserError, match='grad_accum_steps'):
    train.make_setup(tiny_config)


def test_nonfinite_step_changes_nothing_but_the_step(tiny_config):
  setup, state, batch = _setup_and_batch(tiny_config)
  leaves, treedef = jax.tree.flatten(state.params)
  leaves[0] = leaves[0].at[0].set(jnp.nan)  # one poisoned weight makes loss and grads NaN
  poisoned = state.replace(params=jax.tree.unflatten(treedef, leaves))
  expected = jax.device_get(poisoned)
  with setup.context():
    new, metrics = steps.make_train_step(setup)(poisoned, batch)
  assert int(metrics['nonfinite']) == 1 and int(new.step) == int(expected.step) + 1
  for name in ('params', 'opt_state', 'ema_params'):
    for a, b in zip(jax.tree.leaves(getattr(new, name)), jax.tree.leaves(getattr(expected, name))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def _first_step(config):
  setup, state, batch = _setup_and_batch(config)
  with setup.context():
    return steps.make_train_step(setup)(state, batch)


def test_finite_step_reports_zero_nonfinite(tiny_config):
  _, metrics = _first_step(tiny_config)
  assert int(metrics['nonfinite']) == 0 and np.isfinite(float(metrics['loss']))


def test_bfloat16_compute_keeps_float32_params_and_the_loss(tiny_config):
  tiny_config.mesh.update(dict(data=2, fsdp=2, time=2))
  _, f32 = _first_step(tiny_config)
  tiny_config.model.dtype = 'bfloat16'
  state, bf16 = _first_step(tiny_config)
  assert {p.dtype for p in jax.tree.leaves(state.params)} == {jnp.dtype('float32')}
  assert int(bf16['nonfinite']) == 0
  np.testing.assert_allclose(float(bf16['loss']), float(f32['loss']), rtol=0.05)


def test_meter_stops_after_max_nonfinite_steps_in_a_row(tiny_config):
  tiny_config.train.max_nonfinite_steps = 3
  setup = train.make_setup(tiny_config)
  meter = train.Meter(setup, None, 0)
  ok, bad = {'loss': 0.5, 'grad_norm': 1., 'nonfinite': 0}, {'loss': np.nan, 'grad_norm': np.nan,
                                                             'nonfinite': 1}
  for m in (bad, bad, ok, bad, bad):  # runs of 2: never 3 in a row
    meter.add(m)
  scalars = meter.summary(5)
  assert scalars['train/loss'] == 0.5 and scalars['train/nonfinite_steps'] == 4
  meter.add(bad)  # with the two at the end of the last summary: 3 in a row
  with pytest.raises(UserError, match='3 steps in a row'):
    meter.summary(6)
