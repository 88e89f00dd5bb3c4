r"""Samples videos from a trained checkpoint:

  python -m vidiff.sample --workdir=DIR --prompt="a red circle moving left" --output=out.mp4

Restores the EMA parameters of the latest checkpoint in DIR/checkpoints with the config saved
beside them, samples with DDIM + classifier-free guidance, and writes the video (.mp4 or .gif by
extension) and a PNG grid of its frames next to it.
"""

from absl import flags
from etils import epath

from configs import common

from vidiff import checkpointing, cli, generate, metric_writer, models, train, video_io
from vidiff.errors import UserError, check

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Training workdir with checkpoints.', required=True)
flags.DEFINE_multi_string('prompt', ['a red circle moving left'], 'Prompt(s); repeat for several.')
flags.DEFINE_integer('num_frames', None, 'Frames per video (default: the training clip length).')
flags.DEFINE_string('output', None, 'Output .mp4 or .gif (default: WORKDIR/samples/sample.mp4).')
flags.DEFINE_integer('steps', None, 'Sampler steps (default: config.sample.steps).')
flags.DEFINE_float('guidance', None, 'Classifier-free guidance scale (default: config).')
flags.DEFINE_float('eta', 0.0, 'DDIM eta: 0 deterministic, 1 ancestral.')
flags.DEFINE_integer('seed', 0, 'Sampling seed; the same seed gives the same video.')
flags.DEFINE_integer('fps', None, 'Frames per second of the written video (default: config).')


def restore_setup(workdir):
  """(setup, state) from the latest checkpoint of `workdir` and the config saved with it."""
  config_json = checkpointing.saved_config(workdir) if epath.Path(workdir).exists() else None
  if config_json is None:
    raise UserError(f'--workdir={workdir} has no checkpoint under {workdir}/checkpoints; train one '
                    f'first: python -m vidiff.main --config=configs/quickstart.py --workdir={workdir}')
  config = common.from_saved(config_json)
  config.mesh.update(data=-1, fsdp=1, time=1, space=1, tensor=1)
  config.mesh.dcn.update(data=1, fsdp=1, time=1, space=1, tensor=1)
  setup = train.make_setup(config)
  return setup, checkpointing.restore(checkpointing.manager(workdir), train.abstract_state(setup))


def output_paths(output, count: int) -> list[epath.Path]:
  """`out.mp4` for one video; `out_0.mp4`, `out_1.mp4`, ... for several."""
  output = epath.Path(output)
  check(output.suffix.lower() in ('.mp4', '.gif'), f'--output={output}: use a .mp4 or .gif name.')
  if count == 1:
    return [output]
  return [output.parent / f'{output.stem}_{i}{output.suffix}' for i in range(count)]


def main(argv):
  del argv
  paths = output_paths(FLAGS.output or epath.Path(FLAGS.workdir) / 'samples' / 'sample.mp4',
                       len(FLAGS.prompt))
  setup, state = restore_setup(FLAGS.workdir)
  cfg = setup.config
  num_frames = FLAGS.num_frames or cfg.data.num_frames
  models.check_video_shape(cfg.model, num_frames, cfg.data.resolution)
  videos = generate.generate(
      setup, state.ema_params, FLAGS.prompt, num_frames=num_frames,
      steps=FLAGS.steps or cfg.sample.steps,
      guidance=cfg.sample.guidance if FLAGS.guidance is None else FLAGS.guidance,
      eta=FLAGS.eta, seed=FLAGS.seed, batch_size=min(len(FLAGS.prompt), 8))
  for prompt, video, path in zip(FLAGS.prompt, videos, paths):
    video_io.write_video(path, video_io.upscale(video), FLAGS.fps or cfg.sample.fps)
    video_io.write_image(path.parent / f'{path.stem}_grid.png',
                         video_io.grid(video_io.upscale(video[None], 64)))
    metric_writer.say(f'{prompt!r} -> {path}')


if __name__ == '__main__':
  cli.run(main)
