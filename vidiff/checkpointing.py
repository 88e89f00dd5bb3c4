"""Orbax checkpoints of the train state, the Grain iterator position and the config.

`save` is asynchronous; a step directory only counts once orbax has committed it, so a
killed run never leaves a half-written checkpoint that `restore` would pick up. If the
latest checkpoint cannot be read, `restore` warns and falls back to the one before.
"""

import json

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import type_handlers
from absl import logging
from etils import epath

from vidiff.errors import UserError


def manager(workdir, max_to_keep: int = 3) -> ocp.CheckpointManager:
  """A CheckpointManager over `workdir/checkpoints` (local path or gs://)."""
  return ocp.CheckpointManager(
      epath.Path(workdir) / 'checkpoints',
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=True),
      item_handlers={'state': state_handler(),
                     'data': grain.checkpoint.CheckpointHandler(),
                     'config': ocp.JsonCheckpointHandler()})


def state_handler() -> ocp.PyTreeCheckpointHandler:
  """The train state's handler. On CPU its arrays are written without orbax's replica-parallel
  saving, which splits each replicated array between its replicas with one compiled slice
  program per array shape: on 8 CPU devices of one host that cost ~10 s at a run's first save
  (and ~2 s at every later one) and gains nothing. Accelerators keep it."""
  arrays = type_handlers.ArrayHandler(use_replica_parallel=jax.default_backend() != 'cpu')
  scalars = type_handlers.ScalarHandler()
  registry = type_handlers.create_type_handler_registry(
      (int, scalars), (float, scalars), (np.number, scalars),
      (np.ndarray, type_handlers.NumpyHandler()), (jax.Array, arrays),
      (str, type_handlers.StringHandler()))
  return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


def save(mngr: ocp.CheckpointManager, step: int, state, data_iterator, config) -> None:
  """Starts an async save of `state`, the iterator position and `config` at `step`."""
  items = {'state': ocp.args.PyTreeSave(state), 'config': ocp.args.JsonSave(json.loads(config.to_json_best_effort()))}
  if data_iterator is not None:
    items['data'] = grain.checkpoint.CheckpointSave(data_iterator)
  mngr.save(step, args=ocp.args.Composite(**items), force=True)


def restore(mngr: ocp.CheckpointManager, abstract_state, data_iterator=None):
  """Restores the newest readable checkpoint into `abstract_state`'s shapes and shardings.

  Returns the state (or None if there is no checkpoint); `data_iterator`, if given, is moved
  to the saved position. Checkpoints exist but none is readable (say, written by a different
  model config): a UserError, so that a run never silently restarts over them.
  """
  error = None
  for step in sorted(mngr.all_steps(), reverse=True):
    items = {'state': ocp.args.PyTreeRestore(
        abstract_state, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state))}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      return mngr.restore(step, args=ocp.args.Composite(**items))['state']
    except Exception as e:  # pylint: disable=broad-except
      error = f'{type(e).__name__}: {" ".join(str(e).split())[:300]}'
      logging.warning('checkpoint at step %d is unreadable (%s); trying the previous one.',
                      step, error)
  if error is not None:
    raise UserError(f'no checkpoint in {mngr.directory} can be restored into this model (the '
                    f'last error: {error}). Use the config that wrote them, or a new --workdir.')
  return None


def saved_config(workdir) -> dict | None:
  """The config JSON saved with the latest checkpoint of `workdir`, or None."""
  mngr = ocp.CheckpointManager(epath.Path(workdir) / 'checkpoints',
                               item_handlers={'config': ocp.JsonCheckpointHandler()})
  step = mngr.latest_step()
  return None if step is None else mngr.restore(step, args=ocp.args.Composite(
      config=ocp.args.JsonRestore()))['config']
