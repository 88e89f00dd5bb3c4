"""Tests for optical flow (OpenCV and JAX), warping error and flow consistency."""

import functools
import os

import cv2
import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from conftest import REAL_VIDEOS
from vidiff.data.synthetic import Scene, SceneObject, render
from vidiff.errors import UserError
from vidiff.metrics import flow as F
from vidiff.metrics import flow_check, jax_flow

SHUFFLE = np.array([5, 0, 7, 2, 6, 1, 4, 3])  # no two frames adjacent in time stay adjacent


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
  """Smooth random RGB texture, uint8 [height, width, 3] spanning the full range."""
  noise = np.random.default_rng(seed).random((height, width, 3))
  smooth = ndimage.gaussian_filter(noise, sigma=(2, 2, 0))
  smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
  return np.round(smooth * 255).astype(np.uint8)


def _translating(offsets, size: int = 48) -> np.ndarray:
  """uint8 [T, size, size, 3]: a window on one texture, at per-frame (x, y) `offsets` >= 0."""
  texture = _texture(size + 24, size + 24)
  return np.stack([texture[y:y + size, x:x + size] for x, y in offsets])


def _square(jumps=None, frames: int = 8) -> np.ndarray:
  """uint8 [T, 48, 48, 3]: a red square moving right at 2 px/frame, shifted by `jumps` [T, 2]."""
  square = SceneObject('red', 'square', 10, 0.5, (12.5, 20.5), (2.0, 0.0), 'right')
  video = render(Scene((square,), 48, frames, 'constant'), np.arange(frames))['video']
  if jumps is None:
    return video
  return np.stack([np.roll(v, tuple(j[::-1]), axis=(0, 1)) for v, j in zip(video, jumps)])


@functools.cache
def _real(name: str, factor: int, frames: int = 16) -> np.ndarray:
  """uint8 [frames, H / factor, W / factor, 3]: the start of a clip in REAL_VIDEOS."""
  video = iio.imread(os.path.join(REAL_VIDEOS, name))[:frames, ..., :3]
  size = (video.shape[2] // factor, video.shape[1] // factor)
  return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in video])


def test_warp_shifts_by_whole_pixels_and_bilinear():
  frame = _texture(20, 24).astype(np.float32)
  shift = np.zeros((20, 24, 2), np.float32)
  shift[..., 0], shift[..., 1] = 2.0, -1.0
  np.testing.assert_allclose(F.warp(frame, shift)[1:, :-2], frame[:-1, 2:])
  half = np.zeros((2, 20, 24, 2), np.float32)
  half[..., 0] = 0.5
  out = F.warp(np.stack([frame, frame]), half)
  np.testing.assert_allclose(out[1, :, :-1], 0.5 * (frame[:, :-1] + frame[:, 1:]), rtol=1e-6)


def test_occlusion_mask_forward_backward_check():
  forward = np.zeros((16, 20, 2), np.float32)
  forward[..., 0] = 2.0
  occluded = F.occlusion_mask(forward, -forward)
  assert not occluded[:, :-2].any() and occluded[:, -2:].all()  # the last columns leave the frame
  assert F.occlusion_mask(forward, forward)[:, :-2].all()


@pytest.mark.parametrize('method', F.METHODS)
def test_warping_error_near_zero_for_translation_and_large_when_shuffled(method):
  video = _translating([(2 * t, t) for t in range(8)])
  inner = F.flow(video, method)[:, 4:-4, 4:-4]  # the window moves right and down on the texture
  assert F.epe(inner, np.broadcast_to(np.float32([-2, -1]), inner.shape)) < 0.2
  error, shuffled = F.warping_error(video, method), F.warping_error(video[SHUFFLE], method)
  assert error < 2e-4 and shuffled > 10 * error, (error, shuffled)


def test_warping_error_under_the_originals_motion_sees_a_frozen_reconstruction():
  video = _translating([(2 * t, t) for t in range(8)])
  frozen = np.repeat(video[:1], len(video), axis=0)  # a "reconstruction" that drops the motion
  assert F.warping_error(video, motion=video) == F.warping_error(video)
  assert F.warping_error(frozen) < 1e-6  # by its own (zero) flow a still video is coherent
  assert F.warping_error(frozen, motion=video) > 10 * F.warping_error(video, motion=video)
  with pytest.raises(UserError, match='original'):
    F.warping_error(video[:4], motion=video)


@pytest.mark.filterwarnings('ignore:os.fork')  # imageio's ffmpeg subprocess for the mp4
@pytest.mark.parametrize('method', F.METHODS)
@pytest.mark.parametrize('name,factor', [('realshort.mp4', 4), ('newtonscradle.gif', 2)])
def test_warping_error_ranks_real_clips_below_shuffled(name, factor, method):
  video = _real(name, factor)
  shuffled = video[np.random.default_rng(0).permutation(len(video))]
  batch = np.stack([video, video])
  assert F.warping_error(batch, method) == pytest.approx(F.warping_error(video, method))
  assert 1.3 * F.warping_error(video, method) < F.warping_error(shuffled, method)


def test_flow_consistency_ranks_constant_velocity_above_jitter():
  jumps = np.random.default_rng(0).integers(-3, 4, size=(8, 2))
  steady, jittery = _square(), _square(jumps)
  assert F.flow_consistency(steady) < 0.3 < 1.0 < F.flow_consistency(jittery)
  stats = F.flow_consistency_stats(np.stack([steady, steady]))
  assert stats['acceleration'] == pytest.approx(F.flow_consistency(steady))
  assert stats['consistent_fraction'] > 0.9 and stats['fb_error'] < 0.3
  texture_jumps = np.abs(jumps) + np.arange(8)[:, None] * [2, 1]
  assert (F.flow_consistency(_translating([(2 * t, t) for t in range(8)])) <
          0.2 * F.flow_consistency(_translating(texture_jumps)))


def _synthetic(videos: int = 6, resolution: int = 32, frames: int = 6):
  return flow_check.render_batch(videos, resolution, frames, max_objects=2)


@pytest.mark.parametrize('method', F.METHODS)
def test_opencv_flow_beats_zero_flow_on_objects(method):
  videos, true = _synthetic()
  objects = videos[:, :-1].any(-1)
  pred = np.stack([F.flow(v, method) for v in videos])
  assert F.epe(pred, true, objects) < 0.3 * F.epe(np.zeros_like(true), true, objects)
  backward = np.stack([F.flow(v, method, backward=True) for v in videos])
  assert backward.shape == true.shape and backward.dtype == np.float32


def test_jax_flow_beats_zero_flow_and_is_jittable():
  videos, true = _synthetic()
  objects = videos[:, :-1].any(-1)
  pred = np.asarray(jax.jit(jax_flow.flow)(videos.astype(np.float32) / 127.5 - 1))
  assert pred.shape == true.shape and pred.dtype == np.float32
  assert F.epe(pred, true, objects) < 0.3 * F.epe(np.zeros_like(true), true, objects)


def test_jax_flow_gradient_is_finite_and_nonzero():
  video = jnp.asarray(_translating([(t, 0) for t in range(3)], size=16), jnp.float32) / 127.5 - 1
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jax_flow.temporal_coherence_loss(v[None]))))(video)
  assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0


def test_temporal_coherence_loss_zero_when_static_positive_when_jittery():
  to_float = lambda v: jnp.asarray(v, jnp.float32) / 127.5 - 1
  static = np.stack([_translating([(0, 0)] * 5, size=32)] * 2)
  steady = _translating([(2 * t, 0) for t in range(5)], size=32)
  jittery = _translating([(0, 0), (3, 0), (3, 3), (0, 3), (3, 0)], size=32)
  loss = jax.jit(jax_flow.temporal_coherence_loss, static_argnames='along_motion')
  zero = loss(to_float(static))
  assert zero.shape == (2,) and float(jnp.max(zero)) < 1e-6
  values = loss(to_float(np.stack([steady, jittery])))
  assert float(values[1]) > 0.5 and float(values[0]) < 0.1 * float(values[1]), values
  along = loss(to_float(np.stack([steady, jittery])), along_motion=True)
  assert float(along[0]) < 0.1 * float(along[1]), along


def test_flow_check_prints_a_table(capsys):
  flow_check.main(['--videos=2', '--resolution=16', '--frames=3'])
  out = capsys.readouterr().out
  for row in ('| dis |', '| farneback |', '| jax |', '| zero |'):
    assert row in out


def test_bad_inputs_are_user_errors():
  video = _square(frames=3)
  with pytest.raises(UserError, match='at least 2 frames'):
    F.flow(video[:1])
  with pytest.raises(UserError, match='at least 3 frames'):
    F.flow_consistency(video[:2])
  with pytest.raises(UserError, match='uint8.*to_uint8'):
    F.warping_error(video.astype(np.float32) / 127.5 - 1)
  with pytest.raises(UserError, match='16x16'):
    F.flow(video[:, :8, :8])
  with pytest.raises(UserError, match=r'\[T, H, W, 3\]'):
    F.warping_error(video[0])
  with pytest.raises(UserError, match='method'):
    F.flow(video, 'raft')
  with pytest.raises(UserError, match='same leading shape'):
    F.warp(video[1:], np.zeros(video.shape[:-1] + (2,)))
  with pytest.raises(UserError, match='forward and backward'):
    F.occlusion_mask(np.zeros((4, 4, 2)), np.zeros((4, 5, 2)))
  with pytest.raises(UserError, match='epe'):
    F.epe(np.zeros((4, 4, 2)), np.zeros((4, 4, 3)))
  with pytest.raises(UserError, match='T >= 2'):
    jax_flow.flow(jnp.zeros((1, 1, 16, 16, 3)))
  with pytest.raises(UserError, match='T >= 3'):
    jax_flow.temporal_coherence_loss(jnp.zeros((1, 2, 16, 16, 3)))
  with pytest.raises(UserError, match='one shape'):
    jax_flow.pair_flow(jnp.zeros((16, 16, 3)), jnp.zeros((16, 8, 3)))
  with pytest.raises(UserError, match='127.5'):
    jax_flow.flow(jnp.zeros((2, 16, 16, 3), jnp.uint8))
