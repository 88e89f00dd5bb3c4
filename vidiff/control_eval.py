r"""Does a trained ControlNet follow its depth stream? A table for held-out clips:

  python -m vidiff.control_eval --workdir=DIR [--num_videos=32 --control_scale=1 --steps=50]

DIR is a ControlNet workdir (configs/controlnet.py). The first --num_videos held-out clips'
captions are sampled with their depth maps as the control (the ControlNet) and, from the same
noise, with the control off (scale 0: exactly the base model), and each set is scored against
the depth (`metrics.control`): foreground IoU (shapes data) and depth-edge recall; the held-out
clips themselves give the reference row. Writes DIR/control_eval/{scores.json, grid.png, videos
(depth | real | base | ControlNet)}.
"""

import json

from absl import flags
from etils import epath

from vidiff import cli, control_task, generate, inference, metric_writer

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'ControlNet workdir (configs/controlnet.py).', required=True)
flags.DEFINE_integer('num_videos', 32, 'Held-out clips to sample and score.')
flags.DEFINE_float('control_scale', None, 'Strength of the control (default 1).')
flags.DEFINE_integer('steps', None, 'Sampler steps (default: config.sample.steps).')
flags.DEFINE_float('guidance', None, 'Classifier-free guidance scale (default: config).')
flags.DEFINE_integer('seed', 0, 'Sampling seed.')
flags.DEFINE_string('out', None, 'Output folder (default: WORKDIR/control_eval).')


def main(argv):
  del argv
  setup, state = inference.restore_setup(FLAGS.workdir, tasks=('controlnet',))
  options = generate.options_from_config(setup.config, steps=FLAGS.steps, guidance=FLAGS.guidance,
                                         seed=FLAGS.seed, control_scale=FLAGS.control_scale)
  table, videos, captions = control_task.compare(setup, state.ema_params, FLAGS.num_videos,
                                                 options, progress=True)
  out = epath.Path(FLAGS.out or epath.Path(FLAGS.workdir) / 'control_eval')
  out.mkdir(parents=True, exist_ok=True)
  generate.write_videos(out, videos, captions, setup.config.sample.fps)
  row = dict(step=int(state.step), num_videos=FLAGS.num_videos,
             control_scale=options.control_scale, steps=options.steps, scores=table)
  (out / 'scores.json').write_text(json.dumps(row, indent=1))
  print(f'{FLAGS.num_videos} held-out clips, step {int(state.step)}, control scale '
        f'{options.control_scale}, {options.sampler} {options.steps} steps, guidance '
        f'{options.guidance}:')
  print(control_task.summary(table))
  metric_writer.say(f'depth | real | base | ControlNet videos and scores.json -> {out}')


if __name__ == '__main__':
  cli.run(main)
