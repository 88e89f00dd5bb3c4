"""Shared config pieces: the base config every experiment starts from, model presets, and the
logical-axis rules. Experiment files call `base_config()` and override what they change.

Config arguments (`--config=configs/x.py:ARG`) are comma-separated words or key=value pairs:
`st_transformer`, `unet3d,tiny`, `backbone=unet3d,size=base`.
"""

import ml_collections

BACKBONES = ('unet3d', 'st_transformer')
SIZES = ('tiny', 'quickstart', 'base', 'large')

# Logical axis -> mesh axes. Params: FSDP shards `embed`/`conv_in`, tensor parallelism shards
# `mlp`/`heads`/`conv_out`. Activations: batch over data x fsdp, frames over `time`, rows over
# `space`; spatial ops regroup frames over time x space, temporal ops rows over space x time.
RULES = (
    ('act_batch', ('data', 'fsdp')),
    ('act_time', 'time'),
    ('act_height', 'space'),
    ('act_width', None),
    ('act_embed', 'tensor'),
    ('act_heads', 'tensor'),
    ('act_frames', ('time', 'space')),
    ('act_rows', ('space', 'time')),
    ('embed', 'fsdp'),
    ('mlp', 'tensor'),
    ('heads', 'tensor'),
    ('kv', None),
    ('conv_in', 'fsdp'),
    ('conv_out', 'tensor'),
    ('vocab', 'tensor'),
    ('norm', None),  # norm scales/biases are tiny: replicated, so their grads need no re-shard
)


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """'st_transformer,tiny' or 'backbone=unet3d,size=base' -> ConfigDict(backbone=..., size=...)."""
  out = dict(defaults)
  for word in filter(None, (arg or '').split(',')):
    if '=' in word:
      key, value = word.split('=', 1)
      if key not in out:
        raise ValueError(f'unknown config argument {key!r}; known: {sorted(out)}')
      out[key] = type(defaults[key])(value) if defaults[key] is not None else value
    elif word in BACKBONES:
      out['backbone'] = word
    elif word in SIZES:
      out['size'] = word
    else:
      raise ValueError(f'unknown config argument {word!r}; use one of {BACKBONES + SIZES} '
                       f'or key=value with keys {sorted(out)}')
  return ml_collections.ConfigDict(out)


def text_config(size: str) -> ml_collections.ConfigDict:
  width, depth = {'tiny': (32, 1), 'quickstart': (64, 2), 'base': (256, 4), 'large': (512, 6)}[size]
  return ml_collections.ConfigDict(dict(vocab_size=4096, width=width, depth=depth,
                                        num_heads=max(1, width // 32), max_len=16))


def unet3d_config(size: str) -> ml_collections.ConfigDict:
  """3D U-Net presets. tiny: tests; quickstart: CPU minutes; base ~100M+; large ~1B."""
  presets = {
      'tiny': dict(channels=(16, 32), attention_levels=(False, True), head_dim=16, groups=4),
      'quickstart': dict(channels=(32, 64, 96), attention_levels=(False, True, True),
                         temporal_attention_levels=(False, True, True), patch_size=(1, 2, 2)),
      'base': dict(channels=(128, 256, 512, 512), attention_levels=(False, True, True, True),
                   num_res_blocks=2, head_dim=64),
      'large': dict(channels=(256, 512, 1024, 1024), attention_levels=(False, True, True, True),
                    num_res_blocks=3, head_dim=64),
  }[size]
  levels = len(presets['channels'])
  model = dict(name='unet3d', dtype='float32', cond_dim=4 * presets['channels'][0],
               frame_embedding=True,
               text=text_config(size), channels=presets['channels'],
               num_res_blocks=presets.get('num_res_blocks', 1),
               attention_levels=presets['attention_levels'],
               temporal_attention_levels=presets.get('temporal_attention_levels', (True,) * levels),
               temporal_downsample=(False,) * levels, conv='2plus1d',
               time_padding='zeros',  # or 'replicate': temporal taps past the clip's ends
               patch_size=presets.get('patch_size', (1, 1, 1)),
               head_dim=presets.get('head_dim', 32), groups=presets.get('groups', 8),
               dropout=0.0, temporal_window=None, remat_policy='none',
               attention_impl='auto')  # or 'xla' / 'cudnn' (models/layers.attention_impl)
  return ml_collections.ConfigDict(model)


def st_transformer_config(size: str) -> ml_collections.ConfigDict:
  """ST-Transformer presets (width, depth, heads). tiny: tests; quickstart: CPU minutes;
  base ~200M; large ~1.6B (compile-only on CPU)."""
  width, depth, heads = {'tiny': (32, 2, 2), 'quickstart': (128, 4, 4), 'base': (768, 12, 12),
                         'large': (1536, 24, 24)}[size]
  # On a 2-core CPU, 2x2 patches of 32x32 frames (256 tokens a frame) cost 1.1 s a step at
  # batch 4; 4x4 patches cost 0.22 s.
  patch = (1, 4, 4) if size == 'quickstart' else (1, 2, 2)
  return ml_collections.ConfigDict(dict(
      name='st_transformer', dtype='float32', cond_dim=width, frame_embedding=True,
      text=text_config(size),
      width=width, depth=depth, num_heads=heads, patch_size=patch, attention='factorized',
      mlp_ratio=4, temporal_window=None, temporal_causal=False, remat_policy='none',
      attention_impl='auto',  # or 'xla' / 'cudnn' (models/layers.attention_impl)
      pixel_conv=0,  # > 0: overlapping patches (3x3 convs of that many channels on the pixels)
      # 2D rotary (row, column) positions in the spatial attention, beside the added sincos
      # ones: the quickstart's eval loss 0.032 -> 0.024 at 2000 steps (README "The quickstart")
      space_rope=True,
      mlp_conv=False))  # a depthwise 3x3 conv over each frame's tokens inside every MLP


def model_config(backbone: str, size: str) -> ml_collections.ConfigDict:
  return {'unet3d': unet3d_config, 'st_transformer': st_transformer_config}[backbone](size)


def base_config() -> ml_collections.ConfigDict:
  """Every field a training config has, with defaults for a small run."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = 'diffusion'  # or 'vae': train the causal video VAE (configs/vae_quickstart.py)
  c.data = ml_collections.ConfigDict(dict(
      # 'synthetic' (moving shapes), 'camera' (a camera flying past boxes, data.camera),
      # 'folder' (data.folder.path) or 'tfds' (data.tfds.name)
      source='synthetic',
      seed=0, num_frames=8, frame_stride=2, resolution=32,
      # Frame sampling: a random stride in [frame_stride, max_frame_stride] per clip (0: fixed),
      # or target_fps > 0: per video the stride nearest that rate. Each clip's effective fps is
      # in the batch as 'fps'. Train clips start at a 'random' frame or the 'first'.
      max_frame_stride=0, target_fps=0.0, clip_start='random',
      # Pixels: resize so frames cover resolution x resolution, crop ('random' or 'center'; eval
      # is centred), and with flip=True mirror half of the train clips ('left'<->'right' in
      # their captions).
      crop='random', flip=False,
      # Multi-resolution buckets: ((frames, height, width), ...); each train batch takes one at
      # random, so batches are shape-homogeneous (one compiled step per bucket). () = the one
      # shape (num_frames, resolution, resolution).
      buckets=(),
      # Joint image-video training (Make-A-Video, VideoLDM, Emu Video): this fraction of train
      # batches holds batch_size x num_frames single frames, each from its own video with its
      # own caption (the same pixels per step as a clip batch), noised at
      # diffusion.image_shift. 0: off.
      image_batches=0.0,
      # 'full': image batches keep their videos' captions; 'still' (synthetic data): without
      # the motion phrases ('a red circle'), which a still frame does not show (also the
      # prompt of sample.first_frame's image stage).
      image_captions='full',
      num_threads=4, prefetch=64, workers=0,
      device_prefetch=2,  # batches put on the mesh ahead of the step
      folder=dict(path='', eval_path=''),  # eval_path '': evaluate on the train folder
      tfds=dict(name='', data_dir='', split='train', eval_split=''),
      # travel: the range of the free space a 'constant' object crosses over the video;
      # motion: 'constant', 'bounce' (reflecting off the walls; bounce_travel: the free space
      # it crosses over the video) or 'mixed' (each video either, half each);
      # size: the range of an object's bounding-box side, as a fraction of the resolution;
      # supersample: k > 1 renders at k x the resolution and area-averages (anti-aliased edges,
      # motion in 1/k-pixel steps; 1: whole-pixel jumps, `synthetic.render`).
      synthetic=dict(num_videos=100_000, eval_videos=32, length=32, max_objects=1,
                     motion='constant', travel=(0.5, 0.8), bounce_travel=(1.5, 2.5),
                     size=(0.25, 0.35), supersample=1),
      camera=dict(num_videos=100_000, eval_videos=32, length=32, min_boxes=2, max_boxes=3,
                  travel=8.0),
      # Batches also hold 'depth' [B, T, H, W] in [0, 1] (0 nearest): the ControlNet's control
      # stream (synthetic and camera sources render it; folders read NAME.depth.npy).
      depth=False))
  c.model = unet3d_config('quickstart')
  c.diffusion = ml_collections.ConfigDict(dict(
      schedule='cosine',  # or 'linear', 'rectified_flow' (with prediction='flow': flow matching)
      shift=1.0, prediction='v', prompt_dropout=0.1,
      # SNR shift of 1-frame clips (data.image_batches, and the first stage of
      # sample.first_frame for a model trained with them); 0: the same as `shift`.
      image_shift=0.0,
      # Weight of the image batches' train loss (data.image_batches). Their gradients are
      # smoother than a clip batch's (B x T examples against B) and Adam divides both kinds by
      # one running norm; > 1 learns shapes sooner and motion later (README, "Shapes from images").
      image_loss_weight=1.0,
      # With probability `prob` a clip's first 1..max_frames frames are given clean and the
      # model learns to continue them: what long-video splicing and image-to-video condition on.
      context=dict(prob=0.25, max_frames=4),
      min_snr_gamma=0.0,  # > 0: Min-SNR-gamma loss weighting (0 = off)
      # lambda of the temporal coherence loss ||Flow(x0_hat_t) - Flow(x0_hat_t-1)||^2 on the
      # predicted clean frames (differentiable Lucas-Kanade flow; 0 = off).
      temporal_weight=0.0,
      # Scheduled sampling: with probability `prob` a clip's x_t is the model's own DDIM step
      # from up to `gap` of the way to pure noise (no gradient through it), the true clip the
      # target, so the model learns to correct what its sampler leaves (one more forward pass
      # per step). README, "Where along the path they go".
      self_step=dict(prob=0.0, gap=1.0)))
  c.train = ml_collections.ConfigDict(dict(
      num_steps=1000, batch_size=8, learning_rate=1e-3, warmup_steps=100, weight_decay=0.0,
      grad_clip=1.0, ema_decay=0.995, log_every=25, eval_every=250, checkpoint_every=250,
      keep_checkpoints=3,
      grad_accum_steps=1,  # microbatches per step, accumulated inside the jitted step
      max_nonfinite_steps=10))  # stop after this many skipped (NaN/Inf) steps in a row
  c.sample = ml_collections.ConfigDict(dict(
      num_prompts=8, sampler='ddim', steps=50, guidance=3.0, eta=0.0, fps=8, seed=0,
      batch_size=8,
      first_frame=False,  # two stages: a clip, then the video starting from one of its frames
      # Videos longer than a chunk (vidiff.sample --num_frames): 'splice' chunks or fuse sliding
      # 'window's; trim: the last frames of each spliced chunk that the next one samples anew.
      long_mode='splice', trim=0))
  # Video metrics (FVD, frame/temporal FID, warping error, flow consistency) of `num_videos`
  # samples for held-out captions against those clips, every `every` steps (0 = off); I3D
  # sees frames at `resolution` (224 is the standard FVD input).
  c.metrics = ml_collections.ConfigDict(dict(every=0, num_videos=16, resolution=224, flow='dis'))
  # Total size of each mesh axis (-1: the remaining devices). `dcn`: how many ways of each goes
  # across TPU slices / GPU nodes (the slow network); its product is the number of them.
  c.mesh = ml_collections.ConfigDict(dict(
      data=-1, fsdp=1, time=1, space=1, tensor=1, rules=RULES,
      # > 0: split a CPU host into this many devices before JAX starts (an XLA CPU device
      # computes mostly on one core, so `data` then runs parts of each batch at once); left
      # alone when XLA_FLAGS or JAX_NUM_CPU_DEVICES sets a count, and by accelerators.
      cpu_devices=0,
      dcn=dict(data=1, fsdp=1, time=1, space=1, tensor=1)))
  return c


def from_saved(saved: dict) -> ml_collections.ConfigDict:
  """The config saved with a checkpoint, with fields added since it was written set to their
  defaults (the model section is taken as saved: its fields depend on the backbone)."""
  config = base_config()
  for section, values in saved.items():
    if section == 'model' or not isinstance(values, dict) or section not in config:
      config[section] = ml_collections.ConfigDict(values) if isinstance(values, dict) else values
    else:
      _merge(config[section], values)
  return config


def _merge(config: ml_collections.ConfigDict, values: dict) -> None:
  for key, value in values.items():
    if isinstance(value, dict) and isinstance(config.get(key), ml_collections.ConfigDict):
      _merge(config[key], value)
    else:
      config[key] = value
