r"""Latent video diffusion: the quickstart denoiser on the latents of a trained causal VAE.

  python -m vidiff.main --config=configs/vae_quickstart.py --workdir=/tmp/vae_video
  python -m vidiff.main --config=configs/latent_quickstart.py \
      --config.latent.vae_workdir=/tmp/vae_video --workdir=/tmp/vidiff_latent

`config.task = 'latent'`: clips of 17 frames at 32x32 are encoded on the fly by the frozen VAE
(4x in time and space: latents of 5 x 8 x 8 x 12) and the denoiser learns those; sampling draws
latents and decodes them chunk by chunk, so `vidiff.sample` (long videos included: chunks and
overlaps count latent frames), `vidiff.evaluate` and the end-of-run samples work unchanged.
Arguments: the backbone and size as in configs/quickstart.py (`:st_transformer`, `:unet3d,tiny`
for the tests); `config.vae_model` must be the VAE checkpoint's model config
(configs/vae_quickstart.py's, tiny with `tiny`).
"""

import ml_collections

from configs import common, quickstart, vae_quickstart


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, backbone='unet3d', size='quickstart')
  tiny = args.size == 'tiny'
  # Without the quickstart's motion recipe: two-stage sampling needs image-to-video, which
  # latent models do not have yet.
  config = quickstart.get_config(f'{args.backbone},{args.size},motion=0,images=0')
  config.task = 'latent'
  config.vae_model = vae_quickstart.vae_model('video', tiny)
  config.latent = ml_collections.ConfigDict(dict(
      vae_workdir='',  # the trained VAE's workdir (its latest checkpoint's EMA weights)
      scale_clips=16))  # held-out clips whose latent std sets the scale at the start
  # Latents are 4x smaller in space: no patching on top of that.
  config.model.patch_size = (1, 1, 1)
  config.data.update(num_frames=5 if tiny else 17, frame_stride=1)
  config.data.synthetic.supersample = 4  # the shapes as configs/vae_quickstart.py renders them
  if not tiny:
    # 0.16 s/step on 2 CPU cores: 4000 steps, with the video metrics of 32 samples (one per
    # held-out clip) every 500 steps, in 20 min. Its eval log: FVD 323.5 -> 283.1, warping
    # error 11.9e-5 -> 4.7e-5, eval loss 0.0414 -> 0.0334 (README "Latent diffusion").
    config.train.update(num_steps=4000, eval_every=1000, checkpoint_every=1000)
    config.metrics.update(every=500, num_videos=32)
  return config
