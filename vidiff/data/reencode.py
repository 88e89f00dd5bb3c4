"""Re-encoding a video for fast training reads: frames no bigger than training needs and a
keyframe every few frames, so a clip decodes few, small frames (`decode.read_frames` starts at
the keyframe before the clip's first frame)."""

import fractions
import io

import av

from vidiff.data import decode

# x264 settings for decoding speed: fixed keyframe intervals (no scene-cut keyframes), no CABAC
# or deblocking ('fastdecode'), B-frames nothing refers to (so `decode` skips unwanted ones).
# A 16-frame clip at stride 4 then decodes 2.3x faster than with x264's defaults, for 5% bigger
# files (measured on the bench's 128x170 videos).
OPTIONS = {'sc_threshold': '0', 'tune': 'fastdecode', 'b-pyramid': 'none'}
VERSION = 2  # bump when OPTIONS change (caches of re-encoded videos key on it)


def target_size(size: tuple[int, int], short_side: int) -> tuple[int, int]:
  """(H, W) with the shorter side `short_side` (never upscaled), both even (yuv420p)."""
  scale = min(1., short_side / min(size))
  return tuple(max(2, 2 * round(n * scale / 2)) for n in size)


def reencoded(file, short_side: int, keyframe_every: int = 16, crf: int = 18) -> bytes:
  """The H.264 mp4 (yuv420p, constant quality `crf`, `OPTIONS`) of video `file` (path or binary file
  object) with frames resized to `target_size` and a keyframe every `keyframe_every` frames, at
  the source's average frame rate, every frame kept; raises decode.VideoError."""
  info = decode.probe(file)
  height, width = target_size(info.size, short_side)
  rate = fractions.Fraction(info.fps or 30).limit_denominator(1001)
  out = io.BytesIO()
  try:
    if hasattr(file, 'seek'):
      file.seek(0)
    with av.open(file) as source, av.open(out, 'w', format='mp4') as sink:
      stream = sink.add_stream('libx264', rate=rate)
      stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
      stream.gop_size = keyframe_every
      stream.options = OPTIONS | {'crf': str(crf), 'keyint_min': str(keyframe_every)}
      for index, frame in enumerate(source.decode(source.streams.video[0])):
        small = frame.reformat(width=width, height=height, format='yuv420p', interpolation='AREA')
        small.pts, small.time_base = index, 1 / rate  # constant rate, every frame kept
        sink.mux(stream.encode(small))
      sink.mux(stream.encode())
  except (av.FFmpegError, OSError, ValueError) as e:
    raise decode.VideoError(f'cannot re-encode: {e}') from None
  return out.getvalue()
