r"""Presets of `python -m vidiff.bench`: which model variants, clip shapes and sweeps to measure.

  python -m vidiff.bench --out=/tmp/bench --preset=cpu-small

`get_config(preset)` returns a ConfigDict of bench settings (below); `train_config(bench,
variant, size)` the full training config (the quickstart one, synthetic data) of one variant.

Variants (`VARIANTS`): the 3D U-Net with full 3x3x3 convs ('unet3d-3d', model.conv='3d') and
(2+1)D convs ('unet3d-2plus1d'), the ST-Transformer with factorized space/time attention
('st-factorized', model.attention='factorized') and with joint space-time attention, the
baseline ('st-joint'). Per size their widths/depths (`variants.MODELS`) are tuned so parameter
counts lie within ~15% of each other (the bench prints and records them).

Presets: 'tiny' (the test: two variants, 11 small compiles), 'cpu-small' (speed, memory,
sweeps and the torch peer: < 10 min on 2 CPU cores), 'cpu-quality' (one model per family trained
for the same 4 minutes of train steps, then prompt adherence, FVD and warping error: ~13 min),
'gpu' (one accelerator chip, size base in bf16: one variant per family, train step and
sampling; about 5 minutes, most of it XLA's compiles), 'gpu-full' (every variant, then frames
and resolution sweeps up to 64 frames and 256x256; a run cut short keeps what it measured),
'gpu-quality' (size small, every variant trained for 10 minutes, then FVD, warping
error and prompt adherence of 32 samples each).
"""

import ml_collections

from configs import quickstart
from configs.bench import variants
from vidiff.errors import UserError

PRESETS = ('tiny', 'cpu-small', 'cpu-quality', 'gpu', 'gpu-full', 'gpu-quality')
VARIANTS = variants.VARIANTS


NO_QUALITY = dict(seconds=0.0, variants=(), eval_videos=0, sample_steps=2, video_metrics=False)
QUALITY_VARIANTS = ('unet3d-2plus1d', 'st-factorized')
CPU_SMALL = dict(
    sizes=('small',), frames=8, resolution=32, batch_size=4, dtype='float32',
    warmup_steps=1, timed_steps=2, matmul_n=1024, cpu_fast_compile=False,
    frames_sweep=(8, 16, 32, 64), sweep_resolution=32, resolution_sweep=(16, 32, 64),
    sweep_frames=8, sweep_batch_size=1, sweep_timed_steps=1, sample_steps=4, sample_videos=1,
    peer=True, width_sweep=(256, 384))
GPU = dict(  # size base in bf16 on one accelerator chip
    sizes=('base',), frames=16, resolution=64, batch_size=8, dtype='bfloat16',
    warmup_steps=2, timed_steps=10, matmul_n=4096, cpu_fast_compile=False,
    frames_sweep=(16, 64), sweep_resolution=64, resolution_sweep=(64, 256), sweep_frames=16,
    sweep_batch_size=1, sweep_timed_steps=5, sample_steps=10, sample_videos=8,
    peer=False,  # the torch peer runs on CPU only
    width_sweep=())


def _preset(name: str) -> dict:
  """Bench settings of preset `name` (see get_config for the fields)."""
  if name == 'tiny':  # one variant per family; 3 sweep compiles each (a shape is in both)
    return dict(
        variants=('unet3d-2plus1d', 'st-factorized'), sizes=('tiny',), frames=2, resolution=8, batch_size=1, dtype='float32',
        warmup_steps=1, timed_steps=1, matmul_n=256, cpu_fast_compile=True,
        frames_sweep=(2, 4), sweep_resolution=8, resolution_sweep=(8, 16), sweep_frames=2,
        sweep_batch_size=1, sweep_timed_steps=1, sample_steps=2, sample_videos=1, peer=True,
        width_sweep=(96,), quality=NO_QUALITY)
  if name == 'cpu-small':  # compiling is most of the time: 1 train step + 6 sweep shapes each
    return dict(CPU_SMALL, quality=NO_QUALITY)
  if name == 'cpu-quality':  # one model per family trained for the same seconds: ~13 min
    return dict(CPU_SMALL, variants=QUALITY_VARIANTS, frames_sweep=(), resolution_sweep=(),
                peer=False, width_sweep=(),
                quality=dict(seconds=240.0, variants=QUALITY_VARIANTS, eval_videos=16,
                             sample_steps=50, video_metrics=True))
  if name == 'gpu':  # one chip, one variant per family: fits a 15-minute device lease
    return dict(GPU, variants=QUALITY_VARIANTS, frames_sweep=(), resolution_sweep=(),
                quality=NO_QUALITY)
  if name == 'gpu-full':  # one chip: every variant's train step and sampling, then the sweeps
    return dict(GPU, quality=NO_QUALITY)
  if name == 'gpu-quality':  # every variant trained 10 minutes, then FVD etc.: ~50 min
    return dict(GPU, sizes=('small',), frames_sweep=(), resolution_sweep=(), width_sweep=(),
                quality=dict(seconds=600.0, variants=VARIANTS, eval_videos=32, sample_steps=50,
                             video_metrics=True))
  raise UserError(f'unknown bench preset {name!r}; use one of {", ".join(PRESETS)} '
                  f'(e.g. --preset=cpu-small).')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Bench settings of preset `arg` (default 'cpu-small'):

  sizes: model sizes, each with every variant; variants: VARIANTS; frames, resolution,
  batch_size: the clip shape and batch of the per-variant train-step row; dtype: model.dtype;
  warmup_steps / timed_steps: steps run before / while timing; matmul_n: the CPU peak's matmul
  size; cpu_fast_compile: on CPU compile every step at backend optimisation level 0 (same
  memory, half the compile time, slower elementwise code); frames_sweep at sweep_resolution
  and resolution_sweep at sweep_frames, with sweep_batch_size clips, timed over
  sweep_timed_steps: the scaling sweeps;
  sample_steps, sample_videos: the DDIM sampling measurement (scaled to
  `sample_reference_steps`); width_sweep: widths at which the first size's st-factorized train
  step is measured again (same depth and heads' dim; MFU against width); peer: also time video-diffusion-pytorch's Unet3D train step with
  the level widths, clip shape and batch of the first size's unet3d-2plus1d (vidiff.bench_peer;
  on CPU, when installed: `pip install -e .[bench]`), beside that variant without its 2x2 patch
  embedding, so both run their first level at full resolution; quality: seconds of train steps (the measured step, at batch_size)
  per variant of quality.variants of the first size (0: no quality run), eval_videos sampled
  with sample_steps DDIM steps (prompt adherence), video_metrics (FVD etc.).
  """
  name = (arg or 'cpu-small').strip()
  if name.startswith('preset='):
    name = name.split('=', 1)[1]
  config = ml_collections.ConfigDict({'variants': VARIANTS, **_preset(name)})
  config.preset = name
  config.sample_reference_steps = 50
  return config


def train_config(bench: ml_collections.ConfigDict, variant: str, size: str,
                 frames: int | None = None, resolution: int | None = None,
                 batch_size: int | None = None) -> ml_collections.ConfigDict:
  """The quickstart training config (synthetic data) with `variant`'s model at `size`, the
  bench's clip shape (or frames x resolution^2) and batch, on a one-device mesh. Both families
  train on clips alone (`images=0`: the quickstarts' image batches are their own recipe)."""
  config = quickstart.get_config(f'{variants.backbone(variant)},quickstart,images=0')
  config.model = variants.model_config(variant, size)
  config.model.dtype = bench.dtype
  config.data.num_frames = frames or bench.frames
  config.data.resolution = resolution or bench.resolution
  config.data.synthetic.length = max(config.data.synthetic.length,
                                     config.data.num_frames * config.data.frame_stride)
  config.train.batch_size = batch_size or bench.batch_size
  config.mesh.update(data=1, fsdp=1, time=1, space=1, tensor=1)
  return config
