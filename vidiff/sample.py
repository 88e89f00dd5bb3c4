r"""Samples videos from a trained checkpoint:

  python -m vidiff.sample --workdir=DIR --prompt="a red circle moving left" --num_frames=64 \
      --output=out.mp4 [--sampler=ddim --steps=50 --guidance=4 --seed=0 --fps=8]

Restores the EMA parameters of the latest checkpoint in DIR/checkpoints with the config saved
beside them and writes the video (.mp4 or .gif by extension) and a PNG grid of its frames next
to it. Videos longer than the training clips are spliced from chunks of --chunk_frames frames
sharing --overlap frames (--long_mode=splice), or fused from sliding windows, each continuing
clean frames that the windows before it predicted (--long_mode=window; --noanchor: free
windows); --freenoise reschedules the noise. --init_image fixes the first frame. How long
videos are judged: docs/long_videos.md.
A ControlNet workdir (configs/controlnet.py) takes a depth stream: --control=depth.npy (maps
[T, H, W]) or a video of grey depth maps, and --control_scale (0: the base model); --num_frames
defaults to the stream's length.
"""

import numpy as np
from absl import flags
from etils import epath

from vidiff import cli, generate, inference, metric_writer, video_io
from vidiff.data import depth
from vidiff.diffusion import samplers
from vidiff.errors import check
from vidiff.metrics import persistence
from vidiff.models import controlnet

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Training workdir with checkpoints.', required=True)
flags.DEFINE_multi_string('prompt', ['a red circle moving left'], 'Prompt(s); repeat for several.')
flags.DEFINE_integer('num_frames', None, 'Frames per video (default: the training clip length).')
flags.DEFINE_string('output', None, 'Output .mp4 or .gif (default: WORKDIR/samples/sample.mp4).')
flags.DEFINE_enum('sampler', None, list(samplers.SAMPLERS), 'Sampler (default: config.sample.sampler).')
flags.DEFINE_integer('steps', None, 'Sampler steps (default: config.sample.steps).')
flags.DEFINE_float('guidance', None, 'Classifier-free guidance scale (default: config).')
flags.DEFINE_float('eta', None, 'DDIM eta: 0 deterministic, 1 ancestral (default: config).')
flags.DEFINE_integer('seed', 0, 'Sampling seed; the same seed gives the same video.')
flags.DEFINE_integer('fps', None, 'Frames per second of the written video (default: config).')
flags.DEFINE_enum('long_mode', None, list(generate.LONG_MODES),
                  'Videos longer than a chunk: splice chunks, or fuse sliding windows '
                  '(default: config.sample.long_mode).')
flags.DEFINE_integer('chunk_frames', None, 'Frames per forward pass (default: training clip length).')
flags.DEFINE_integer('overlap', None, 'Frames shared by neighbouring chunks/windows '
                     '(default: chunk/4 for splice, at most the context frames the model was '
                     'trained with; chunk/2 for window).')
flags.DEFINE_integer('trim', None, 'Splice: the last frames of each chunk that the next chunk '
                     'samples anew, so it continues frames from inside the chunk before '
                     '(default: config.sample.trim).')
flags.DEFINE_bool('freenoise', False, 'FreeNoise noise rescheduling for long videos.')
flags.DEFINE_bool('anchor', True, 'Sliding windows: each window continues a clean frame that '
                  'the windows before it predicted (models trained with context frames); '
                  '--noanchor fuses free windows, which lose the object.')
flags.DEFINE_float('reconstruction', None, 'Reconstruction guidance weight towards known frames '
                   '(chunk overlaps, --init_image); 0 (default): clean context frames.')
flags.DEFINE_string('init_image', None, 'Image file that becomes the first frame (image-to-video).')
flags.DEFINE_bool('first_frame', None, 'Sample a clip, then the video starting from one of its '
                  'frames (two stages; default: config.sample.first_frame).')
flags.DEFINE_string('control', None, 'ControlNet workdirs: depth maps, a .npy [T, H, W] or a '
                    'video of grey maps (black nearest), one per frame.')
flags.DEFINE_float('control_scale', None, 'Strength of the control (default 1; 0: the base model).')
flags.DEFINE_bool('grid', True, 'Also write OUTPUT_grid.png with every frame.')


def output_paths(output, count: int) -> list[epath.Path]:
  """`out.mp4` for one video; `out_0.mp4`, `out_1.mp4`, ... for several."""
  output = epath.Path(output)
  check(output.suffix.lower() in ('.mp4', '.gif'), f'--output={output}: use a .mp4 or .gif name.')
  if count == 1:
    return [output]
  return [output.parent / f'{output.stem}_{i}{output.suffix}' for i in range(count)]


def control_stream(cfg, path, count: int, num_frames: int | None):
  """The control of `count` videos from the depth stream at `path` (None: no control):
  float32 [count, T, H, W, 1] (its first `num_frames` frames if given)."""
  if path is None:
    return None
  maps = depth.read_stream(path, cfg.data.resolution)
  check(num_frames is None or len(maps) >= num_frames,
        f'--control={path} has {len(maps)} depth maps, fewer than --num_frames={num_frames}; '
        f'give one map per frame.')
  hint = np.asarray(controlnet.depth_hint(maps[:num_frames]))
  return np.repeat(hint[None], count, axis=0)


def main(argv):
  del argv
  paths = output_paths(FLAGS.output or epath.Path(FLAGS.workdir) / 'samples' / 'sample.mp4',
                       len(FLAGS.prompt))
  setup = inference.saved_setup(FLAGS.workdir)
  cfg = setup.config
  init = (video_io.read_image(FLAGS.init_image, cfg.data.resolution) if FLAGS.init_image
          else None)
  control = control_stream(cfg, FLAGS.control, len(FLAGS.prompt), FLAGS.num_frames)
  options = generate.options_from_config(
      cfg, num_frames=FLAGS.num_frames or (control.shape[1] if control is not None else None),
      control_scale=FLAGS.control_scale, sampler=FLAGS.sampler, steps=FLAGS.steps,
      guidance=FLAGS.guidance, eta=FLAGS.eta, seed=FLAGS.seed,
      batch_size=min(len(FLAGS.prompt), 8), long_mode=FLAGS.long_mode,
      chunk_frames=FLAGS.chunk_frames, overlap=FLAGS.overlap, trim=FLAGS.trim,
      freenoise=FLAGS.freenoise, reconstruction=FLAGS.reconstruction,
      first_frame=FLAGS.first_frame, anchor=FLAGS.anchor)
  generate.plan(setup, options, len(FLAGS.prompt), control,
                has_init_image=init is not None)  # the flags, before the parameters
  state = inference.restore_state(FLAGS.workdir, setup)
  videos = generate.generate(setup, state.ema_params, FLAGS.prompt, options, init_image=init,
                             control=control)
  for prompt, video, path in zip(FLAGS.prompt, videos, paths):
    video_io.write_video(path, video_io.upscale(video), FLAGS.fps or cfg.sample.fps)
    if FLAGS.grid:
      video_io.write_image(path.parent / f'{path.stem}_grid.png',
                           video_io.grid(video_io.upscale(video[None], 64)))
    metric_writer.say(f'{prompt!r} -> {path}' + judged(cfg, video, prompt))


def judged(cfg, video, prompt: str) -> str:
  """'' or, for a model of the synthetic data and a prompt in its grammar, what the colour
  tracker sees: whether the object persists (or how it failed) and whole-video adherence."""
  if cfg.data.source != 'synthetic':
    return ''
  try:
    scores = persistence.judge(video, prompt, segment=cfg.data.num_frames)
  except ValueError:  # not the synthetic grammar
    return ''
  failed = [k for k in persistence.FLAGS if scores[k]]
  return ('  object persists' if not failed else f'  object: {", ".join(failed)}') + (
      '; adherence ' + ', '.join(f'{k} {scores[k]:.0f}' for k in ('color', 'direction', 'shape')))


if __name__ == '__main__':
  cli.run(main)
