"""A TFDS dataset written by `python -m vidiff.data.build_tfds` as a random-access clip source.

Each example holds one video's original encoded file (mp4, webm, gif, ... bytes) with its
caption, file name, frame count, fps, frame size and frame timestamps. `read` decodes the frames
it is asked for from those bytes with the same PyAV code as `VideoFolder` (seeking to the
keyframe before the first one; the stored timestamps spare a demux pass), so both sources give
identical frames. Records come from `builder.as_data_source` (array_record random access;
tensorflow is not needed).
"""

import io
import re
import threading

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from vidiff.data import decode
from vidiff.errors import UserError, check

FIELDS = ('video', 'caption', 'file', 'num_frames', 'fps', 'height', 'width', 'pts')


def features() -> tfds.features.FeaturesDict:
  """The example format. The file is a scalar object Tensor (tfds.features.Video needs
  tensorflow and stores decoded frames); text features read back as utf-8 bytes."""
  scalar = lambda dtype: tfds.features.Tensor(shape=(), dtype=dtype)
  return tfds.features.FeaturesDict({
      'video': scalar(np.object_),  # the encoded file
      'caption': tfds.features.Text(),
      'file': tfds.features.Text(),  # path relative to the video folder
      'num_frames': scalar(np.int64),
      # Raw bytes: a plain float feature goes through a float32 proto field and loses digits.
      'fps': tfds.features.Tensor(shape=(), dtype=np.float64,
                                  encoding=tfds.features.Encoding.BYTES),
      'height': scalar(np.int64),
      'width': scalar(np.int64),
      # int64 [num_frames] presentation timestamps in display order; [0] if the container has none.
      'pts': tfds.features.Tensor(shape=(None,), dtype=np.int64),
  })


def example(data: bytes, probe: decode.Probe, caption: str, file: str) -> dict:
  """The `features()` example of one encoded video `data` and its `probe`."""
  pts = np.zeros([0], np.int64) if probe.pts is None else np.asarray(probe.pts, np.int64)
  return {'video': data, 'caption': caption, 'file': file, 'num_frames': probe.num_frames,
          'fps': probe.fps, 'height': probe.size[0], 'width': probe.size[1], 'pts': pts}


def probe_of(record: dict) -> decode.Probe:
  """The `decode.Probe` stored in a record (no demuxing)."""
  pts = np.asarray(record['pts'], np.int64)
  return decode.Probe(pts if len(pts) else None, int(record['num_frames']), float(record['fps']),
                      (int(record['height']), int(record['width'])))


def builder_dir(path) -> epath.Path:
  """The folder holding the dataset_info.json of a dataset folder: `path` itself or its
  version subfolder (the newest if several)."""
  path = epath.Path(path)
  if (path / 'dataset_info.json').exists():
    return path
  found = [p.parent for p in path.glob('*/dataset_info.json')] if path.is_dir() else []
  check(found, f'TFDS dataset {path} not found: no dataset_info.json in it or in a version '
               f'folder below it. Set data.tfds.name to the --out folder of `python -m '
               f'vidiff.data.build_tfds --videos=DIR --out=DIR`.')
  return max(found, key=_version_key)


def _version_key(path: epath.Path) -> tuple:
  return tuple(int(n) for n in re.findall(r'\d+', path.name))


def open_builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The builder of a dataset folder `name` (when `data_dir` is None and `name` is a path) or
  of the dataset `name` in `data_dir` (`tfds.builder`); a missing one is a UserError."""
  if data_dir is None and ('/' in name or epath.Path(name).exists()):
    return tfds.builder_from_directory(builder_dir(name))
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f'TFDS dataset {name!r} not found in data_dir {data_dir or "(default)"}; set '
                    f'data.tfds.name to the --out folder of `python -m vidiff.data.build_tfds` '
                    f'(and data.tfds.data_dir to None), or data.tfds.data_dir to the folder '
                    f'holding {name}/VERSION.') from None
  check(builder.info.splits, f'TFDS dataset {name!r} is not prepared in {builder.data_dir}; build '
                             f'it there first (for videos: `python -m vidiff.data.build_tfds`).')
  return builder


class TfdsVideos:
  """Random-access source over split `split` of a build_tfds dataset (picklable for Grain
  workers). `split` may be a slice such as 'train[:95%]'."""

  def __init__(self, name: str, split: str = 'train', data_dir: str | None = None):
    builder = open_builder(name, data_dir)
    missing = [f for f in FIELDS if f not in builder.info.features.keys()]
    check(not missing, f'TFDS dataset {name!r} lacks the fields {", ".join(missing)}: it was '
                       f'not written by `python -m vidiff.data.build_tfds`; convert the videos '
                       f'with it.')
    try:
      self._length = builder.info.splits[split].num_examples
    except (KeyError, ValueError):
      hint = (' rebuild it with `python -m vidiff.data.build_tfds --eval_fraction=0.05` for '
              'one, or hold out a slice of train (data.tfds.split=train[:95%], '
              'data.tfds.eval_split=train[95%:]).' if split.startswith('eval') else '')
      raise UserError(f'TFDS dataset {name!r} has no split {split!r} (it has '
                      f'{", ".join(builder.info.splits)});{hint}') from None
    self.name, self.split, self.dir = name, split, str(builder.data_dir)
    self._records = builder.as_data_source(split)
    self._local = threading.local()  # per thread: (index, record) of the last record read

  def __getstate__(self) -> dict:
    return dict(self.__dict__, _records=None, _local=None)

  def __setstate__(self, state: dict) -> None:
    self.__dict__.update(state)
    self._local = threading.local()

  def __len__(self) -> int:
    return self._length

  def __repr__(self) -> str:
    return f'TfdsVideos({self.name!r}, {self.split!r}: {len(self)} videos in {self.dir})'

  def record(self, index: int) -> dict:
    """The stored example at `index` (text fields as bytes); the one read last by this thread is
    kept, so num_frames(i) then read(i, ...) fetches it once."""
    last = getattr(self._local, 'last', None)
    if last is None or last[0] != index:
      if self._records is None:  # unpickled in a worker: reopen
        self._records = tfds.builder_from_directory(self.dir).as_data_source(self.split)
      last = self._local.last = (index, self._records[index])
    return last[1]

  def num_frames(self, index: int) -> int:
    return int(self.record(index)['num_frames'])

  def fps(self, index: int) -> float:
    return float(self.record(index)['fps'])

  def frame_size(self, index: int) -> tuple[int, int]:
    """(height, width) of the video's frames."""
    record = self.record(index)
    return int(record['height']), int(record['width'])

  def caption(self, index: int) -> str:
    return self.record(index)['caption'].decode()

  def file_name(self, index: int) -> str:
    """The video's path relative to the folder it was converted from."""
    return self.record(index)['file'].decode()

  def read(self, index: int, frame_indices, size: tuple[int, int] | None = None) -> dict:
    """{'video': uint8 [N, H, W, 3] (resized to `size` if given), 'caption': str}; raises
    decode.VideoError if the stored file cannot be decoded."""
    record = self.record(index)
    frames = decode.read_frames(io.BytesIO(record['video']), probe_of(record), frame_indices, size)
    return {'video': frames, 'caption': self.caption(index)}
