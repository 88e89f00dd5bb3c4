"""Trains a video diffusion model: flags -> train.train_and_evaluate(config, workdir).

  python -m vidiff.main --config=configs/quickstart.py --workdir=/tmp/vidiff_quickstart
"""

from absl import flags
from ml_collections import config_flags

from vidiff import cli, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file[:arg].', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory (local or gs://) for checkpoints, logs, samples.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  train.train_and_evaluate(cli.config_from_flag(), FLAGS.workdir)


if __name__ == '__main__':
  cli.run(main)
