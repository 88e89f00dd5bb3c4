"""A folder of video files (mp4, webm, gif, avi, mov, mkv) as a random-access clip source.

Captions come from `captions.jsonl` in the folder (lines `{"file": "a.mp4", "caption": "..."}`)
or from a text file with the video's name (`a.txt` beside `a.mp4`); a video without either has
the empty caption (it trains unconditionally). Files are probed once when the source is built
(packets only); unreadable, empty or too-short ones are left out, with a warning that names them,
and are listed in `skipped`.
"""

import concurrent.futures
import contextlib
import json
import logging
import os

from etils import epath

from vidiff import video_io
from vidiff.data import decode
from vidiff.data import depth as depth_files
from vidiff.errors import UserError, check

SUFFIXES = video_io.VIDEO_SUFFIXES
CAPTIONS = 'captions.jsonl'


def video_paths(root) -> list[epath.Path]:
  """The video files directly in or below `root`, sorted (the source's index order)."""
  root = epath.Path(root)
  check(root.is_dir(), f'video folder {root} does not exist or is not a directory; set '
                       f'data.folder.path to a folder of {"/".join(SUFFIXES)} files.')
  return sorted(_files(root))


def _files(folder: epath.Path):
  for p in folder.iterdir():
    if p.is_dir():
      yield from _files(p)
    elif p.suffix.lower() in SUFFIXES:
      yield p


def captions(root, paths) -> list[str]:
  """Each video's caption: captions.jsonl (keyed by path relative to `root`), else NAME.txt."""
  root = epath.Path(root)
  table = {}
  if (root / CAPTIONS).exists():
    for n, line in enumerate((root / CAPTIONS).read_text().splitlines(), 1):
      if line.strip():
        try:
          row = json.loads(line)
          table[os.path.normpath(row['file'])] = str(row['caption'])
        except (ValueError, KeyError, TypeError):
          raise UserError(f'{root / CAPTIONS} line {n} is not {{"file": ..., "caption": ...}}: '
                          f'{line[:80]!r}; fix or delete that line.') from None
  out = []
  for p in paths:
    key, txt = os.path.normpath(os.path.relpath(p, root)), p.with_suffix('.txt')
    out.append(table[key] if key in table else txt.read_text().strip() if txt.exists() else '')
  return out


class VideoFolder:
  """Random-access source over the usable videos of a folder (picklable for Grain workers).

  `min_frames`: videos with fewer frames are skipped (a clip needs its whole span).
  `depth`: `read` also returns each frame's depth map from the video's `NAME.depth.npy` (see
  `depth.py`; a missing or malformed file is a DepthFileError).
  """

  def __init__(self, root, min_frames: int = 1, num_threads: int = 8, depth: bool = False):
    self.root, self.depth = str(root), depth
    paths = video_paths(root)
    check(paths, f'no video files ({", ".join(SUFFIXES)}) in {root}; set data.folder.path '
                 f'to a folder that holds some.')
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
      probes = list(pool.map(_probe_or_reason, paths))
    self.skipped = [(str(p), r) for p, r in zip(paths, probes) if isinstance(r, str)]
    self.skipped += [(str(p), f'{r.num_frames} frames < {min_frames} needed')
                     for p, r in zip(paths, probes)
                     if not isinstance(r, str) and r.num_frames < min_frames]
    keep = [i for i, r in enumerate(probes) if not isinstance(r, str) and r.num_frames >= min_frames]
    if self.skipped:
      logging.warning('%s: skipped %d of %d videos: %s', root, len(self.skipped), len(paths),
                      '; '.join(f'{os.path.basename(p)} ({r})' for p, r in self.skipped[:10]))
    check(keep, f'no usable video in {root}: all {len(paths)} were skipped ('
                f'{"; ".join(f"{os.path.basename(p)}: {r}" for p, r in self.skipped[:5])}); '
                f'add readable videos of at least {min_frames} frames or lower the clip span '
                f'(data.num_frames, data.frame_stride).')
    self.paths = [str(paths[i]) for i in keep]
    self.probes = [probes[i] for i in keep]
    self.captions = captions(root, [paths[i] for i in keep])

  def __len__(self) -> int:
    return len(self.paths)

  def __repr__(self) -> str:
    return f'VideoFolder({self.root!r}: {len(self)} videos, {len(self.skipped)} skipped)'

  def num_frames(self, index: int) -> int:
    return self.probes[index].num_frames

  def fps(self, index: int) -> float:
    return self.probes[index].fps

  def frame_size(self, index: int) -> tuple[int, int]:
    """(height, width) of the video's frames."""
    return self.probes[index].size

  def caption(self, index: int) -> str:
    return self.captions[index]

  def read(self, index: int, frame_indices, size: tuple[int, int] | None = None) -> dict:
    """{'video': uint8 [N, H, W, 3] (resized to `size` if given), 'caption': str[, 'depth':
    float32 [N, H, W]]}; raises decode.VideoError if the file cannot be decoded."""
    with _opened(self.paths[index]) as file:
      frames = decode.read_frames(file, self.probes[index], frame_indices, size)
    out = {'video': frames, 'caption': self.captions[index]}
    if self.depth:
      out['depth'] = depth_files.depth_frames(self.paths[index], self.num_frames(index), frame_indices,
                                        frames.shape[1:3])
    return out


def _probe_or_reason(path) -> decode.Probe | str:
  if path.stat().length == 0:
    return 'empty file'
  try:
    with _opened(str(path)) as file:
      return decode.probe(file)
  except decode.VideoError as e:
    return str(e)


def _opened(path: str):
  """A local path as itself (PyAV reads it directly); gs:// etc. as an open binary file."""
  return contextlib.nullcontext(path) if '://' not in path else epath.Path(path).open('rb')
