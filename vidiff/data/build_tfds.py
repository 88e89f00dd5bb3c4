r"""Converts a folder of videos into a TFDS dataset of array_record files (no tensorflow needed):

  python -m vidiff.data.build_tfds --videos=DIR --out=DIR [--name=NAME] \
      [--eval_fraction=0.05 | --eval_videos=N] [--short_side=128 --keyframe_every=16]

Videos are probed and captioned as `VideoFolder` does (captions.jsonl or NAME.txt); unusable
files are skipped and listed. Each example stores the video's original encoded file, not decoded
frames (compact, and decoded later by the same PyAV code, seeking to just the frames a clip
needs), with its caption, file name, frame count, fps, frame size and frame timestamps: see
`tfds_source.features`. OUT then holds dataset_info.json, features.json and
NAME-train.array_record-NNNNN-of-NNNNN (and NAME-eval.* with an eval split, which takes evenly
spaced videos in file-name order). Within a split TFDS orders examples by a hash of their key,
the file name: a fixed shuffle, harmless since every example carries its file name. Train with
--config.data.source=tfds --config.data.tfds.name=OUT.

`--short_side=N` re-encodes each video instead (H.264 CRF 18, shorter side <= N, a keyframe
every `--keyframe_every` frames): a clip then decodes at most that many frames before its first
one, at the size training reads, which makes reads several times faster (`python -m
vidiff.data.bench`).

The dataset is written into a temporary folder beside OUT and renamed to OUT when complete, so
a failed or interrupted run leaves no half-written OUT.
"""

import contextlib
import dataclasses
import io
import os
import re

import numpy as np
import tensorflow_datasets as tfds
from absl import flags
from etils import epath
from tqdm import tqdm

from vidiff import cli
from vidiff.data import decode, reencode, tfds_source, video_folder
from vidiff.errors import check

FLAGS = flags.FLAGS
VERSION = '1.0.0'


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing the module defines none)."""
  flags.DEFINE_string('videos', None, 'Folder of videos (mp4, webm, gif, avi, mov, mkv) with '
                      'captions.jsonl or NAME.txt captions.', required=True)
  flags.DEFINE_string('out', None, 'Output dataset folder (must not exist yet, or be empty).',
                      required=True)
  flags.DEFINE_string('name', None, 'Dataset name (lower_snake_case; default: from --out).')
  flags.DEFINE_float('eval_fraction', 0., 'Fraction of the videos held out as the eval split.')
  flags.DEFINE_integer('eval_videos', None, 'Number of videos held out as the eval split '
                       '(instead of --eval_fraction).')
  flags.DEFINE_integer('short_side', 0, 'If > 0: re-encode each video (H.264, CRF 18) with its '
                       'shorter side at most this many pixels and a keyframe every '
                       '--keyframe_every frames, for fast training reads; 0 stores the files '
                       'as they are.')
  flags.DEFINE_integer('keyframe_every', 16, 'Keyframe interval of re-encoded videos.')


class VideoBytes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Builds `tfds_source.features()` examples from the usable videos of a `VideoFolder`: those
  at `eval_indices` form the 'eval' split (if any), the others 'train'."""

  VERSION = tfds.core.Version(VERSION)
  # No download checksums live beside this code. (TFDS's lookup of them in an installed package
  # imports importlib_resources, which is not a dependency.)
  code_path = None

  def __init__(self, name: str, folder: video_folder.VideoFolder, eval_indices, data_dir,
               progress: tqdm | None = None, short_side: int = 0, keyframe_every: int = 16):
    self.name = name
    self._folder, self._progress = folder, progress
    self._short_side, self._keyframe_every = short_side, keyframe_every
    self.failed = []  # (path, reason) of videos that could not be re-encoded
    self._eval = set(int(i) for i in eval_indices)
    super().__init__(data_dir=data_dir, file_format='array_record')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, features=tfds_source.features(),
        description='Encoded video files with captions, written by vidiff.data.build_tfds.')

  def _split_generators(self, dl_manager) -> dict:
    del dl_manager
    everything = range(len(self._folder))
    splits = {'train': self._generate_examples([i for i in everything if i not in self._eval])}
    if self._eval:
      splits['eval'] = self._generate_examples(sorted(self._eval))
    return splits

  def _generate_examples(self, indices):
    folder = self._folder
    for i in indices:
      file = os.path.relpath(folder.paths[i], folder.root)
      try:
        data, probe = self._encoded(i)
      except decode.VideoError as e:
        self.failed.append((folder.paths[i], str(e)))
      else:
        yield file, tfds_source.example(data, probe, folder.captions[i], file)
      if self._progress is not None:
        self._progress.update(1)

  def _encoded(self, i: int) -> tuple[bytes, decode.Probe]:
    """Video i's file bytes and probe: as stored, or re-encoded (`short_side` > 0)."""
    data = epath.Path(self._folder.paths[i]).read_bytes()
    if not self._short_side:
      return data, self._folder.probes[i]
    data = reencode.reencoded(io.BytesIO(data), self._short_side, self._keyframe_every)
    return data, decode.probe(io.BytesIO(data))


@dataclasses.dataclass
class Built:
  """What `build` wrote: the dataset folder, videos per split, and skipped (path, reason)."""
  out: epath.Path
  splits: dict[str, int]
  skipped: list[tuple[str, str]]

  def summary(self) -> str:
    """One line: what was written and how to train on it."""
    counts = ', '.join(f'{n} {s}' for s, n in self.splits.items())
    skipped = f', skipped {len(self.skipped)} unusable' if self.skipped else ''
    return (f'wrote {sum(self.splits.values())} videos ({counts}){skipped} to {self.out}; train '
            f'on it with --config.data.source=tfds --config.data.tfds.name={self.out}')


def default_name(out) -> str:
  """A TFDS dataset name from the output folder's name: 'My Clips-2' -> 'my_clips_2'."""
  name = re.sub(r'[^a-z0-9]+', '_', epath.Path(out).name.lower()).strip('_')
  return name if re.match(r'[a-z]', name) else f'videos_{name}'.rstrip('_')


def eval_count(num_videos: int, fraction: float = 0., count: int | None = None) -> int:
  """How many of `num_videos` go to the eval split: `count`, else `fraction` of them (at least
  one if the fraction is positive); at least one video stays for training."""
  check(0 <= fraction < 1, f'--eval_fraction={fraction}: use a fraction in [0, 1).')
  check(count is None or fraction == 0, 'pass --eval_fraction or --eval_videos, not both.')
  if count is None:
    count = max(1, round(fraction * num_videos)) if fraction > 0 else 0
  check(0 <= count < num_videos, f'{count} eval videos asked for, but there are {num_videos} '
                                 f'usable videos and training needs at least one; ask for fewer.')
  return count


def eval_indices(num_videos: int, count: int) -> np.ndarray:
  """int [count]: evenly spaced indices in [0, num_videos), so that the eval videos come from
  all over the (name-sorted) folder."""
  if count == 0:
    return np.zeros([0], np.int64)
  return np.round(np.linspace(0, num_videos - 1, count)).astype(np.int64)


def build(videos, out, name: str | None = None, eval_fraction: float = 0.,
          eval_videos: int | None = None, short_side: int = 0, keyframe_every: int = 16) -> Built:
  """Writes the usable videos of folder `videos` as the array_record TFDS dataset folder `out`
  (re-encoded to `short_side` with a keyframe every `keyframe_every` frames if short_side > 0)."""
  out = epath.Path(out)
  check(short_side >= 0 and keyframe_every >= 1, f'--short_side={short_side} must be >= 0 and '
                                                 f'--keyframe_every={keyframe_every} >= 1.')
  check(not out.exists() or (out.is_dir() and not any(out.iterdir())),
        f'--out={out} already exists; delete it or pick another folder.')
  name = name or default_name(out)
  check(re.fullmatch(r'[a-z][a-z0-9_]*', name),
        f'--name={name!r}: use lower_snake_case (letters, digits, _), starting with a letter.')
  check(epath.Path(videos).is_dir(), f'--videos={videos} is not a folder; pass the folder of '
                                     f'videos to convert.')
  check(video_folder.video_paths(videos), f'--videos={videos} holds no video files '
                                          f'({", ".join(video_folder.SUFFIXES)}).')
  folder = video_folder.VideoFolder(videos)
  indices = eval_indices(len(folder), eval_count(len(folder), eval_fraction, eval_videos))
  tmp = out.parent / f'.{out.name}.incomplete{os.getpid()}'
  tfds.disable_progress_bar()  # ours counts videos; TFDS's bars name temporary files
  try:
    with tqdm(total=len(folder), desc=f'writing {name}', unit='video') as bar:
      builder = VideoBytes(name, folder, indices, tmp, bar, short_side, keyframe_every)
      with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints "Downloading and preparing"
        builder.download_and_prepare()
    if out.exists():
      out.rmdir()
    epath.Path(builder.data_dir).rename(out)
  finally:
    tmp.rmtree(missing_ok=True)
  splits = {s: info.num_examples for s, info in builder.info.splits.items()}
  return Built(out, splits, folder.skipped + builder.failed)


def main(argv):
  del argv
  built = build(FLAGS.videos, FLAGS.out, FLAGS.name, FLAGS.eval_fraction, FLAGS.eval_videos,
                FLAGS.short_side, FLAGS.keyframe_every)
  for path, reason in built.skipped:
    print(f'skipped {path}: {reason}')
  print(built.summary())


if __name__ == '__main__':
  define_flags()
  cli.run(main)
