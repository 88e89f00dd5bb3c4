"""The causal video VAE: causality, image/video shapes, chunked and tiled decoding, errors, loss."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vidiff.errors import UserError
from vidiff.models import vae, vae_losses

TINY = dict(channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, latent_channels=4,
            spatial_downsample=4, temporal_downsample=4, groups=4)


@pytest.fixture(scope='module', params=vae.CONVS)
def model_and_params(request):
  # Every time tap random (not the 'center' init, whose past taps start at zero), so the
  # causality tests see a model that does mix frames; with 3D and with (2+1)D residual blocks.
  model = vae.CausalVAE(**TINY, conv_init='default', conv=request.param)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1, 16, 16, 3)))['params']
  return model, params


def _video(key, shape):
  return jax.random.uniform(jax.random.PRNGKey(key), shape, minval=-1., maxval=1.)


def _encode(model, params, x):
  return jax.jit(lambda p, x: model.apply({'params': p}, x, method=vae.CausalVAE.encode))(params, x)


def _decode(model, params, z):
  return jax.jit(lambda p, z: model.apply({'params': p}, z, method=vae.CausalVAE.decode))(params, z)


def test_encoder_is_causal_and_encodes_the_first_frame_alone(model_and_params):
  """Perturbing frame t changes latent frames >= ceil(t / 4) only; latent 0 is frame 0's code."""
  model, params = model_and_params
  base = _video(1, (1, 9, 16, 16, 3))
  noise = _video(2, (9, 16, 16, 3))
  batch = jnp.concatenate([base] + [base.at[:, t].add(noise[t]) for t in range(9)])
  mean, _ = _encode(model, params, batch)
  assert mean.shape == (10, 3, 4, 4, 4)
  for t in range(9):
    block = -(-t // 4)
    np.testing.assert_allclose(mean[1 + t, :block], mean[0, :block], atol=1e-6)
    assert np.abs(mean[1 + t, block] - mean[0, block]).max() > 1e-3
  image_mean, _ = _encode(model, params, base[:, :1])
  np.testing.assert_allclose(image_mean[0, 0], mean[0, 0], atol=1e-5)


def test_decoder_is_causal(model_and_params):
  """Perturbing latent j changes frames >= 4j - 3 (the first of latent j's frames) only."""
  model, params = model_and_params
  z = jax.random.normal(jax.random.PRNGKey(3), (1, 3, 4, 4, 4))
  batch = jnp.concatenate([z] + [z.at[:, j].add(1.) for j in range(3)])
  frames = _decode(model, params, batch)
  assert frames.shape == (4, 9, 16, 16, 3)
  for j in range(3):
    first = max(0, 4 * j - 3)
    np.testing.assert_allclose(frames[1 + j, :first], frames[0, :first], atol=1e-6)
    assert np.abs(frames[1 + j, first] - frames[0, first]).max() > 1e-3


@pytest.mark.parametrize('padding', ['replicate', 'zeros'])
def test_a_still_video_stays_still_with_replicate_padding(padding):
  """Replicate time padding: a still video encodes to equal latent frames and decodes to equal
  frames (every conv sees the same frames at every step). Zero padding makes the first frames
  differ: the case the padding exists to avoid."""
  model = vae.CausalVAE(**TINY, time_padding=padding, conv_init='default')  # past taps non-zero
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1, 16, 16, 3)))['params']
  still = jnp.repeat(_video(3, (1, 1, 16, 16, 3)), 9, axis=1)
  mean, _ = _encode(model, params, still)
  frames = _decode(model, params, jnp.repeat(mean[:, :1], 3, axis=1))
  latent_gap = float(jnp.abs(mean - mean[:, :1]).max())
  frame_gap = float(jnp.abs(frames - frames[:, :1]).max())
  if padding == 'replicate':
    assert latent_gap < 1e-5 and frame_gap < 1e-5, (latent_gap, frame_gap)
  else:
    assert latent_gap > 1e-3 and frame_gap > 1e-3, (latent_gap, frame_gap)


def test_center_init_starts_as_the_per_frame_vae():
  """conv_init='center': only the current frame's tap is non-zero, so a fresh video VAE without
  time compression maps every frame as the per-frame 2D VAE with the same spatial kernels does."""
  cfg = dict(TINY, temporal_downsample=1)
  video_model = vae.CausalVAE(**cfg)  # conv_init='center' by default
  params = jax.jit(video_model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1, 16, 16, 3)))['params']
  image_params = jax.tree.map(lambda k: k[-1:] if k.ndim == 5 else k, params)
  image_model = vae.image_vae(video_model)
  x = _video(4, (2, 5, 16, 16, 3))
  run = lambda m, p: jax.jit(lambda p, x: m.apply({'params': p}, x)[0])(p, x)
  np.testing.assert_allclose(run(video_model, params), run(image_model, image_params), atol=1e-5)


def test_image_round_trip(model_and_params):
  model, params = model_and_params
  recon, mean, logvar = jax.jit(model.apply)({'params': params}, _video(4, (2, 1, 16, 16, 3)),
                                             jax.random.PRNGKey(5))
  assert mean.shape == logvar.shape == (2, 1, 4, 4, 4)
  assert recon.shape == (2, 1, 16, 16, 3) and np.isfinite(recon).all()


@pytest.mark.parametrize('config, frames, latent', [
    (dict(TINY), 9, (2, 3, 4, 4, 4)),
    (dict(TINY, spatial_downsample=8, channel_mult=(1, 2, 2, 2)), 9, (2, 3, 2, 2, 4)),
    (dict(TINY, temporal_downsample=2), 9, (2, 5, 4, 4, 4)),
    (dict(TINY, temporal_downsample=1, temporal_kernel=1), 9, (2, 9, 4, 4, 4)),
    (dict(TINY, latent_channels=16, kl=False), 5, (2, 2, 4, 4, 16)),
])
def test_compression_ratios(config, frames, latent):
  model = vae.CausalVAE(**config)
  x = jax.ShapeDtypeStruct((2, frames, 16, 16, 3), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  recon, mean, logvar = jax.eval_shape(model.apply, variables, x)
  assert mean.shape == latent == model.latent_shape(x.shape)
  assert recon.shape == x.shape
  assert (logvar is None) == (not model.kl)


def test_image_vae_is_the_same_module_with_2d_kernels():
  """The per-frame baseline has the video VAE's parameter tree; kernels have one time tap."""
  video = vae.CausalVAE(**TINY)
  image = vae.image_vae(video)
  x = jax.ShapeDtypeStruct((1, 5, 16, 16, 3), jnp.float32)
  params = lambda m: jax.eval_shape(m.init, jax.random.PRNGKey(0), x)['params']
  video_params, image_params = params(video), params(image)
  assert jax.tree.structure(video_params) == jax.tree.structure(image_params)
  for v, i in zip(jax.tree.leaves(video_params), jax.tree.leaves(image_params)):
    assert i.shape == v.shape if v.ndim != 5 else (i.shape[0] == 1 and i.shape[1:] == v.shape[1:])
  assert jax.eval_shape(image.apply, {'params': image_params}, x)[1].shape == (1, 5, 4, 4, 4)
  count = lambda tree: sum(p.size for p in jax.tree.leaves(tree))
  default = vae.CausalVAE()  # 15.3M parameters; the matched image VAE is 56 channels wide
  matched = count(params(vae.image_vae(default, match_params=True))) / count(params(default))
  assert 0.9 < matched < 1.1, matched


def test_chunked_decode_equals_full_decode(model_and_params):
  model, params = model_and_params
  z = jax.random.normal(jax.random.PRNGKey(6), (1, 6, 4, 4, 4))  # 1 + 5 latents: head 2, 2 chunks
  full = _decode(model, params, z)
  chunked = jax.jit(functools.partial(vae.decode_chunked, model, chunk=2))(params, z)
  assert chunked.shape == full.shape == (1, 21, 16, 16, 3)
  np.testing.assert_allclose(chunked, full, atol=1e-4)


def test_blend_tiles_reassembles_a_pointwise_decode():
  """With a decoder that sees no neighbours, blended tiles give exactly the full output."""
  z = jax.random.normal(jax.random.PRNGKey(7), (1, 2, 10, 7, 3))
  decode = lambda t: jnp.repeat(jnp.repeat(jnp.tanh(t), 2, axis=2), 2, axis=3)
  tiled = vae.blend_tiles(decode, z, tile=4, overlap=2, scale=2, frames=2, channels=3)
  np.testing.assert_allclose(tiled, decode(z), atol=1e-6)
  assert vae.tile_starts(10, 4, 2) == [0, 2, 4, 6] and vae.tile_starts(7, 4, 1) == [0, 3]


def test_tiled_decode_is_close_to_full_decode(model_and_params):
  model, params = model_and_params
  z = jax.random.normal(jax.random.PRNGKey(8), (1, 2, 8, 8, 4))
  full = _decode(model, params, z)
  tiled = jax.jit(functools.partial(vae.decode_tiled, model, tile=6, overlap=2))(params, z)
  assert tiled.shape == full.shape == (1, 5, 32, 32, 3)
  # Tile borders and per-tile GroupNorm statistics differ from the full frame: close, not equal.
  assert np.abs(tiled - full).mean() < 0.5 * np.std(full)
  one_tile = jax.jit(functools.partial(vae.decode_tiled, model, tile=8, overlap=2))(params, z)
  np.testing.assert_allclose(one_tile, full, atol=1e-5)


@pytest.mark.parametrize('config, shape, message', [
    ({}, (1, 6, 16, 16, 3), 'pad it to 9'),
    ({}, (1, 0, 16, 16, 3), 'got 0 frames: give at least 1'),
    ({}, (1, 5, 18, 16, 3), 'crop to 16x16'),
    ({}, (5, 16, 16, 3), 'batch, time, height, width'),
    (dict(spatial_downsample=8), (1, 5, 16, 16, 3), 'give 4 entries'),
    (dict(temporal_kernel=1), (1, 5, 16, 16, 3), 'set temporal_downsample=1'),
])
def test_bad_shapes_raise_clear_errors(config, shape, message):
  model = vae.CausalVAE(**{**TINY, **config})
  with pytest.raises(ValueError, match=message) as error:
    jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct(shape, jnp.float32))
  assert isinstance(error.value, UserError)


def test_bad_latents_raise_clear_error(model_and_params):
  model, params = model_and_params
  with pytest.raises(ValueError, match='latents'):
    model.apply({'params': params}, jnp.zeros((1, 2, 4, 4, 3)), method=vae.CausalVAE.decode)


def test_loss_is_finite_and_adam_reduces_it():
  model = vae.CausalVAE(**{**TINY, 'groups': 1})  # the configs' recipe: one group, center init
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1, 16, 16, 3)))['params']
  coarse = _video(9, (2, 5, 4, 4, 3))  # a smooth clip: learnable in a few steps
  batch = {'video': jnp.repeat(jnp.repeat(coarse, 4, axis=2), 4, axis=3)}
  tx = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state, rng):
    (loss, metrics), grads = jax.value_and_grad(vae_losses.vae_loss, has_aux=True)(
        params, model, batch, rng)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics, grads

  opt_state = tx.init(params)
  losses = []
  for i in range(30):
    params, opt_state, metrics, grads = step(params, opt_state, jax.random.PRNGKey(i))
    if i == 0:
      assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
      assert set(metrics) == {'loss', 'l1', 'ssim', 'kl', 'psnr', 'temporal_l1'}
      assert all(np.isfinite(v) for v in metrics.values())
    losses.append(float(metrics['loss']))
  assert losses[-1] < 0.7 * losses[0], losses


def test_temporal_l1_counts_motion_added_or_left_out():
  moving = _video(4, (2, 5, 8, 8, 3))
  still = jnp.broadcast_to(moving[:, :1], moving.shape)
  assert float(vae_losses.temporal_l1(still, still + 0.3)) == 0.  # a constant offset adds none
  frozen = float(vae_losses.temporal_l1(still, moving))  # leaves all the motion out
  expected = float(jnp.mean(jnp.abs(jnp.diff(moving, axis=1))))
  np.testing.assert_allclose(frozen, expected, rtol=1e-6)
  assert float(vae_losses.temporal_l1(moving[:, :1], still[:, :1])) == 0.  # one frame


def test_temporal_weight_adds_the_term_to_the_loss():
  model = vae.CausalVAE(**{**TINY, 'groups': 1})
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 1, 16, 16, 3)))['params']
  batch = {'video': _video(5, (1, 5, 16, 16, 3))}
  off, metrics = vae_losses.vae_loss(params, model, batch)
  on, _ = vae_losses.vae_loss(params, model, batch, temporal_weight=2.)
  assert float(metrics['temporal_l1']) > 0
  np.testing.assert_allclose(float(on), float(off) + 2 * float(metrics['temporal_l1']), rtol=1e-5)
