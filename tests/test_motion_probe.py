"""The motion probe on known cases: a blob that moves a known number of pixels, a predictor that
ignores the prompt and one that follows it."""

import numpy as np
import pytest
from scipy import ndimage

from vidiff import motion_probe
from vidiff.data import synthetic
from vidiff.diffusion import schedules
from vidiff.metrics import adherence


def moving_square(direction, travel: float, frames=5, size=24) -> np.ndarray:
  """A 4x4 white square on black, from the centre `travel` px along `direction` over the
  clip, float [frames, size, size, 3] in [-1, 1] (whole-pixel steps)."""
  video = -np.ones((frames, size, size, 3), np.float32)
  for k in range(frames):
    dx, dy = (np.asarray(direction) * travel * k / (frames - 1)).round().astype(int)
    y, x = size // 2 - 2 + dy, size // 2 - 2 + dx
    video[k, y:y + 4, x:x + 4] = 1.
  return video


def test_captions_reverse_and_name_their_direction():
  assert motion_probe.reversed_caption('a red circle moving left') == 'a red circle moving right'
  assert (motion_probe.reversed_caption('a blue square bouncing up and a red circle moving right')
          == 'a blue square bouncing down and a red circle moving left')
  np.testing.assert_array_equal(motion_probe.direction_of('a cyan triangle moving up'), [0, -1])
  with pytest.raises(ValueError, match='does not parse'):
    motion_probe.reversed_caption('a cat walking left')


def test_drift_is_the_displacement_along_the_direction():
  videos = np.stack([moving_square((1, 0), 8), moving_square((0, -1), 4),
                     moving_square((1, 0), 8)])
  directions = np.array([[1, 0], [0, -1], [-1, 0]], np.float32)
  np.testing.assert_allclose(motion_probe.drift(videos, directions), [8, 4, -8], atol=1e-3)


def test_probe_tells_a_prompt_follower_from_a_copier():
  captions = ['a red square moving left', 'a red square moving down', 'a red square moving up']
  clips = np.stack([moving_square(motion_probe.direction_of(c), 6) for c in captions])
  schedule = schedules.Schedule('cosine')

  def copier(x_t, t, prompts):  # the clean clips, whatever the prompt says
    del x_t, t, prompts
    return clips

  def follower(x_t, t, prompts):  # moves the way each prompt says
    del x_t, t
    return np.stack([moving_square(motion_probe.direction_of(p), 6) for p in prompts])

  levels = [0.5, 1.0]
  for row in motion_probe.probe(copier, clips, captions, levels, schedule):
    assert row['true'] == pytest.approx(6, abs=1e-3) and row['altered'] == row['true']
    assert row['true_gt_altered'] == 0.
  rows = motion_probe.probe(follower, clips, captions, levels, schedule)
  assert [r['t'] for r in rows] == levels and rows[1]['alpha'] < 1e-3 < rows[0]['alpha']
  for row in rows:
    assert row['true'] == pytest.approx(6, abs=1e-3)
    assert row['altered'] == pytest.approx(-6, abs=1e-3) and row['true_gt_altered'] == 1.
  table = motion_probe.table(rows, 6.)
  assert '| clips | | 6.00 | | |' in table and '| 1 | 0.000 | 6.00 | -6.00 | 1.00 |' in table


def test_context_frames_are_given_clean_at_level_zero_and_kept():
  captions = ['a red square moving right'] * 2
  clips = np.stack([moving_square((1, 0), 6)] * 2)
  seen = []

  def still(x_t, t, prompts):  # predicts every frame as the square at the centre (frame 0)
    del prompts
    seen.append((np.asarray(x_t), np.asarray(t)))
    return np.broadcast_to(clips[:, :1], clips.shape)

  rows = motion_probe.probe(still, clips, captions, [0.9], schedules.Schedule('cosine'),
                            context=2)
  x_t, t = seen[0]
  np.testing.assert_array_equal(t[:, :2], 0.)
  np.testing.assert_allclose(t[:, 2:], 0.9)
  np.testing.assert_array_equal(x_t[:, :2], clips[:, :2])
  assert not np.allclose(x_t[:, 2:], clips[:, 2:])
  assert rows[0]['true'] == pytest.approx(0, abs=1e-3)  # frame 0 kept = still at the centre


def sprite_clip(caption: str, frames=3, size=32) -> np.ndarray:
  """The caption's first object as a 12 px sprite of its colour at the centre, still, float
  [frames, size, size, 3] in [-1, 1]."""
  obj = adherence.parse_caption(caption)[0]
  video = -np.ones((frames, size, size, 3), np.float32)
  mask = synthetic.shape_mask(obj['shape'], 12)
  colour = np.asarray(synthetic.COLORS[obj['color']], np.float32) / 127.5 - 1.
  video[:, 10:22, 10:22][:, mask] = colour
  return video


def test_shape_probe_tells_a_shape_follower_from_a_blurrer():
  captions = ['a red circle moving left', 'a blue square moving up', 'a green triangle moving down']
  assert [motion_probe.swapped_shape_caption(c).split()[2] for c in captions] == [
      'square', 'triangle', 'circle']
  clips = np.stack([sprite_clip(c) for c in captions])
  np.testing.assert_array_equal(motion_probe.shape_judged_right(clips, captions), 1.)
  schedule = schedules.Schedule('cosine')

  def follower(x_t, t, prompts):  # draws the shape each prompt names
    del x_t, t
    return np.stack([sprite_clip(p) for p in prompts])

  def blurrer(x_t, t, prompts):  # the true clips, blurred to blobs whatever the prompt
    del x_t, t, prompts
    return ndimage.uniform_filter(clips, size=(1, 1, 9, 9, 1), mode='nearest')

  for row in motion_probe.probe(follower, clips, captions, [0.5], schedule, word='shape'):
    assert (row['true'], row['altered'], row['true_gt_altered']) == (1., 0., 1.)
  row, = motion_probe.probe(blurrer, clips, captions, [0.5], schedule, word='shape')
  assert row['true'] == row['altered'] < 1. and row['true_gt_altered'] == 0.
  assert 'shape judged right, swapped caption' in motion_probe.table([row], 1., 'shape')
