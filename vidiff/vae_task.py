"""The causal video VAE as a training task (`config.task = 'vae'`, see `tasks`).

The model comes from `config.model` (name 'causal_vae', or 'image_vae': the per-frame 2D
baseline built from the same fields by `vae.image_vae`), the loss is `vae_losses.vae_loss` with
the weights of `config.vae`, eval reports reconstruction PSNR / SSIM of the EMA params on the
held-out batches, and the end of training writes held-out clips as original | reconstruction
side by side under DIR/samples/step_N/.
"""

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from vidiff import generate, metric_writer, models, video_io
from vidiff.data import pipeline
from vidiff.errors import UserError
from vidiff.models import vae, vae_losses

NAMES = ('causal_vae', 'image_vae')
FIELDS = ('channels', 'channel_mult', 'num_res_blocks', 'latent_channels', 'spatial_downsample',
          'temporal_downsample', 'temporal_kernel', 'kl', 'groups', 'time_padding', 'conv_init')


def get_model(model_config) -> vae.CausalVAE:
  """The VAE of `config.model`; 'image_vae' is the per-frame VAE of the same fields (widened to
  about the video VAE's parameter count when `model.match_params`)."""
  name = model_config.name
  if name not in NAMES:
    raise UserError(f'model.name={name!r} with task=vae; use one of {NAMES} '
                    f'(configs/vae_quickstart.py:video or :image).')
  missing = [k for k in FIELDS if k not in model_config]
  if missing:
    raise UserError(f'config.model lacks the VAE fields {missing}; start from '
                    f'configs/vae_quickstart.py.')
  fields = {k: model_config[k] for k in FIELDS}
  fields['conv'] = model_config.get('conv', '3d')  # configs saved before the field existed
  fields['channel_mult'] = tuple(fields['channel_mult'])
  model = vae.CausalVAE(**fields, dtype=models.dtype(model_config))
  if name == 'image_vae':
    model = vae.image_vae(model, match_params=model_config.get('match_params', True))
  model.check_config()
  return model


def check_video_shape(model_config, num_frames: int, resolution: int,
                      frames_name: str = 'data.num_frames') -> None:
  """Raises a UserError (naming the fix) unless clips of this shape fit the VAE."""
  del frames_name  # the VAE's message names data.num_frames / data.resolution itself
  get_model(model_config).check_video((1, num_frames, resolution, resolution, 3))


def init_inputs(config) -> tuple:
  d = config.data
  return (jnp.zeros((1, d.num_frames, d.resolution, d.resolution, 3), jnp.float32),)


def draw(rng, setup, batch, train: bool) -> dict:
  """The step's randomness: the key of the posterior sample (split per microbatch by
  `steps.loss_and_grads` like the diffusion dropout key)."""
  del setup, batch, train
  return {'dropout': rng}


def loss_weights(config) -> dict[str, float]:
  v = config.vae
  return dict(l1_weight=v.l1_weight, ssim_weight=v.ssim_weight, kl_weight=v.kl_weight,
              temporal_weight=v.get('temporal_weight', 0.))


def loss(params, setup, batch, noise: dict, train: bool):
  """(loss, metrics) of a batch; the latent is sampled from the posterior in training."""
  rng = noise['dropout'] if train else None
  return vae_losses.vae_loss(params, setup.model, batch, rng, **loss_weights(setup.config))


def evaluate(params, setup, batch, noise: dict) -> dict:
  """{'loss', 'psnr', 'ssim', 'l1', 'temporal_l1'[, 'kl']} of the posterior-mean
  reconstruction."""
  return loss(params, setup, batch, noise, train=False)[1]


def reconstruct(model: vae.CausalVAE, params, videos: np.ndarray,
                batch_size: int = 8) -> np.ndarray:
  """uint8 [N, T, H, W, 3] -> the posterior-mean reconstructions, uint8 [N, T, H, W, 3]."""
  fn = jax.jit(lambda p, x: model.apply({'params': p}, vae_losses.as_video(x))[0])
  out = [np.asarray(fn(params, videos[i:i + batch_size]))
         for i in range(0, len(videos), batch_size)]
  return video_io.to_uint8(np.concatenate(out))


def side_by_side(original: np.ndarray, recon: np.ndarray) -> np.ndarray:
  """[N, T, H, W, 3] twice -> [N, T, H, 2W, 3]: original left, reconstruction right."""
  return np.concatenate([original, recon], axis=3)


def write_reconstructions(setup, state, workdir, writer) -> None:
  """Reconstructs `vae.num_reconstructions` held-out clips with the EMA params and writes
  original | reconstruction videos (mp4 + gif), grid.png and samples.npz to samples/step_N."""
  cfg, step = setup.config, int(state.step)
  if cfg.vae.num_reconstructions <= 0:
    return
  real, captions = pipeline.held_out_clips(cfg.data, cfg.vae.num_reconstructions)
  recon = reconstruct(setup.model, state.ema_params, real)
  psnr = float(vae_losses.psnr(vae_losses.as_video(recon), vae_losses.as_video(real)))
  if jax.process_index() == 0:
    out_dir = epath.Path(workdir) / 'samples' / f'step_{step}'
    videos = side_by_side(real, recon)
    generate.write_videos(out_dir, videos, captions, cfg.sample.fps)
    writer.scalars(step, {'sample/psnr': psnr})
    writer.image(step, 'reconstructions', video_io.grid(videos))
    metric_writer.say(f'reconstructions (original | VAE) -> {out_dir}  PSNR {psnr:.2f} dB')
