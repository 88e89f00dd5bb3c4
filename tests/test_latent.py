"""Latent video diffusion (config.task='latent'): a denoiser trained on a frozen VAE's latents,
sampled in latent space and decoded, long videos included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_module
from configs import latent_quickstart, vae_quickstart
from vidiff import generate, train, video_io
from vidiff.errors import UserError
from vidiff.models import latent


def _config(steps: int, arg: str = 'unet3d,tiny'):
  config = latent_quickstart.get_config(arg)
  config.train.num_steps = steps
  return config


def test_latent_model_holds_vae_scale_and_denoiser_and_decodes_in_chunks():
  config = _config(1)
  model = train.tasks.get(config).model(config)
  c = config.vae_model.latent_channels
  z = jnp.zeros((1, 2, 4, 4, c))
  params = model.init(jax.random.PRNGKey(0), z, jnp.zeros((1,)), jnp.zeros((1, 16), jnp.int32))
  params = params['params']
  assert set(params) == {'vae', 'scale', 'denoiser'}
  video = jax.random.uniform(jax.random.PRNGKey(1), (2, 9, 16, 16, 3), minval=-1, maxval=1)
  params['scale'] = jnp.float32(0.5)
  codes = model.apply({'params': params}, video, method=latent.LatentDenoiser.encode)
  assert codes.shape == (2, 3, 4, 4, c)
  unscaled = model.vae.apply({'params': params['vae']}, video, method='encode')[0]
  np.testing.assert_allclose(codes, 0.5 * unscaled, rtol=1e-6)
  whole = model.apply({'params': params}, codes, method=latent.LatentDenoiser.decode)
  chunked = latent.decode_chunked(model, params, codes, 1)
  assert whole.shape == (2, 9, 16, 16, 3)
  np.testing.assert_allclose(chunked, whole, atol=1e-4)
  out = model.apply({'params': params}, codes, jnp.zeros((2,)), jnp.zeros((2, 16), jnp.int32))
  assert out.shape == codes.shape  # the denoiser predicts latent channels


def test_clip_shapes_the_vae_cannot_take_are_clear_errors():
  config = _config(1)
  config.data.num_frames = 8
  with pytest.raises(UserError, match=r'1 \+ 4k frames.*data.num_frames=9'):
    train.check_config(config)
  config = _config(1)
  config.data.resolution = 18
  with pytest.raises(UserError, match='divisible by the VAE spatial factor'):
    train.check_config(config)
  config = _config(1)
  del config['latent']
  with pytest.raises(UserError, match='configs/latent_quickstart.py'):
    train.make_setup(config)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """A tiny VAE (4 steps), then latent diffusion on it (4 steps) on a 2x2x2 mesh."""
  vae_dir, latent_dir = tmp_path_factory.mktemp('vae'), tmp_path_factory.mktemp('latent')
  vae_config = vae_quickstart.get_config('tiny')
  vae_config.vae.num_reconstructions = 0
  vae_state = train.train_and_evaluate(vae_config, str(vae_dir))
  config = _config(4)
  config.latent.vae_workdir = str(vae_dir)
  config.mesh.update(data=2, fsdp=2, space=2)
  state = train.train_and_evaluate(config, str(latent_dir))
  return vae_dir, vae_state, latent_dir, state


@pytest.mark.slow
def test_latent_run_keeps_the_vae_and_trains_the_denoiser(runs):
  _, vae_state, latent_dir, state = runs
  same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                      vae_state.ema_params, state.params['vae'])
  assert all(jax.tree.leaves(same))
  scale = float(state.params['scale'])
  assert scale > 0 and scale != 1.0 and float(state.ema_params['scale']) == scale
  videos = np.load(latent_dir / 'samples' / 'step_4' / 'samples.npz')['videos']
  assert videos.shape == (2, 5, 16, 16, 3)  # decoded from 2 latent frames


@pytest.mark.slow
def test_long_latent_videos_are_spliced_and_decoded(runs, tmp_path):
  vae_dir, _, latent_dir, _ = runs
  args = ['--steps=2', '--num_frames=13', '--overlap=1', f'--output={tmp_path / "long.mp4"}']
  done = run_module('vidiff.sample', f'--workdir={latent_dir}', *args, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert len(video_io.read_video(tmp_path / 'long.mp4')) == 13  # 4 latent frames, 2 chunks
  done = run_module('vidiff.sample', f'--workdir={vae_dir}', *args, timeout=300)
  assert done.returncode != 0 and 'holds a vae checkpoint' in done.stderr


@pytest.mark.slow
def test_sample_shape_is_the_latent_shape(runs):
  _, _, latent_dir, _ = runs
  from vidiff import inference  # pylint: disable=g-import-not-at-top
  setup = inference.saved_setup(str(latent_dir))
  assert generate.sample_shape(setup, 13) == (4, 4, 4, setup.config.vae_model.latent_channels)
  with pytest.raises(UserError, match='1 \\+ 4k frames'):
    generate.sample_shape(setup, 12)
