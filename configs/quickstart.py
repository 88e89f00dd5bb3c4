r"""Quickstart: a tiny text-to-video model on synthetic moving shapes, on CPU in minutes.

  python -m vidiff.main --config=configs/quickstart.py --workdir=/tmp/vidiff_quickstart

Arguments choose the backbone and size: `configs/quickstart.py:unet3d` (default),
`configs/quickstart.py:st_transformer`, `configs/quickstart.py:unet3d,tiny` (seconds; what the
tests use); `motion=0` leaves out the recipe that teaches motion from the prompt; `images=0`
leaves out the joint image-video training that teaches both backbones the shapes (then 1000
U-Net or 1500 ST-Transformer steps, instead of 2000 or 4000; README "Shapes from images");
`bounce=1` trains on objects that bounce off the walls, for long videos (docs/long_videos.md).
Sharded on 8 CPU devices:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m vidiff.main \
    --config=configs/quickstart.py --workdir=/tmp/vq8 \
    --config.mesh.data=2 --config.mesh.fsdp=2 --config.mesh.space=2

(`--config.mesh.time=2` splits frames: with `images=0`, since single-frame batches cannot.)
"""

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, backbone='unet3d', size='quickstart', motion=1, images=-1,
                          bounce=0)
  if args.images == -1:  # the default: joint image-video training for the quickstart sizes
    args.images = int(args.size == 'quickstart')
  config = common.base_config()
  # One XLA CPU device computes mostly on one core: two devices run the two halves of each
  # batch at once (train step 0.18 against 0.23 s on 2 cores; README "The quickstart").
  config.mesh.cpu_devices = 2
  config.model = common.model_config(args.backbone, args.size)
  # A CPU budget of ~1000 small steps: x0-prediction gives clean (if soft) frames long before
  # eps/v-prediction learns to remove the last of the noise, and small batches give more steps.
  config.diffusion.prediction = 'x0'
  config.train.update(num_steps=1000, batch_size=4, warmup_steps=50, ema_decay=0.99,
                      eval_every=500, checkpoint_every=500)
  if args.motion:  # `motion=0`: without the recipe below (what configs/latent_quickstart.py uses)
    # Motion from the prompt (README, "Why the samples move the way they do"): most clips give
    # the model their first frame clean and the rest at high noise (shift 8), where only the
    # caption says which way the object goes; samples are drawn in two stages, a clip and then
    # the video starting from its frame 1 (`generate.drawn_frame`). Objects cross a quarter to
    # a third of the frame in
    # a 15-frame video, so that where an object starts says little about where it goes.
    config.diffusion.update(shift=8.0, context=dict(prob=0.8, max_frames=1))
    config.data.synthetic.update(length=15, travel=(0.25, 0.35))
    config.sample.first_frame = True
    if args.backbone == 'unet3d' and args.size != 'tiny':
      # Long videos by anchored sliding windows: spliced 8-frame chunks of this U-Net seam
      # (the last frames of a clip move least, the next chunk's first ones make up for it);
      # `vidiff.sample_bench` measures both (docs/long_videos.md).
      config.sample.long_mode = 'window'
    elif args.size != 'tiny':
      # The ST-Transformer keeps its object best spliced with each chunk's last 3 frames
      # sampled again by the next one (docs/long_videos.md).
      config.sample.trim = 3
  # At this budget classifier-free guidance amplifies the model's errors more than the prompt
  # (measured before the recipe above: on 24 prompts, guidance 1 scored color/direction/shape
  # 0.92/0.33/0.38 against 0.92/0.04/0.29 at guidance 3).
  config.sample.guidance = 1.0
  # FVD / temporal FID / warping error of 16 samples against held-out clips: ~50 s per eval
  # (twice the sampling with sample.first_frame).
  config.metrics.update(every=500, num_videos=16)
  if args.backbone == 'st_transformer' and args.size == 'quickstart':
    # 4.5 steps/s against the U-Net's 2.7 on 2 CPU cores: more steps in the same minutes.
    config.train.update(num_steps=1500, eval_every=750, checkpoint_every=750)
    config.metrics.every = 750
  if args.images:
    # A third of the batches are single frames captioned without their motion ("a red
    # circle"), noised at the unshifted levels where shapes are learned; 2000 steps, since the
    # shapes need the images (README, "Shapes from images": 32 prompts scored color 0.97-1.00,
    # direction 0.91-0.97, shape 0.72-0.75 at 2000 steps in two runs, shape 0.28 at 1500).
    # The video metrics once, at the end, to stay inside 10 minutes.
    config.data.update(image_batches=0.35, image_captions='still')
    config.diffusion.image_shift = 1.0
    config.train.update(num_steps=2000, eval_every=1000, checkpoint_every=1000)
    if args.backbone == 'st_transformer':
      # Twice the steps at 60% of the U-Net's step time: shapes 0.19 -> 0.66 from 2000 to 4000
      # steps with 2D rotary positions (README "The quickstart"; 0.25 at 4000 without them).
      config.train.update(num_steps=4000, checkpoint_every=2000)
    config.metrics.every = config.train.num_steps
  if args.bounce:
    # Long-video demo data (`bounce=1`, docs/long_videos.md): every object bounces off the
    # walls, at the speed of the moving ones, so 64- and 128-frame videos keep it in the frame
    # (prompts 'a red circle bouncing left'). Not the default: on 2000 steps it learns the
    # direction words worse than the quickstart's data.
    config.data.synthetic.update(motion='bounce',
                                 bounce_travel=tuple(config.data.synthetic.travel))
  if args.size == 'tiny':
    config.mesh.cpu_devices = 0
    config.data.resolution = 16
    config.data.num_frames = 4
    config.train.update(num_steps=4, batch_size=8, warmup_steps=2, log_every=2, eval_every=4,
                        checkpoint_every=4)
    config.sample.update(num_prompts=2, steps=4, batch_size=2)
    config.metrics.every = 0  # on with --config.metrics.every=N (I3D costs seconds even here)
  return config
