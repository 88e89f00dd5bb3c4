"""The persistence metric passes true long clips and fails the ways long videos go wrong."""

import numpy as np
import pytest

from vidiff.data.synthetic import (COLORS, Scene, SceneObject, SyntheticConfig, SyntheticVideos,
                                   render)
from vidiff.metrics import persistence

FRAMES = 64


def _clips(motion: str, count: int = 12, seed: int = 0):
  """`count` ground-truth 64-frame clips of 32x32 and their captions."""
  ds = SyntheticVideos(count, seed, SyntheticConfig(resolution=32, length=FRAMES, motion=motion))
  return [ds.read(i, np.arange(FRAMES))['video'] for i in range(count)], [
      ds.caption(i) for i in range(count)]


def _dimmed(videos, gain: np.ndarray):
  return [np.round(v * gain[:, None, None, None]).astype(np.uint8) for v in videos]


@pytest.fixture(scope='module', params=['constant', 'bounce'])
def clips(request):
  return _clips(request.param)


def test_ground_truth_persists_and_adheres(clips):
  result = persistence.judge_batch(*clips)
  assert result == {'persists': 1., 'vanish': 0., 'teleport': 0., 'fade': 0., 'recolor': 0.,
                    'reshape': 0., 'color': 1., 'direction': 1., 'shape': 1., 'all': 1.}


def test_fading_out_and_back_in_is_a_vanish(clips):
  gain = np.ones(FRAMES)
  gain[16:24], gain[24:32], gain[32:40] = np.linspace(1, 0, 8), 0, np.linspace(0, 1, 8)
  result = persistence.judge_batch(_dimmed(clips[0], gain), clips[1])
  assert result['persists'] == 0. and result['vanish'] == 1.


def test_fade_to_black_scores_zero_everywhere(clips):
  gain = np.zeros(FRAMES)
  gain[:8], gain[8:16] = 1, np.linspace(1, 0, 8)
  result = persistence.judge_batch(_dimmed(clips[0], gain), clips[1])
  assert result['persists'] == 0. and result['fade'] == 1.
  assert result['color'] == result['direction'] == result['shape'] == result['all'] == 0.
  black = persistence.judge(np.zeros((FRAMES, 32, 32, 3), np.uint8), clips[1][0])
  assert black['fade'] == 1. and black['persists'] == black['all'] == 0.


def test_a_jump_between_two_frames_is_a_teleport(clips):
  videos = []
  for v in clips[0]:
    v = v.copy()  # from frame 32 on, 6 px sideways towards the middle of the frame
    columns = np.flatnonzero(v[32].any(axis=(0, 2)))
    if columns.mean() < 16:
      v[32:, :, 6:], v[32:, :, :6] = v[32:, :, :-6].copy(), 0
    else:
      v[32:, :, :-6], v[32:, :, -6:] = v[32:, :, 6:].copy(), 0
    videos.append(v)
  assert persistence.judge_batch(videos, clips[1])['teleport'] == 1.


def test_a_colour_change_at_a_chunk_boundary_is_a_recolor(clips):
  videos = []
  for v, caption in zip(*clips):
    color = caption.split()[1]
    other = COLORS[next(c for c in COLORS if c != color)]
    v = v.copy()
    v[32:][(v[32:] == COLORS[color]).all(-1)] = other
    videos.append(v)
  result = persistence.judge_batch(videos, clips[1])
  assert result['recolor'] == 1. and result['persists'] == 0.


def test_a_shape_change_at_a_chunk_boundary_is_a_reshape():
  obj = SceneObject('red', 'circle', 10, 0.5, (8.5, 15.5), (0.25, 0.), 'right')
  video = render(Scene((obj,), 32, FRAMES, 'constant'), np.arange(FRAMES))['video']
  square = SceneObject('red', 'square', 10, 0.5, (8.5, 15.5), (0.25, 0.), 'right')
  video[32:] = render(Scene((square,), 32, FRAMES, 'constant'), np.arange(32, FRAMES))['video']
  result = persistence.judge(video, 'a red circle moving right')
  assert result['reshape'] == 1. and result['persists'] == 0.


def test_leaving_the_frame_persists_but_a_frozen_object_does_not_move():
  video = np.zeros((FRAMES, 32, 32, 3), np.uint8)
  for t in range(FRAMES):  # an 8-pixel square moving 0.6 px a frame, out at the right edge
    x = int(round(6 + 0.6 * t))
    video[t, 12:20, x:x + 8] = COLORS['blue']
  assert not video[-10:].any()  # it is gone well before the end
  left = persistence.judge(video, 'a blue square moving right')
  assert left['persists'] == 1. and left['direction'] == 1.
  frozen = persistence.judge(np.repeat(video[:1], FRAMES, 0), 'a blue square moving right')
  assert frozen['persists'] == 1. and frozen['direction'] == 0.


def test_a_bounce_away_from_a_wall_fails_direction():
  obj = SceneObject('green', 'circle', 8, 0.5, (10.5, 15.5), (0.5, 0.), 'right')
  video = render(Scene((obj,), 32, 32, 'constant'), np.arange(32))['video']
  turned = np.concatenate([video[:16], video[15::-1]])  # turns back mid-frame at frame 16
  assert persistence.judge(turned, 'a green circle bouncing right')['direction'] == 0.
  assert persistence.judge(video, 'a green circle bouncing right')['direction'] == 1.
