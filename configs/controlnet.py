r"""A depth ControlNet on a trained quickstart denoiser (`config.task = 'controlnet'`).

  python -m vidiff.main --config=configs/quickstart.py --workdir=/tmp/vidiff_quickstart
  python -m vidiff.main --config=configs/controlnet.py \
      --config.controlnet.base_workdir=/tmp/vidiff_quickstart --workdir=/tmp/vidiff_control

The argument is the base's (`configs/controlnet.py:st_transformer` for a base trained with
`configs/quickstart.py:st_transformer`; `:unet3d,tiny` for the tests): the model config must be
the base checkpoint's. `source=camera` trains on the moving-camera scenes instead of the shapes (the
base should then be trained on them too: `--config.data.source=camera`). The end of training
writes depth | real | base | ControlNet videos of held-out clips and scores how well the
videos follow the depth; `python -m vidiff.control_eval --workdir=/tmp/vidiff_control` does the
same for any number of clips, and `python -m vidiff.sample --workdir=/tmp/vidiff_control
--control=depth.npy` samples with a depth stream of your own.
"""

import ml_collections

from configs import common, quickstart


def get_config(arg: str | None = None):
  args = common.parse_arg(arg, backbone='unet3d', size='quickstart', source='synthetic', motion=1)
  # The base's diffusion settings: `motion=0` for a base trained with quickstart.py:motion=0.
  # The branch trains on clips only (the base's image batches taught it shapes already).
  config = quickstart.get_config(f'{args.backbone},{args.size},motion={args.motion},images=0')
  config.task = 'controlnet'
  config.data.depth = True
  config.data.source = args.source
  config.controlnet = ml_collections.ConfigDict(dict(
      base_workdir='',  # the trained denoiser's workdir (its latest checkpoint's EMA weights)
      num_blocks=0,  # ST-Transformer: blocks in the encoder copy (0: half the depth)
      stem_channels=(16, 32),  # the depth stem's 3x3 convs
      num_samples=8))  # held-out clips sampled with and without control at the end
  # ControlNet: half of the prompts are dropped, so the branch learns to read the depth itself.
  config.diffusion.prompt_dropout = 0.5
  config.train.update(num_steps=600, learning_rate=1e-3, warmup_steps=50, eval_every=300,
                      checkpoint_every=300)
  config.metrics.every = 0  # FVD does not measure control; the end-of-run table does
  config.sample.long_mode = 'splice'  # sliding windows take no control stream
  if args.size == 'tiny':
    config.train.update(num_steps=4, eval_every=4, checkpoint_every=4)
    config.controlnet.num_samples = 2
  return config
