"""Latent video diffusion as a training task (`config.task = 'latent'`).

  python -m vidiff.main --config=configs/vae_quickstart.py --workdir=VAE
  python -m vidiff.main --config=configs/latent_quickstart.py --config.latent.vae_workdir=VAE \
      --workdir=DIR

The model is `latent.LatentDenoiser`: the VAE of `config.vae_model` (the VAE checkpoint's model
config) and the denoiser of `config.model`, predicting `latent_channels` channels. Clips are
encoded on the fly (the posterior mean, behind `stop_gradient`) and the diffusion loss is the
usual one on the latents; only params['denoiser'] train. A fresh run restores the VAE's EMA
weights from `latent.vae_workdir` and sets params['scale'] to 1 / std of the latents of
held-out clips (`init_params`). Sampling (`generate`) draws latents and decodes them chunk by
chunk, so every command that samples (vidiff.sample, vidiff.evaluate, the end of training,
long videos) works on latents unchanged.
"""

import jax
import jax.numpy as jnp
import numpy as np

from vidiff import metric_writer, models, optimizer, steps, vae_task
from vidiff.data import pipeline
from vidiff.errors import check
from vidiff.models import latent


def vae_model(config):
  """The frozen VAE of `config.vae_model`."""
  check('vae_model' in config and 'latent' in config,
        'task=latent needs config.vae_model (the VAE checkpoint\'s model config) and '
        'config.latent; start from configs/latent_quickstart.py.')
  return vae_task.get_model(config.vae_model)


def get_model(config) -> latent.LatentDenoiser:
  channels = config.vae_model.latent_channels
  return latent.LatentDenoiser(vae_model(config), models.get_model(config.model, channels))


def latent_clip(config, num_frames: int, resolution: int) -> tuple[int, int, int, int]:
  """(L, h, w, C): the latent of a clip of `num_frames` x `resolution`^2 (checked)."""
  return vae_model(config).latent_shape((1, num_frames, resolution, resolution, 3))[1:]


def check_shape(config, num_frames: int, resolution: int,
                frames_name: str = 'data.num_frames') -> None:
  """UserErrors naming the fix unless the VAE takes the clips and the denoiser their latents."""
  frames, side, _, _ = latent_clip(config, num_frames, resolution)
  models.check_video_shape(config.model, frames, side,
                           frames_name=f'{frames_name} -> {frames} latent frames; that')


def init_inputs(config) -> tuple:
  """(z, t, tokens): one example of the latent training shapes."""
  d = config.data
  z = jnp.zeros((1, *latent_clip(config, d.num_frames, d.resolution)), jnp.float32)
  return z, jnp.zeros((1,), jnp.float32), jnp.zeros((1, config.model.text.max_len), jnp.int32)


def draw(rng, setup, batch, train: bool) -> dict:
  """The diffusion randomness (`steps.draw`) with noise of the latents' shape."""
  shape = setup.model.latent_shape(batch['video'].shape)
  return steps.draw(rng, setup, batch, train, shape=shape)


def loss(params, setup, batch, noise: dict, train: bool):
  """The diffusion loss on the batch's latents; the VAE and the scale get no gradient."""
  frozen = {**params, 'vae': jax.lax.stop_gradient(params['vae']),
            'scale': jax.lax.stop_gradient(params['scale'])}
  z = setup.model.apply({'params': frozen}, pipeline.as_float(batch['video']),
                        method=latent.LatentDenoiser.encode)
  return steps.loss_fn(frozen, setup, batch, noise, train, x0=jax.lax.stop_gradient(z))


def evaluate(params, setup, batch, noise: dict):
  return loss(params, setup, batch, noise, train=False)[0]


trainable = optimizer.subtree('denoiser')  # the VAE and the scale stay as restored


def init_params(setup, state):
  """`state` with the VAE checkpoint's EMA weights in params['vae'] and params['scale'] = 1 /
  std of the (unscaled) latents of `latent.scale_clips` held-out clips."""
  from vidiff import inference  # inference -> train -> tasks -> here
  cfg = setup.config
  vae_dir = cfg.latent.vae_workdir
  check(vae_dir, 'task=latent diffuses a trained VAE\'s latents: set --config.latent.vae_workdir '
                 '(python -m vidiff.main --config=configs/vae_quickstart.py --workdir=VAE trains '
                 'one).')
  vae_setup, vae_state = inference.restore_matching(
      vae_dir, 'vae', cfg.vae_model, 'latent.vae_workdir',
      'set config.vae_model to the VAE\'s model config')
  vae_params = vae_state.ema_params
  clips, _ = pipeline.held_out_clips(cfg.data, cfg.latent.scale_clips)
  encode = jax.jit(lambda p, x: vae_setup.model.apply({'params': p}, x, method='encode')[0])
  z = np.asarray(encode(vae_params, pipeline.as_float(clips)))
  scale = np.float32(1. / max(float(z.std()), 1e-6))
  targets = setup.state_shardings.params
  params = {**state.params, 'vae': jax.device_put(vae_params, targets['vae']),
            'scale': jax.device_put(jnp.asarray(scale), targets['scale'])}
  metric_writer.say(f'latent diffusion on the VAE of {vae_dir} (step {int(vae_state.step)}): '
                    f'latents {latent_clip(cfg, cfg.data.num_frames, cfg.data.resolution)}, '
                    f'scale 1/{1 / scale:.3f}')
  return state.with_weights(params)
