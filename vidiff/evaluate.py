r"""Scores generated videos: FVD, per-frame and temporal FID, warping error, flow consistency.

  python -m vidiff.evaluate --real=DIR --generated=DIR --out=metrics.json
  python -m vidiff.evaluate --workdir=DIR [--num_videos=64 --steps=50 --out=...]

The first form compares two folders of videos (gif, mp4, avi, mov, webm, mkv; one file per
name, so the .gif and .mp4 that `vidiff.sample` writes count once, the lossless gif) or `.npz`
files with a uint8 'videos' array [N, T, H, W, 3] (training writes samples.npz). Clips are cut
to the shortest clip's length (or --num_frames) and resized to the first clip's size. The
second samples one video per held-out clip caption from the latest checkpoint (EMA parameters)
and scores it against those clips; the same numbers are logged during training every
`metrics.every` steps. Prints the metrics and writes them as JSON.
"""

import json

import jax
import numpy as np
from absl import flags
from etils import epath
from tqdm import tqdm

from vidiff import cli, generate, inference, metric_writer, video_io
from vidiff.data import pipeline
from vidiff.errors import check
from vidiff.metrics import i3d, video_metrics

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing the module defines none)."""
  flags.DEFINE_string('real', None, 'Folder (or .npz) of real videos.')
  flags.DEFINE_string('generated', None, 'Folder (or .npz) of generated videos.')
  flags.DEFINE_string('workdir', None, 'Training workdir: sample from it and score against the '
                      'held-out clips (instead of --real/--generated).')
  flags.DEFINE_string('out', None,
                      'Output JSON (default: metrics.json, or WORKDIR/eval/metrics.json).')
  flags.DEFINE_integer('num_frames', None, 'Frames per clip (default: the shortest clip).')
  flags.DEFINE_integer('num_videos', None, 'Videos to sample with --workdir (default: '
                       'config metrics.num_videos).')
  flags.DEFINE_integer('steps', None, 'Sampler steps with --workdir (default: config).')
  flags.DEFINE_float('guidance', None, 'Guidance scale with --workdir (default: config).')
  flags.DEFINE_integer('resolution', i3d.RESOLUTION,
                       'Frame size for I3D (FVD/FIDs); 224 is standard.')
  flags.DEFINE_enum('flow', 'dis', ['dis', 'farneback'], 'OpenCV optical flow for warping error.')


def video_files(folder: epath.Path) -> list[epath.Path]:
  """The video files in `folder`, sorted, one per name (by `video_io.VIDEO_SUFFIXES` order)."""
  rank = {s: i for i, s in enumerate(video_io.VIDEO_SUFFIXES)}
  best = {}
  for p in folder.iterdir():
    suffix = p.suffix.lower()
    if suffix in rank and (p.stem not in best or rank[suffix] < rank[best[p.stem].suffix.lower()]):
      best[p.stem] = p
  return [best[stem] for stem in sorted(best)]


def read_videos(path, num_frames: int | None = None) -> np.ndarray:
  """A folder of video files, or an .npz with 'videos', as uint8 [N, T, H, W, 3]: cut to the
  shortest length (or num_frames) and resized to the first video's size."""
  path = epath.Path(path)
  check(path.exists(), f'{path} does not exist; pass a folder of videos or an .npz file.')
  if path.suffix == '.npz':
    with path.open('rb') as f:
      data = np.load(f)
      check('videos' in data, f'{path} has no "videos" array (it has {list(data.keys())}).')
      videos = list(data['videos'])
  else:
    files = video_files(path)
    check(bool(files), f'{path} holds no video files ({", ".join(video_io.VIDEO_SUFFIXES)}).')
    videos = [video_io.read_video(p) for p in tqdm(files, desc=f'read {path.name}', leave=False)]
  length = min(len(v) for v in videos)
  frames = num_frames or length
  check(frames <= length, f'num_frames={frames} but the shortest video in {path} has {length}.')
  h, w = videos[0].shape[1:3]
  return np.stack([video_io.resize_video(np.asarray(v[:frames], np.uint8), h, w)
                   for v in videos])


def sample_and_score(setup, params, real: np.ndarray, captions, i3d_params, options,
                     resolution: int = i3d.RESOLUTION, flow_method: str = 'dis',
                     progress: bool = True):
  """Samples one video per caption and scores them against `real` uint8 [N, T, H, W, 3] (or its
  `video_metrics.set_stats`). Returns (scores dict, generated uint8 [N, T, H, W, 3])."""
  generated = generate.generate(setup, params, list(captions), options, progress=progress)
  scores = video_metrics.score(real, generated, i3d_params, resolution, flow_method)
  return scores, generated


def main(argv):
  del argv
  if FLAGS.workdir:
    check(not (FLAGS.real or FLAGS.generated), 'pass either --workdir or --real/--generated.')
    setup, state = inference.restore_setup(FLAGS.workdir)
    cfg = setup.config
    real, captions = pipeline.held_out_clips(cfg.data, FLAGS.num_videos or cfg.metrics.num_videos)
    options = generate.options_from_config(cfg, steps=FLAGS.steps, guidance=FLAGS.guidance)
    scores, generated = sample_and_score(setup, state.ema_params, real, captions,
                                         i3d.load_params(), options, FLAGS.resolution, FLAGS.flow)
    scores['step'] = int(state.step)
    out = epath.Path(FLAGS.out or epath.Path(FLAGS.workdir) / 'eval' / 'metrics.json')
    if jax.process_index() == 0:
      video_io.write_image(out.parent / 'generated_grid.png',
                           video_io.grid(video_io.upscale(generated[:16], 64)))
  else:
    check(bool(FLAGS.real and FLAGS.generated),
          'pass --real=DIR and --generated=DIR (or --workdir=DIR to sample from a checkpoint).')
    real = read_videos(FLAGS.real, FLAGS.num_frames)
    generated = read_videos(FLAGS.generated, FLAGS.num_frames)
    scores = video_metrics.score(real, generated, None, FLAGS.resolution, FLAGS.flow)
    scores.update(real_videos=len(real), generated_videos=len(generated))
    out = epath.Path(FLAGS.out or 'metrics.json')
  if jax.process_index() == 0:
    video_io.write_bytes(out, (json.dumps(scores, indent=1) + '\n').encode())
  metric_writer.say(video_metrics.summary(scores) + f'\n-> {out}')


if __name__ == '__main__':
  define_flags()
  cli.run(main)
