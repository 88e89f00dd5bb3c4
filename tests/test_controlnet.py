"""ControlNet: a zero-initialised branch changes nothing, only it trains, control_scale=0 is the
base model; the moving-camera depth scenes and the precomputed-depth loader."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import quickstart
from vidiff import models, optimizer
from vidiff.data import camera_scene, depth
from vidiff.errors import UserError
from vidiff.models import controlnet, text

BACKBONES = ['unet3d', 'st_transformer']
SHAPE = (2, 4, 8, 8, 3)


def _perturbed(params, scale=0.05, seed=3):
  """Every leaf moved off its init, so zero-initialised gates and outputs are active (numpy
  noise: a jitted jax.random per leaf costs a minute of compilation on a busy 2-core CPU)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda v: v + jnp.asarray(scale * rng.normal(size=v.shape), v.dtype), params)


def _hint(seed):
  return controlnet.depth_hint(jax.random.uniform(jax.random.PRNGKey(seed), SHAPE[:4]))


class Setup:
  """A tiny controlled model with a 'trained' base (perturbed params) and a fresh ControlNet
  initialised from it, plus a jitted forward pass."""

  def __init__(self, backbone: str):
    self.config = quickstart.get_config(f'{backbone},tiny').model
    self.model = controlnet.get_controlled_model(self.config, stem_channels=(8,))
    self.x = jax.random.normal(jax.random.PRNGKey(0), SHAPE)
    self.t = jnp.array([0.3, 0.7])
    prompts = ['a red circle moving left', 'a blue square moving up']
    self.tokens = jnp.asarray(text.tokenize(prompts, 16, 4096))
    key = jax.random.key(1, impl='rbg')  # compiles in half the time of threefry
    boxed = jax.jit(self.model.init)(key, self.x, self.t, self.tokens, _hint(5))['params']
    params = flax.core.unfreeze(nn.meta.unbox(boxed))
    base = _perturbed(params['base'])
    control = controlnet.init_control_from_base(base, params['control'])
    self.params = {'base': base, 'control': control}
    self.forward = jax.jit(lambda p, hint, scale: self.model.apply(
        {'params': p}, self.x, self.t, self.tokens, hint, control_scale=scale))
    self.base_forward = jax.jit(lambda p: models.get_model(self.config).apply(
        {'params': p}, self.x, self.t, self.tokens))


@pytest.fixture(scope='module', params=BACKBONES)
def setup(request):
  return Setup(request.param)


def test_fresh_controlnet_predicts_exactly_the_base_output(setup):
  base = np.asarray(setup.base_forward(setup.params['base']))
  assert np.abs(base).max() > 0
  for hint in (_hint(6), jnp.zeros(SHAPE[:4] + (1,)), 10. * _hint(7)):
    np.testing.assert_array_equal(setup.forward(setup.params, hint, 1.0), base)


def test_base_parameter_tree_is_the_plain_denoisers(setup):
  """The 'base' subtree is exactly a plain Denoiser's: its checkpoint loads unchanged (and the
  first test shows the outputs are equal too)."""
  plain = jax.eval_shape(models.get_model(setup.config).init, jax.random.PRNGKey(1), setup.x,
                         setup.t, setup.tokens)
  shapes = lambda tree: jax.tree.map(lambda v: v.shape, nn.meta.unbox(tree))
  assert shapes(plain['params']) == shapes(setup.params['base'])


def test_control_branch_starts_as_a_copy_of_the_base_encoder(setup):
  base, control = setup.params['base']['backbone'], setup.params['control']
  first = 'conv_in' if setup.config.name == 'unet3d' else 'patch_embed'
  jax.tree.map(np.testing.assert_array_equal, control[first], base[first])
  assert {'stem', 'zero_0'} <= set(control) and 'stem' not in base
  assert not np.any(control['zero_0']['kernel'])
  assert not np.any(control['stem']['conv_out']['kernel'])


def _train(setup, steps: int):
  """`steps` AdamW steps of a loss that depends on every parameter, training only 'control'."""
  train_config = ml_collections.ConfigDict(dict(
      num_steps=100, warmup_steps=0, learning_rate=1e-2, weight_decay=0.0, grad_clip=1.0))
  tx, _ = optimizer.make(train_config, trainable=controlnet.trainable)
  target = jax.random.normal(jax.random.PRNGKey(9), SHAPE)
  hint = _hint(8)
  loss = lambda p: jnp.mean((setup.model.apply({'params': p}, setup.x, setup.t, setup.tokens,
                                               hint) - target) ** 2)

  @jax.jit
  def step(params, opt_state):
    updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params, opt_state = setup.params, tx.init(setup.params)
  for _ in range(steps):
    params, opt_state = step(params, opt_state)
  return params, opt_state


def test_only_the_control_branch_trains(setup):
  params, opt_state = _train(setup, steps=2)
  jax.tree.map(np.testing.assert_array_equal, params['base'], setup.params['base'])
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), params['control'],
                         setup.params['control'])
  assert all(jax.tree.leaves(changed['zero_0'])), changed['zero_0']
  assert np.mean(jax.tree.leaves(changed)) > 0.9, changed
  # No optimizer state for the frozen base: Adam's two moments cover the branch only.
  size = lambda tree: sum(np.size(v) for v in jax.tree.leaves(tree))
  assert size(opt_state) < 2 * size(params['control']) + 16

  hint, base = _hint(6), setup.base_forward(setup.params['base'])
  assert np.abs(np.asarray(setup.forward(params, hint, 1.0)) - np.asarray(base)).max() > 1e-6
  np.testing.assert_array_equal(setup.forward(params, hint, 0.0), base)


def test_frozen_train_state_shards_on_a_mesh():
  """The frozen base has no optimizer state (optax MaskedNode leaves): shardings skip them."""
  from vidiff import sharding, train_state  # pylint: disable=g-import-not-at-top
  names = (None, 'mlp')
  boxed = {'base': {'w': nn.Partitioned(jnp.zeros((4, 8)), names)},
           'control': {'w': nn.Partitioned(jnp.zeros((4, 8)), names)}}
  tx, _ = optimizer.make(ml_collections.ConfigDict(dict(
      learning_rate=1e-3, warmup_steps=1, num_steps=10, grad_clip=1.0, weight_decay=0.0)),
      trainable=controlnet.trainable)
  create = lambda: train_state.TrainState.create(boxed, tx, jax.random.PRNGKey(0))
  mesh = jax.make_mesh((8,), ('tensor',), axis_types=(jax.sharding.AxisType.Auto,))
  shardings = sharding.tree_shardings(jax.eval_shape(create), mesh, (('mlp', 'tensor'),))
  state = jax.jit(lambda: nn.meta.unbox(create()), out_shardings=shardings)()
  assert state.params['control']['w'].sharding.spec == jax.sharding.PartitionSpec(None, 'tensor')
  assert isinstance(state.opt_state.inner_states['frozen'].inner_state, tuple)


def test_init_control_from_another_config_is_a_clear_error(setup):
  wider = {'base': jax.tree.map(lambda v: jnp.zeros(v.shape[:-1] + (v.shape[-1] + 1,)),
                                setup.params['base'])}
  with pytest.raises(UserError, match='model config'):
    controlnet.init_control_from_base(wider['base'], setup.params['control'])


def test_hint_stem_folds_a_finer_control_stream():
  stem = controlnet.HintStem((4,))
  control = jnp.ones((1, 4, 16, 16, 1))
  params = stem.init(jax.random.PRNGKey(0), control, (1, 2, 8, 8, 6))
  assert stem.apply(params, control, (1, 2, 8, 8, 6)).shape == (1, 2, 8, 8, 6)
  with pytest.raises(UserError, match='one frame per video frame'):
    controlnet.fold_factors((1, 4, 12, 12, 1), (1, 4, 8, 8, 6))


def test_trainable_selects_the_control_subtree():
  assert controlnet.trainable(('control', 'zero_0', 'kernel'))
  assert controlnet.trainable(('params', 'control', 'stem', 'conv_0', 'bias'))
  assert not controlnet.trainable(('base', 'backbone', 'conv_in', 'spatial', 'kernel'))


# The moving-camera scenes.

def test_camera_videos_shapes_dtypes_and_caption():
  source = camera_scene.CameraVideos(4, seed=0, config=camera_scene.CameraConfig(
      resolution=24, length=10))
  out = source.read(1, np.arange(0, 10, 3))
  assert out['video'].shape == (4, 24, 24, 3) and out['video'].dtype == np.uint8
  assert out['depth'].shape == (4, 24, 24) and out['depth'].dtype == np.float32
  assert 0 <= out['depth'].min() and out['depth'].max() == 1.0  # the sky
  assert out['caption'].startswith('a camera moving forward past ')
  assert out['caption'].endswith(' boxes')
  resized = source.read(1, [0, 1], size=(12, 16))
  assert resized['video'].shape == (2, 12, 16, 3) and resized['depth'].shape == (2, 12, 16)


def test_camera_videos_are_deterministic_by_seed():
  config = camera_scene.CameraConfig(resolution=16, length=8)
  read = lambda seed, index: camera_scene.CameraVideos(3, seed, config).read(index, np.arange(8))
  a, b, c = read(0, 2), read(0, 2), read(1, 2)
  np.testing.assert_array_equal(a['video'], b['video'])
  np.testing.assert_array_equal(a['depth'], b['depth'])
  assert not np.array_equal(a['depth'], c['depth'])
  assert not np.array_equal(a['depth'], read(0, 1)['depth'])


@pytest.mark.parametrize('index', range(4))
def test_the_box_ahead_comes_nearer_every_frame(index):
  config = camera_scene.CameraConfig(resolution=48, length=12)
  scene = camera_scene.CameraVideos(4, seed=0, config=config).scene(index)
  frames = np.arange(config.length)
  t, label, _ = camera_scene.trace(scene, frames, 48, 48)
  last = len(scene.boxes)  # the label of the box that stays ahead of the camera
  nearest = [t[i][label[i] == last].min() for i in frames if np.any(label[i] == last)]
  assert len(nearest) >= config.length // 2, nearest
  assert np.all(np.diff(nearest) < 0), nearest
  rendered = camera_scene.render(scene, frames)['depth'].reshape(len(frames), -1)
  np.testing.assert_allclose(rendered[label == last], t[label == last] / camera_scene.FAR,
                             rtol=1e-6)
  assert np.all(rendered[label < 0] == 1.0)


# Precomputed depth for real videos.

def test_load_depth_reads_the_file_next_to_the_video(tmp_path):
  maps = np.random.default_rng(0).uniform(0.5, 4.0, (6, 10, 12)).astype(np.float64)
  np.save(tmp_path / 'clip.depth.npy', maps)
  loaded = depth.load_depth(tmp_path / 'clip.mp4', num_frames=6)
  assert loaded.shape == (6, 10, 12) and loaded.dtype == np.float32
  np.testing.assert_allclose(loaded, maps, rtol=1e-6)
  unit = depth.unit_depth(loaded, inverse=True)
  assert unit.min() == 0 and unit.max() == 1 and unit.flat[np.argmax(maps)] == 0


@pytest.mark.parametrize('content, num_frames, message', [
    (None, None, 'no depth file'),
    (np.zeros((6, 10)), None, r'not \[T, H, W\]'),
    (np.zeros((6, 10, 12, 1)), None, r'not \[T, H, W\]'),
    (np.zeros((5, 10, 12)), 6, 'has 5 frames but the video has 6'),
    (np.full((2, 3, 3), np.nan), None, 'NaN'),
])
def test_bad_depth_files_are_clear_user_errors(tmp_path, content, num_frames, message):
  if content is not None:
    np.save(tmp_path / 'clip.depth.npy', content)
  with pytest.raises(depth.DepthFileError, match=message) as error:
    depth.load_depth(tmp_path / 'clip.mp4', num_frames=num_frames)
  assert isinstance(error.value, UserError) and 'numpy.save' in str(error.value)
