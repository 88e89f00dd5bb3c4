"""The train step: sharded equals single-device, compiles once, checkpoints round-trip."""

import logging

import jax
import numpy as np
import pytest

from configs import quickstart
from vidiff import checkpointing, sharding, steps, train
from vidiff.data import pipeline
from vidiff.errors import UserError


def _run_steps(config, devices, num_steps):
  setup = train.make_setup(config, devices)
  state = train.init_state(setup)
  step_fn = steps.make_train_step(setup)
  batches = pipeline.train_iterator(config.data, config.model.text, config.train.batch_size)
  losses = []
  for _ in range(num_steps):
    batch = sharding.global_batch(next(batches), setup.batch_shardings)
    with setup.context():
      state, metrics = step_fn(state, batch)
    losses.append(float(metrics['loss']))
  return setup, state, losses, step_fn


def _assert_trees_close(a, b, rtol, atol):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


ALL_ONE = dict(data=1, fsdp=1, time=1, space=1, tensor=1)


@pytest.fixture(scope='module')
def single_device_run():
  """(losses, first-step grads, params after 3 steps) of the tiny config on one device: the
  reference every sharded run must match."""
  config = quickstart.get_config('unet3d,tiny')
  config.mesh.update(ALL_ONE)
  setup, state, losses, _ = _run_steps(config, jax.devices()[:1], 3)
  return losses, jax.device_get(_first_grads(setup)), jax.device_get(state.params)


# Between them the two meshes shard over every axis (batch over data x fsdp, frames over time,
# rows over space, channels over tensor) and regroup frames over time x space.
@pytest.mark.parametrize('mesh', [dict(data=2, fsdp=2, time=2), dict(time=2, space=2, tensor=2)])
def test_sharded_step_equals_single_device(tiny_config, mesh, single_device_run):
  single_losses, single_grads, single_params = single_device_run
  tiny_config.mesh.update({**ALL_ONE, **mesh})
  setup, sharded, sharded_losses, _ = _run_steps(tiny_config, None, 3)
  assert setup.mesh.devices.size == 8
  np.testing.assert_allclose(sharded_losses, single_losses, rtol=1e-5)
  _assert_trees_close(_first_grads(setup), single_grads, rtol=1e-4, atol=1e-6)
  # Adam's first steps move each weight by about lr * sign(grad): where a gradient is ~0, float
  # noise may flip the sign, so updated params agree to within the step size, not to 1e-6.
  max_step = 3 * tiny_config.train.learning_rate
  _assert_trees_close(sharded.params, single_params, rtol=0, atol=max_step)


def _first_grads(setup):
  """Gradients of the train loss at the initial state on the first batch."""
  state = train.init_state(setup)
  batch = sharding.global_batch(
      next(pipeline.train_iterator(setup.config.data, setup.config.model.text,
                                   setup.config.train.batch_size)), setup.batch_shardings)
  grad_fn = jax.jit(lambda p, b: steps.loss_and_grads(p, setup, b, state.step_rng())[1])
  with setup.context():
    return grad_fn(state.params, batch)


def test_fsdp_shards_params_and_optimizer_state(tiny_config):
  tiny_config.mesh.update(dict(data=2, fsdp=4))
  setup = train.make_setup(tiny_config)
  state = train.init_state(setup)
  kernel = state.params['backbone']['down_1_res_0']['conv1']['spatial']['kernel']
  assert kernel.sharding.spec[3] == 'fsdp'
  assert kernel.addressable_shards[0].data.shape[3] == kernel.shape[3] // 4
  mu = state.opt_state[1][0].mu['backbone']['down_1_res_0']['conv1']['spatial']['kernel']
  assert mu.sharding == kernel.sharding


def test_train_step_compiles_once(tiny_config):
  tiny_config.mesh.update(dict(data=2, fsdp=2, time=2))
  _, state, losses, step_fn = _run_steps(tiny_config, None, 4)
  assert step_fn._cache_size() == 1  # pylint: disable=protected-access
  assert int(state.step) == 4 and all(np.isfinite(losses))


def test_loss_falls_on_a_fixed_batch(tiny_config):
  tiny_config.train.update(learning_rate=3e-3, warmup_steps=1, num_steps=30)
  setup = train.make_setup(tiny_config)
  state = train.init_state(setup)
  step_fn = steps.make_train_step(setup)
  batch = sharding.global_batch(
      next(pipeline.train_iterator(tiny_config.data, tiny_config.model.text, 8)),
      setup.batch_shardings)
  eval_step = steps.make_eval_step(setup)
  with setup.context():
    before = float(eval_step(state.params, batch, 0))
    for _ in range(30):
      state, _ = step_fn(state, batch)
    after = float(eval_step(state.params, batch, 0))
  assert after < 0.7 * before, (before, after)


def test_checkpoint_round_trip_restores_state_and_data_position(tiny_config, tmp_path, caplog):
  tiny_config.mesh.update(dict(data=2, fsdp=2, time=2))
  setup, state, _, _ = _run_steps(tiny_config, None, 2)
  it = pipeline.train_iterator(tiny_config.data, tiny_config.model.text, 8)
  next(it)
  mngr = checkpointing.manager(tmp_path)
  with jax.log_compiles(), caplog.at_level(logging.WARNING, logger='jax'):
    checkpointing.save(mngr, 2, state, it, tiny_config)
    mngr.wait_until_finished()
  # On CPU no replica-parallel slicing: saving compiles nothing (it compiled one slice program
  # per array shape, ~10 s of a sharded run's first save).
  compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith('Compiling')]
  assert not compiled, compiled[:3]
  expected_batch = next(it)

  fresh_it = pipeline.train_iterator(tiny_config.data, tiny_config.model.text, 8)
  restored = checkpointing.restore(checkpointing.manager(tmp_path), train.abstract_state(setup),
                                   fresh_it)
  _assert_trees_close(restored, state, rtol=0, atol=0)
  assert jax.tree.leaves(restored.params)[0].sharding == jax.tree.leaves(state.params)[0].sharding
  np.testing.assert_array_equal(next(fresh_it)['video'], expected_batch['video'])
  assert checkpointing.saved_config(tmp_path)['model']['name'] == 'unet3d'


def test_unreadable_latest_checkpoint_falls_back(tiny_config, tmp_path):
  setup, state, _, _ = _run_steps(tiny_config, None, 1)
  mngr = checkpointing.manager(tmp_path)
  checkpointing.save(mngr, 1, state, None, tiny_config)
  mngr.wait_until_finished()
  checkpointing.save(mngr, 2, state.replace(step=state.step + 1), None, tiny_config)
  mngr.wait_until_finished()
  for f in (tmp_path / 'checkpoints' / '2' / 'state').rglob('*'):
    if f.is_file():
      f.write_bytes(b'garbage')
  restored = checkpointing.restore(checkpointing.manager(tmp_path), train.abstract_state(setup))
  assert int(restored.step) == int(state.step)


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(tiny_config, tmp_path):
  setup, state, _, _ = _run_steps(tiny_config, None, 1)
  mngr = checkpointing.manager(tmp_path)
  checkpointing.save(mngr, 1, state, None, tiny_config)
  mngr.wait_until_finished()
  for f in (tmp_path / 'checkpoints' / '1' / 'state').rglob('*'):
    if f.is_file():
      f.write_bytes(b'garbage')
  with pytest.raises(UserError, match='new --workdir'):
    checkpointing.restore(checkpointing.manager(tmp_path), train.abstract_state(setup))


def test_ema_decay_warms_up_to_the_configured_decay():
  from vidiff.train_state import ema_decay  # pylint: disable=g-import-not-at-top
  assert float(ema_decay(0, 0.99)) == pytest.approx(0.1)
  assert float(ema_decay(40, 0.99)) == pytest.approx(41 / 50)
  assert float(ema_decay(10_000, 0.99)) == pytest.approx(0.99)


@pytest.mark.parametrize('field, value, message', [
    ('every', -1, 'must be >= 0'),
    ('num_videos', 1, 'at least 2 videos'),
    ('resolution', 16, 'at least 32 pixels'),
    ('flow', 'raft', "use one of \\('dis', 'farneback'\\)"),
])
def test_bad_metrics_config_is_caught_before_training(tiny_config, field, value, message):
  tiny_config.metrics.every = 10
  tiny_config.metrics[field] = value
  with pytest.raises(UserError, match=message):
    train.check_config(tiny_config)
  tiny_config.metrics.update(every=0, num_videos=1)  # off: its other fields do not matter
  train.check_config(tiny_config)


def test_self_step_training_runs_sharded_and_changes_the_input(tiny_config):
  """diffusion.self_step (the model's own sampler step as x_t): the sharded step compiles and
  stays finite, and the loss differs from the same step without it (same t, eps, batch)."""
  tiny_config.mesh.update(dict(data=2, fsdp=2, time=2))
  tiny_config.diffusion.self_step.prob = 1.0
  _, _, losses, _ = _run_steps(tiny_config, None, 2)
  assert all(np.isfinite(losses))
  tiny_config.diffusion.self_step.prob = 0.0
  _, _, plain, _ = _run_steps(tiny_config, None, 1)
  assert abs(losses[0] - plain[0]) > 1e-4 * abs(plain[0]), (losses[0], plain[0])


@pytest.mark.parametrize('field, value', [('prob', 1.5), ('gap', 0.0), ('gap', 2.0)])
def test_bad_self_step_is_a_clear_error(tiny_config, field, value):
  tiny_config.diffusion.self_step[field] = value
  with pytest.raises(UserError, match=r'diffusion.self_step.prob=.*prob must be in \[0, 1\]'):
    train.check_config(tiny_config)
