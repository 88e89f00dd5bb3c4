"""Per-example transforms: cut a frame-interleaved clip from a source video, resize and crop it,
maybe flip it, and tokenize its caption."""

import dataclasses
import logging
import re

import numpy as np

from vidiff.data import decode, synthetic
from vidiff.errors import UserError
from vidiff.models import text

MAX_SKIPS = 32  # consecutive unusable videos before a clip gives up (the dataset is broken)


def clip_span(num_frames: int, frame_stride: int) -> int:
  """Source frames covered by a clip of `num_frames` taken every `frame_stride`-th frame."""
  return (num_frames - 1) * frame_stride + 1


def clip_indices(num_frames: int, frame_stride: int, start: int) -> np.ndarray:
  """int [num_frames] source-frame indices start, start + stride, ..."""
  return start + frame_stride * np.arange(num_frames)


def cover_size(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
  """The smallest (H, W) with `size`'s aspect ratio that covers `target` (resize, then crop)."""
  scale = max(target[0] / size[0], target[1] / size[1])
  return max(target[0], round(size[0] * scale)), max(target[1], round(size[1] * scale))


def mirrored_caption(caption: str) -> str:
  """The caption of the horizontally flipped video: 'left' and 'right' swap."""
  return re.sub(r'\b(left|right)\b', lambda m: 'right' if m.group(1) == 'left' else 'left',
                caption)


class TooShort(Exception):
  """A video shorter than the clip it is asked for."""


@dataclasses.dataclass(frozen=True)
class ClipSampler:
  """Grain random map: source index -> {'video': uint8 [T,H,W,3], 'tokens': int32 [L],
  'fps': float32 (the clip's effective frame rate), 'skipped': int32}.

  Frames: `num_frames` every `frame_stride`-th frame ("frame interleaving"); with
  `max_frame_stride` > frame_stride a random stride in that range (capped by the video's length);
  with `target_fps` > 0 the stride nearest to that rate for each video. The clip starts at a
  random frame (`random_start`) or the first. Pixels: `size` = (H, W) resizes so the frames
  cover it and crops (random or centre), None keeps the source's frames. `flip`: mirror half of
  the clips, swapping 'left' and 'right' in their captions. `depth`: examples also hold the
  clip's per-frame depth, float32 [T,H,W] (cropped and flipped with the frames).
  `still_captions`: tokenize the caption without its motion phrases (`synthetic.still_caption`;
  for the image batches of synthetic data).

  A video that cannot be decoded or is too short is replaced by the next one in the source (a
  warning; 'skipped' counts them), so one bad file never stops a job.
  """
  source: object
  num_frames: int
  frame_stride: int
  max_prompt_tokens: int
  vocab_size: int
  random_start: bool = True
  size: tuple[int, int] | None = None
  max_frame_stride: int = 0
  target_fps: float = 0.
  random_crop: bool = False
  flip: bool = False
  depth: bool = False
  still_captions: bool = False

  def __call__(self, index: int, rng: np.random.Generator) -> dict:
    example = self.usable_clip(index, rng)
    caption = example.pop('caption')
    if self.still_captions:
      caption = synthetic.still_caption(caption)
    tokens = text.tokenize([caption], self.max_prompt_tokens, self.vocab_size)[0]
    return {**example, 'tokens': tokens}

  def usable_clip(self, index: int, rng: np.random.Generator) -> dict:
    """{'video', 'caption', 'fps', 'skipped'} of video `index`, or of the next usable one."""
    errors = []
    for skipped in range(min(MAX_SKIPS, len(self.source))):
      candidate = (index + skipped) % len(self.source)
      try:
        return {**self.clip(candidate, rng), 'skipped': np.int32(skipped)}
      except (decode.VideoError, TooShort) as e:
        logging.warning('data: skipping video %d (%s)', candidate, e)
        errors.append(str(e))
    raise UserError(f'{len(errors)} videos in a row could not give a clip (last: {errors[-1]}); '
                    f'check the dataset, or lower data.num_frames / data.frame_stride.')

  def clip(self, index: int, rng: np.random.Generator) -> dict:
    """{'video', 'caption', 'fps'} of video `index`; raises decode.VideoError or TooShort."""
    length, fps = self.source.num_frames(index), self._fps(index)
    stride = self.stride(length, fps, rng)
    span = clip_span(self.num_frames, stride)
    if length < span:
      raise TooShort(f'{length} frames, a clip of data.num_frames={self.num_frames} at stride '
                     f'{stride} needs {span}')
    start = int(rng.integers(0, length - span + 1)) if self.random_start else 0
    frames = clip_indices(self.num_frames, stride, start)
    return {**self._framed(index, frames, rng), 'fps': np.float32(fps / stride)}

  def stride(self, length: int, fps: float, rng: np.random.Generator) -> int:
    """The frame stride for a video of `length` frames at `fps`."""
    if self.target_fps > 0:
      return max(1, round(fps / self.target_fps))
    if self.max_frame_stride > self.frame_stride:
      longest = max(self.frame_stride, (length - 1) // max(1, self.num_frames - 1))
      return int(rng.integers(self.frame_stride, min(self.max_frame_stride, longest) + 1))
    return self.frame_stride

  def _fps(self, index: int) -> float:
    return float(self.source.fps(index)) if hasattr(self.source, 'fps') else 0.

  def _framed(self, index: int, frames: np.ndarray, rng: np.random.Generator) -> dict:
    """Reads `frames` resized to cover `size`, crops to `size`, maybe flips."""
    native = tuple(self.source.frame_size(index))
    resized = native if self.size is None else cover_size(native, self.size)
    example = self.source.read(index, frames, size=None if resized == native else resized)
    check_depth(example, self.depth, self.source)
    pixels = {k: example[k] for k in ('video', 'depth') if k == 'video' or self.depth}
    (h, w) = self.size or native
    y, x = ((int(rng.integers(0, n - k + 1)) for n, k in zip(resized, (h, w)))
            if self.random_crop else ((n - k) // 2 for n, k in zip(resized, (h, w))))
    pixels, caption = {k: v[:, y:y + h, x:x + w] for k, v in pixels.items()}, example['caption']
    if self.flip and rng.random() < 0.5:
      pixels, caption = {k: v[:, :, ::-1] for k, v in pixels.items()}, mirrored_caption(caption)
    return {**{k: np.ascontiguousarray(v) for k, v in pixels.items()}, 'caption': caption}


def check_depth(example: dict, wanted: bool, source) -> None:
  """Raises a UserError when depth is wanted (data.depth) and the source gave none."""
  if wanted and 'depth' not in example:
    raise UserError(f'data.depth=True but {source!r} gives no depth maps; use '
                    f"data.source='synthetic' or 'camera', or put NAME.depth.npy beside each "
                    f'video of the folder (see vidiff/data/depth.py).')
