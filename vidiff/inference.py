"""Loading a trained model for sampling: the latest checkpoint with the config saved beside it."""

import json

from etils import epath

from configs import common

from vidiff import checkpointing, train
from vidiff.errors import UserError


TRAIN_COMMANDS = {
    'diffusion': 'python -m vidiff.main --config=configs/quickstart.py --workdir=DIR',
    'controlnet': 'python -m vidiff.main --config=configs/controlnet.py '
                  '--config.controlnet.base_workdir=BASE --workdir=DIR',
    'vae': 'python -m vidiff.main --config=configs/vae_quickstart.py --workdir=DIR',
    'latent': 'python -m vidiff.main --config=configs/latent_quickstart.py '
              '--config.latent.vae_workdir=VAE --workdir=DIR'}


def restore_setup(workdir, tasks=('diffusion', 'latent', 'controlnet')):
  """(setup, state) from the latest checkpoint of `workdir` and the config saved with it, on a
  data-parallel mesh over all devices. No checkpoint, or one of a task not in `tasks` (a VAE
  where a denoiser is needed): a UserError naming the command to train what is needed."""
  setup = saved_setup(workdir, tasks)
  return setup, restore_state(workdir, setup)


def saved_setup(workdir, tasks=('diffusion', 'latent', 'controlnet')):
  """`restore_setup`'s setup alone, without reading the parameters: what a command needs to
  check its flags against the model before it spends seconds restoring them."""
  config_json = checkpointing.saved_config(workdir) if epath.Path(workdir).exists() else None
  if config_json is None:
    raise UserError(f'--workdir={workdir} has no checkpoint under {workdir}/checkpoints; train one '
                    f'first: python -m vidiff.main --config=configs/quickstart.py --workdir={workdir}')
  config = common.from_saved(config_json)
  task = config.get('task', 'diffusion')
  if task not in tasks:
    raise UserError(f'--workdir={workdir} holds a {task} checkpoint (config.task={task!r}); this '
                    f'command needs a {" or ".join(tasks)} model, trained with: '
                    f'{TRAIN_COMMANDS[tasks[0]]}')
  config.mesh.update(data=-1, fsdp=1, time=1, space=1, tensor=1)
  config.mesh.dcn.update(data=1, fsdp=1, time=1, space=1, tensor=1)
  return train.make_setup(config)


def restore_state(workdir, setup):
  """The train state of the latest checkpoint in `workdir`, placed as `setup` shards it."""
  return checkpointing.restore(checkpointing.manager(workdir), train.abstract_state(setup))


def restore_matching(workdir, task: str, model_config, setting: str, fix: str):
  """(setup, state) of the `task` checkpoint in `workdir` (a pretrained part of a run, named
  by the config field `setting`); a UserError ending in `fix` unless it was trained with
  `model_config`."""
  setup, state = restore_setup(workdir, tasks=(task,))
  differ = differing_fields(model_config, setup.config.model)
  if differ:
    raise UserError(f'{setting}={workdir} was trained with another model config (fields '
                    f'{differ} differ); {fix}.')
  return setup, state


def differing_fields(config, saved) -> list[str]:
  """The fields in which two ConfigDicts (a run's model config and a checkpoint's) differ."""
  a, b = (json.loads(c.to_json_best_effort()) for c in (config, saved))
  return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
