"""Per-example transforms: pick a frame-interleaved clip from a source video and tokenize its caption."""

import dataclasses

import numpy as np

from vidiff.errors import UserError
from vidiff.models import text


def clip_span(num_frames: int, frame_stride: int) -> int:
  """Source frames covered by a clip of `num_frames` taken every `frame_stride`-th frame."""
  return (num_frames - 1) * frame_stride + 1


def clip_indices(num_frames: int, frame_stride: int, start: int) -> np.ndarray:
  """int [num_frames] source-frame indices start, start + stride, ..."""
  return start + frame_stride * np.arange(num_frames)


@dataclasses.dataclass(frozen=True)
class ClipSampler:
  """Grain random map: source index -> {'video': uint8 [T,H,W,3], 'tokens': int32 [L]}.

  Takes `num_frames` frames every `frame_stride`-th frame ("frame interleaving") starting at
  a random frame (`random_start`) or at the first frame.
  """
  source: object
  num_frames: int
  frame_stride: int
  max_prompt_tokens: int
  vocab_size: int
  random_start: bool = True

  def __call__(self, index: int, rng: np.random.Generator) -> dict:
    length = self.source.num_frames(index)
    span = clip_span(self.num_frames, self.frame_stride)
    if length < span:
      raise UserError(f'video {index} has {length} frames but a clip of data.num_frames='
                      f'{self.num_frames} at data.frame_stride={self.frame_stride} needs {span}; '
                      f'lower one of them.')
    start = int(rng.integers(0, length - span + 1)) if self.random_start else 0
    example = self.source.read(index, clip_indices(self.num_frames, self.frame_stride, start))
    tokens = text.tokenize([example['caption']], self.max_prompt_tokens, self.vocab_size)[0]
    return {'video': example['video'], 'tokens': tokens}
