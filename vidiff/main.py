"""Trains a video diffusion model: flags -> train.train_and_evaluate(config, workdir).

  python -m vidiff.main --config=configs/quickstart.py --workdir=/tmp/vidiff_quickstart

Multi-process (one command per process; on TPU pods and SLURM `--distributed` detects these):
  python -m vidiff.main ... --coordinator_address=HOST:PORT --num_processes=N --process_id=I
"""

from absl import flags
from ml_collections import config_flags

from vidiff import cli, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file[:arg].', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory (local or gs://) for checkpoints, logs, samples.')
flags.DEFINE_string('coordinator_address', None, 'Multi-process: host:port of process 0.')
flags.DEFINE_integer('num_processes', None, 'Multi-process: number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-process: index of this process.')
flags.DEFINE_bool('distributed', False, 'Multi-process: detect the above from the cluster '
                  '(TPU pod, SLURM, Open MPI, Kubernetes).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  config = cli.config_from_flag()
  cli.split_cpu(config.mesh.get('cpu_devices', 0))
  cli.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                             FLAGS.distributed)
  train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == '__main__':
  cli.run(main)
