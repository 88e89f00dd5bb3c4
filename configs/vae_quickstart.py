r"""VAE quickstart: the causal video VAE (or its per-frame 2D baseline) on synthetic clips.

  python -m vidiff.main --config=configs/vae_quickstart.py --workdir=/tmp/vae_video
  python -m vidiff.main --config=configs/vae_quickstart.py:image --workdir=/tmp/vae_image
  python -m vidiff.vae_eval --workdir=/tmp/vae_video --videos=../shared/data/real_videos

Same trainer as diffusion (`config.task = 'vae'`): sharded init and step, orbax checkpoints
with the data iterator, resume, TensorBoard + metrics.jsonl; eval reports reconstruction
PSNR / SSIM, and the end of the run writes held-out clips as original | reconstruction under
DIR/samples/. Arguments: `video` (default; the causal 3D VAE, 4x time and 4x space), `image`
(the per-frame 2D VAE via `vae.image_vae`, widened to about the same parameter count: no time
compression), `tiny` (seconds; what the tests use), comma-separated (`image,tiny`). Data:
`data.source` as for diffusion (synthetic, folder, tfds); clips have 1 + 4k frames.
"""

import ml_collections

from configs import common

VARIANTS = ('video', 'image')


def parse(arg: str | None) -> tuple[str, bool]:
  words = [w for w in (arg or '').split(',') if w]
  unknown = [w for w in words if w not in VARIANTS + ('tiny',)]
  if unknown:
    raise ValueError(f'unknown config argument {unknown[0]!r}; use video, image and/or tiny.')
  variant = 'image' if 'image' in words else 'video'
  return variant, 'tiny' in words


def vae_model(variant: str, tiny: bool) -> ml_collections.ConfigDict:
  """The VAE fields of `vidiff.models.vae.CausalVAE` (+ name, dtype, and `text`, which only the
  data pipeline reads: it still tokenizes captions, the VAE ignores them)."""
  # latent_channels: 12 for the video VAE, which keeps 3 latent frames of a 9-frame clip where
  # the per-frame VAE keeps 9 of 4 channels: the same latent size. groups=1 (each frame's
  # features normalised together): with 8 groups of 2-4 channels, per-group normalisation of
  # one small flat-coloured object left too little of its colour, and reconstructions came
  # out grey for hundreds of steps (500-step runs of the video VAE: 19.5 dB with 8 groups, 21.1
  # with 1; of the 2D VAE with 1: 24.8). conv='2plus1d' (video): each residual conv a 3x3 in
  # space then a causal 3-tap in time, which at the same parameter count affords 22 channels
  # where 3x3x3 convs afford 16: held-out PSNR at step 1000 25.5 dB against 22.4. The image
  # VAE widens its 16 channels to 28 (`match_params`): about the same size, 707k vs 718k.
  video = variant == 'video'
  return ml_collections.ConfigDict(dict(
      name='causal_vae' if video else 'image_vae', dtype='float32',
      channels=8 if tiny else 22 if video else 16, channel_mult=(1, 2, 2),
      num_res_blocks=1, latent_channels=12 if video else 4, spatial_downsample=4,
      temporal_downsample=4, temporal_kernel=3, conv='2plus1d' if video else '3d', kl=True,
      groups=1, time_padding='replicate', conv_init='center',
      match_params=True, text=common.text_config('tiny')))


def get_config(arg: str | None = None):
  variant, tiny = parse(arg)
  config = common.base_config()
  config.task = 'vae'
  config.model = vae_model(variant, tiny)
  config.vae = ml_collections.ConfigDict(dict(
      l1_weight=1.0, ssim_weight=0.2, kl_weight=1e-6,
      temporal_weight=0.0,  # L1 of frame-to-frame changes (vae_losses.temporal_l1)
      num_reconstructions=8))  # held-out clips written as original | reconstruction at the end
  config.data.update(num_frames=9, frame_stride=1, resolution=32)
  # Shapes rendered at 4x and area-averaged, so that they move by quarter pixels as a camera
  # would show them: drawn at whole pixels, a slow object jumps one pixel on some frames and
  # stands still on others, and the video VAE, which codes 4 frames in one latent frame, put
  # those jumps on the wrong frames (warping error by the original's flow 6.25e-4 against
  # 8.60e-5 with supersample=4, at the same 26.4 dB; README "Video VAE").
  config.data.synthetic.supersample = 4
  config.train.update(num_steps=1000, batch_size=4, learning_rate=1e-3, warmup_steps=50,
                      ema_decay=0.99, log_every=25, eval_every=250, checkpoint_every=250)
  config.metrics.every = 0  # FVD & co. sample a diffusion model; vidiff.vae_eval scores a VAE
  config.sample.num_prompts = 0
  if tiny:
    config.data.update(num_frames=5, resolution=16)
    config.train.update(num_steps=4, batch_size=8, warmup_steps=2, log_every=2, eval_every=4,
                        checkpoint_every=2)
    config.vae.num_reconstructions = 2
  return config
