"""PyAV video decoding that reads only the frames a clip needs.

`probe` demuxes a file once (packets only, no decoding) to list each frame's presentation
timestamp; `read_frames` seeks to the keyframe before the first wanted frame and decodes up to
the last one, so an 8-frame clip from a long video costs about one GOP plus its span, not the
file. Both take a path or a binary file object (e.g. `io.BytesIO` of an mp4 stored in TFDS).
"""

import dataclasses

import av
import numpy as np


class VideoError(Exception):
  """A file that cannot be decoded (corrupt, truncated, empty, no video stream)."""


@dataclasses.dataclass(frozen=True)
class Probe:
  """What `read_frames` needs to know about a video: `pts` int64 [N] (the frames' presentation
  timestamps in display order, or None where the container has none: then frames are counted),
  `fps`, and the frame `size` (height, width)."""
  pts: np.ndarray | None
  num_frames: int
  fps: float
  size: tuple[int, int]


def probe(file) -> Probe:
  """Demuxes `file` (path or binary file object) and returns its `Probe`; raises VideoError."""
  try:
    with av.open(file) as container:
      if not container.streams.video:
        raise VideoError('no video stream')
      stream = container.streams.video[0]
      pts = [p.pts for p in container.demux(stream) if p.size]
      size = (stream.codec_context.height, stream.codec_context.width)
      rate = stream.average_rate or stream.guessed_rate
  except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
    raise VideoError(_short(e)) from None
  if not pts:
    raise VideoError('no frames')
  if min(size) <= 0:
    raise VideoError(f'bad frame size {size}')
  known = None if any(p is None for p in pts) else np.sort(np.asarray(pts, np.int64))
  fps = float(rate) if rate else _fps_from_pts(known, stream.time_base)
  return Probe(known, len(pts), fps, size)


def read_frames(file, info: Probe, indices, size: tuple[int, int] | None = None) -> np.ndarray:
  """Decodes frames `indices` (int [K], each in [0, info.num_frames)) of `file` as uint8
  [K, H, W, 3], resized by swscale to `size` = (H, W) if given; raises VideoError."""
  indices = np.asarray(indices, np.int64)
  if indices.min() < 0 or indices.max() >= info.num_frames:
    raise ValueError(f'frame indices {indices.min()}..{indices.max()} outside [0, {info.num_frames}).')
  try:
    return _decode(file, info, indices, size)
  except (av.FFmpegError, OSError, ValueError) as e:
    raise VideoError(_short(e)) from None


def _decode(file, info: Probe, indices: np.ndarray, size, seek: bool = True) -> np.ndarray:
  keys = (indices if info.pts is None else info.pts[indices]).tolist()
  slots = {}
  for slot, key in enumerate(keys):
    slots.setdefault(key, []).append(slot)
  out, last = [None] * len(keys), max(keys)
  seeks = seek and info.pts is not None and min(keys) > info.pts[0]
  if hasattr(file, 'seek'):
    file.seek(0)
  with av.open(file) as container:
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1  # Grain reads clips in parallel; threads per clip cost
    if seeks:
      container.seek(min(keys), stream=stream, backward=True, any_frame=False)
    frames = _frames(container, stream, None if info.pts is None else set(slots))
    for count, frame in enumerate(frames):
      key = count if info.pts is None else frame.pts
      for slot in slots.pop(key, ()):
        out[slot] = _rgb(frame, size)
      if not slots or key is None or key >= last:
        break
  if slots and seeks:  # the seek landed past a wanted frame: decode from the start instead
    return _decode(file, info, indices, size, seek=False)
  if slots:
    raise VideoError(f'{len(slots)} of the frames asked for could not be decoded (truncated file?)')
  return np.stack(out)


def _frames(container, stream, wanted: set | None):
  """The decoded frames from the current position, in display order. With `wanted` (pts), a
  frame no other frame refers to (most B-frames) is decoded only if it is wanted."""
  codec = stream.codec_context
  for packet in container.demux(stream):
    if wanted is not None:
      codec.skip_frame = 'DEFAULT' if packet.pts in wanted else 'NONREF'
    yield from codec.decode(packet)


def _rgb(frame, size) -> np.ndarray:
  if size is None:
    return frame.to_ndarray(format='rgb24')
  height, width = size
  return frame.reformat(width=width, height=height, format='rgb24',
                        interpolation='AREA').to_ndarray()


def _fps_from_pts(pts, time_base) -> float:
  if pts is None or len(pts) < 2 or not time_base:
    return 0.
  return float((len(pts) - 1) / ((pts[-1] - pts[0]) * time_base))


def _short(error: Exception) -> str:
  """FFmpeg's reason without errno and file name ('Invalid data found when processing input')."""
  text = getattr(error, 'strerror', None) or str(error).split('\n')[0]
  return text[:200] or type(error).__name__
