"""Loading a trained model for sampling: the latest checkpoint with the config saved beside it."""

from etils import epath

from configs import common

from vidiff import checkpointing, train
from vidiff.errors import UserError


def restore_setup(workdir):
  """(setup, state) from the latest checkpoint of `workdir` and the config saved with it, on a
  data-parallel mesh over all devices. No checkpoint: a UserError naming the command to train."""
  config_json = checkpointing.saved_config(workdir) if epath.Path(workdir).exists() else None
  if config_json is None:
    raise UserError(f'--workdir={workdir} has no checkpoint under {workdir}/checkpoints; train one '
                    f'first: python -m vidiff.main --config=configs/quickstart.py --workdir={workdir}')
  config = common.from_saved(config_json)
  config.mesh.update(data=-1, fsdp=1, time=1, space=1, tensor=1)
  config.mesh.dcn.update(data=1, fsdp=1, time=1, space=1, tensor=1)
  setup = train.make_setup(config)
  return setup, checkpointing.restore(checkpointing.manager(workdir), train.abstract_state(setup))
