r"""Quickstart: a tiny text-to-video model on synthetic moving shapes, on CPU in minutes.

  python -m vidiff.main --config=configs/quickstart.py --workdir=/tmp/vidiff_quickstart

Arguments choose the backbone and size: `configs/quickstart.py:unet3d` (default),
`configs/quickstart.py:unet3d,tiny` (seconds; what the tests use). Sharded on 8 CPU devices:

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m vidiff.main \
    --config=configs/quickstart.py --workdir=/tmp/vq8 \
    --config.mesh.data=2 --config.mesh.fsdp=2 --config.mesh.time=2
"""

from configs import common


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, backbone='unet3d', size='quickstart')
  config = common.base_config()
  config.model = common.model_config(args.backbone, args.size)
  if args.size == 'tiny':
    config.data.resolution = 16
    config.data.num_frames = 4
    config.train.update(num_steps=4, batch_size=8, warmup_steps=2, log_every=2, eval_every=4,
                        checkpoint_every=4)
    config.sample.update(num_prompts=2, steps=4, batch_size=2)
  return config
