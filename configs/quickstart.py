r"""Quickstart: a tiny text-to-video model on synthetic moving shapes, on CPU in minutes.

  python -m vidiff.main --config=configs/quickstart.py --workdir=/tmp/vidiff_quickstart

Arguments choose the backbone and size: `configs/quickstart.py:unet3d` (default),
`configs/quickstart.py:st_transformer`, `configs/quickstart.py:unet3d,tiny` (seconds; what the
tests use). Sharded on 8 CPU devices:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m vidiff.main \
    --config=configs/quickstart.py --workdir=/tmp/vq8 \
    --config.mesh.data=2 --config.mesh.fsdp=2 --config.mesh.time=2
"""

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, backbone='unet3d', size='quickstart')
  config = common.base_config()
  config.model = common.model_config(args.backbone, args.size)
  # A CPU budget of ~1000 small steps: x0-prediction gives clean (if soft) frames long before
  # eps/v-prediction learns to remove the last of the noise, and small batches give more steps.
  config.diffusion.prediction = 'x0'
  config.train.update(num_steps=1000, batch_size=4, warmup_steps=50, ema_decay=0.99,
                      eval_every=500, checkpoint_every=500)
  # At this budget classifier-free guidance amplifies the model's errors more than the prompt:
  # on 24 prompts, guidance 1 scored color/direction/shape 0.92/0.33/0.38 against 0.92/0.04/0.29
  # at guidance 3. Raise it (--config.sample.guidance, or vidiff.sample --guidance) for longer runs.
  config.sample.guidance = 1.0
  # FVD / temporal FID / warping error of 16 samples against held-out clips: ~45 s per eval.
  config.metrics.update(every=250, num_videos=16)
  if args.backbone == 'st_transformer' and args.size == 'quickstart':
    # 4.5 steps/s against the U-Net's 2.7 on 2 CPU cores: more steps in the same minutes.
    config.train.update(num_steps=1500, eval_every=750, checkpoint_every=750)
    config.metrics.every = 375
  if args.size == 'tiny':
    config.data.resolution = 16
    config.data.num_frames = 4
    config.train.update(num_steps=4, batch_size=8, warmup_steps=2, log_every=2, eval_every=4,
                        checkpoint_every=4)
    config.sample.update(num_prompts=2, steps=4, batch_size=2)
    config.metrics.every = 0  # on with --config.metrics.every=N (I3D costs seconds even here)
  return config
