r"""Architecture benchmark: 3D U-Net (3D / (2+1)D convs) against ST-Transformer (factorized /
joint attention) at matched parameter counts, everything measured in one run.

  python -m vidiff.bench --out=/tmp/bench --preset=cpu-small   # < 10 min on 2 CPU cores
  python -m vidiff.bench --out=/tmp/bench --preset=cpu-quality # equal-time training, ~13 min
  python -m vidiff.bench --out=/tmp/bench --preset=gpu         # one chip, size base, 2 variants
  python -m vidiff.bench --out=/tmp/bench --preset=gpu-full    # every variant and the sweeps
  python -m vidiff.bench --out=/tmp/bench --preset=gpu-quality # 10-minute training per variant
  python -m vidiff.bench --out=/tmp/bench --preset=tiny        # ~2 min of compiles (the test)

Presets and variants: configs/bench. Per size and variant, on one device:
- train step (`train.compile_train_step` on a random batch of the preset's clip shape): compile
  s, ms per step, clips/s, FLOPs per step (XLA's `cost_analysis`), TFLOP/s, MFU against the
  peak (`perf.peak_flops`: on CPU an f32 matmul measured in this run, on GPU/TPU the data-sheet
  bf16 figure), peak MiB (`perf.step_memory_mib`, XLA's `memory_analysis`); a train step that
  runs out of device memory is a row that says so;
- sampling: s per video of a jitted DDIM call of `sample_steps` steps with classifier-free
  guidance, and scaled to 50 steps;
- scaling sweeps: time and memory of the denoiser's forward + backward (no optimizer: it
  compiles in a fraction of the train step's time) over frames T at a fixed resolution and over
  resolution at fixed T, with the ratio last/first and the log-log slope against T or pixels
  (1: linear, 2: quadratic); a shape that runs out of device memory is recorded as such;
- MFU against width (presets with width_sweep): the st-factorized train step again at wider
  widths, since small matmuls leave a CPU (or an accelerator) far below its peak;
- the peer (presets with peer, on CPU): video-diffusion-pytorch's Unet3D train step
  (`vidiff.bench_peer`, torch) beside vidiff's unet3d-2plus1d of the same level widths without
  its 2x2 patch embedding, same clips and batch; skipped with a note when torch or the package
  is not installed (`pip install -e .[bench]`);
- quality at equal compute (presets with quality.seconds > 0): each of quality.variants trained
  from scratch with its measured train step on the synthetic quickstart data until
  quality.seconds of step time are spent: steps, FLOPs spent, final train and eval loss, prompt
  adherence of samples, and FVD / warping error when quality.video_metrics.

On CPU, presets with cpu_fast_compile (tiny) compile at XLA backend optimisation level 0
(compiling is most of such a run; the buffers, so the memory, are the same; the MFU is lower).

Every variant's train step and sampling come first, then the sweeps. Writes, and rewrites after
each variant (a run cut short keeps what it measured), DIR/bench.json (device kind, jax
version, config hash, every number), DIR/bench.md (the tables, also printed), DIR/scaling_frames.png and DIR/scaling_resolution.png (presets with
sweeps) and, after a quality run, DIR/loss_vs_flops.png.
"""

import dataclasses
import hashlib
import json
import math
import time

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from absl import flags
from etils import epath
from flax import linen as nn
from tqdm import tqdm

from configs import bench as bench_configs
from configs.bench import variants as bench_variants
from vidiff import bench_peer, cli, generate, metric_writer, model_info, models, perf, steps, train
from vidiff.data import pipeline, prefetch, synthetic
from vidiff.metrics import adherence, i3d
from vidiff.models import remat, text

FLAGS = flags.FLAGS
SCHEMA_VERSION = 1
REFERENCE = 'unet3d-2plus1d'  # ratios in the tables are against this variant of the same size
WIDTH_VARIANT = 'st-factorized'  # the variant of the width sweep
SAMPLE_GUIDANCE = 3.0  # classifier-free guidance of the sampling measurement (2 passes a step)


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing the module defines none)."""
  flags.DEFINE_string('out', None, 'Output directory for bench.json, bench.md and plots.',
                      required=True)
  flags.DEFINE_string('preset', 'cpu-small',
                      f'Bench preset ({", ".join(bench_configs.PRESETS)}); see configs/bench.')


def device_info(device) -> dict:
  """Platform, device kind and library versions of the run."""
  return {'platform': device.platform, 'device_kind': device.device_kind,
          'device_count': jax.device_count(), 'jax_version': jax.__version__,
          'jaxlib_version': jaxlib.__version__}


def config_hash(bench) -> str:
  """12 hex digits of sha256 over the preset's settings and every variant's model config."""
  models = {f'{v}/{s}': bench_variants.model_config(v, s).to_dict()
            for s in bench.sizes for v in bench.variants}
  blob = json.dumps({'bench': bench.to_dict(), 'models': models}, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]


def device_peak(device, matmul_n: int) -> tuple[float | None, str]:
  """(peak FLOP/s of `device`, its source): a measured n x n f32 matmul on CPU, else the
  data-sheet figure of perf.PEAK_FLOPS."""
  if device.platform == 'cpu':
    return perf.measured_matmul_flops(device, matmul_n), f'measured {matmul_n}^2 f32 matmul'
  return perf.peak_flops([device])


def is_out_of_memory(error: Exception) -> bool:
  return 'RESOURCE_EXHAUSTED' in str(error) or 'out of memory' in str(error).lower()


def step_measurement(config, device, warmup: int, steps: int, peak: float | None,
                     compiler_options: dict | None = None):
  """Compiles and times the config's train step on `device` with a random batch.

  Returns (row, setup, state, compiled): row = {'frames', 'resolution', 'batch_size', 'compile_s',
  'step_ms', 'clips_per_s', 'flops_per_step', 'tflops_per_s', 'mfu', 'peak_mib', 'temp_mib'}
  (flops/mfu None where the backend has no cost analysis or peak); `compiler_options` go to
  `train.compile_train_step`."""
  setup = train.make_setup(config, [device])
  start = time.perf_counter()
  compiled = train.compile_train_step(setup, compiler_options=compiler_options)
  compile_s = time.perf_counter() - start
  state, batch = train.init_state(setup), model_info.random_batch(setup)
  with setup.context():
    for _ in range(warmup):
      state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
      state, _ = compiled(state, batch)
    jax.block_until_ready(state)
  row = step_row(config, compile_s, (time.perf_counter() - start) / steps, compiled, peak)
  return row, setup, state, compiled


def model_step_measurement(config, device, warmup: int, steps: int, peak: float | None,
                           compiler_options: dict | None = None) -> dict:
  """Compiles and times the denoiser's forward + backward alone (the gradient of its mean
  squared output; no diffusion loss, optimizer or EMA) on random clips [B, T, H, W, 3] of the
  config's shape on `device`: the sweeps' program, most of a train step's cost in a fraction
  of its compile time. Returns a row with step_measurement's keys."""
  model = models.get_model(config.model)
  d, b = config.data, config.train.batch_size
  rng = np.random.default_rng(0)
  put = lambda a: jax.device_put(a, device)
  x = put(rng.standard_normal((b, d.num_frames, d.resolution, d.resolution, 3), np.float32))
  t = put(np.full((b,), 0.5, np.float32))
  tokens = put(rng.integers(1, config.model.text.vocab_size, (b, config.model.text.max_len),
                            dtype=np.int32))
  shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x[:1], t[:1],
                                        tokens[:1]))
  params = jax.tree.map(lambda s: put((0.02 * rng.standard_normal(s.shape)).astype(s.dtype)),
                        shapes)
  loss = lambda p, x, t, tok: jnp.mean(model.apply(p, x, t, tok) ** 2)
  options = {**remat.compiler_options(device.platform), **(compiler_options or {})}
  start = time.perf_counter()
  compiled = jax.jit(jax.value_and_grad(loss)).lower(params, x, t, tokens).compile(
      options or None)
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    jax.block_until_ready(compiled(params, x, t, tokens))
  start = time.perf_counter()
  for _ in range(steps):
    out = compiled(params, x, t, tokens)
  jax.block_until_ready(out)
  return step_row(config, compile_s, (time.perf_counter() - start) / steps, compiled, peak)


def step_row(config, compile_s: float, seconds: float, compiled, peak: float | None) -> dict:
  """The numbers of one compiled step of the config's shape that takes `seconds`."""
  flops = perf.step_flops(compiled, 1)
  memory = perf.step_memory_mib(compiled)
  d = config.data
  return {'frames': d.num_frames, 'resolution': d.resolution,
          'batch_size': config.train.batch_size, 'compile_s': compile_s,
          'step_ms': 1e3 * seconds, 'clips_per_s': config.train.batch_size / seconds,
          'flops_per_step': flops, 'tflops_per_s': flops / seconds / 1e12 if flops else None,
          'mfu': flops / seconds / peak if flops and peak else None,
          'peak_mib': memory['peak'], 'temp_mib': memory['temp']}


def sampling_measurement(setup, params, num_videos: int, steps: int, reference_steps: int) -> dict:
  """Seconds per video of one jitted DDIM call (`steps` steps, guidance SAMPLE_GUIDANCE) on
  `num_videos` videos of the config's clip shape: {'videos', 'steps', 'guidance', 'compile_s',
  's_per_video', 's_per_video_at_<reference_steps>' (scaled linearly)}."""
  cfg = setup.config
  frames, res = cfg.data.num_frames, cfg.data.resolution
  prompts = synthetic.example_prompts(num_videos, seed=1)
  tokens = jnp.asarray(text.tokenize(prompts, cfg.model.text.max_len, cfg.model.text.vocab_size))
  noise = jax.random.normal(jax.random.PRNGKey(0), (num_videos, frames, res, res, 3))
  known, mask, key = jnp.zeros_like(noise), jnp.zeros((frames,)), jax.random.PRNGKey(1)
  options = generate.Options(num_frames=frames, sampler='ddim', steps=steps,
                             guidance=SAMPLE_GUIDANCE)
  fn = generate.sampler_fn(setup, options)
  with setup.context():
    start = time.perf_counter()
    jax.block_until_ready(fn(params, tokens, noise, key, known, mask))
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(fn(params, tokens, noise, key, known, mask))
    per_video = (time.perf_counter() - start) / num_videos
  return {'videos': num_videos, 'steps': steps, 'guidance': SAMPLE_GUIDANCE,
          'compile_s': max(compile_s - per_video * num_videos, 0.0), 's_per_video': per_video,
          f's_per_video_at_{reference_steps}': per_video * reference_steps / steps}


def compiler_options(bench, device) -> dict | None:
  """XLA options of every measured step: on CPU with bench.cpu_fast_compile, backend
  optimisation level 0 (the same buffer assignment, so the same memory; half the compile time;
  slower elementwise code, so a lower MFU)."""
  fast = device.platform == 'cpu' and bench.cpu_fast_compile
  return perf.COMPILE_ONLY_CPU_OPTIONS if fast else None


def sweep_rows(bench, variant: str, size: str, axis: str, device, peak, bar,
               measured: dict) -> list[dict]:
  """Forward + backward rows (model_step_measurement) of `variant` over frames (axis='frames',
  at sweep_resolution) or over resolution (axis='resolution', at sweep_frames), with
  sweep_batch_size clips; a shape that runs
  out of device memory is a row with 'error' and no numbers. `measured`: rows by (variant,
  size, frames, resolution, batch), reused and added to (each shape is compiled once)."""
  values = bench.frames_sweep if axis == 'frames' else bench.resolution_sweep
  rows = []
  for value in values:
    shape = ((value, bench.sweep_resolution) if axis == 'frames' else
             (bench.sweep_frames, value))
    key = (variant, size, *shape, bench.sweep_batch_size)
    bar.set_description(f'{variant}/{size} {axis}={value}')
    if key not in measured:
      config = bench_configs.train_config(bench, variant, size, *shape, bench.sweep_batch_size)
      try:
        measured[key] = model_step_measurement(config, device, bench.warmup_steps,
                                               bench.sweep_timed_steps, peak,
                                               compiler_options(bench, device))
      except Exception as e:  # pylint: disable=broad-except
        if not is_out_of_memory(e):
          raise
        measured[key] = {'frames': shape[0], 'resolution': shape[1], 'error': 'out of memory'}
    rows.append({'variant': variant, 'size': size, 'sweep': axis, **measured[key]})
    bar.update(1)
  return rows


def loglog_slope(xs, ys) -> float | None:
  """Least-squares slope of log y against log x (1: linear growth, 2: quadratic)."""
  points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y]
  if len(points) < 2:
    return None
  x, y = np.array(points).T
  return float(np.polyfit(x, y, 1)[0])


def growth(rows: list[dict], axis: str) -> dict:
  """How step time and memory grow over one sweep of one variant: {'<metric>_ratio' (last /
  first point), '<metric>_exponent' (log-log slope against T, or against pixels H x W)}."""
  ok = [r for r in rows if 'error' not in r]
  if len(ok) < 2:
    return {}
  xs = [r['frames'] if axis == 'frames' else r['resolution'] ** 2 for r in ok]
  out = {'from': ok[0][axis], 'to': ok[-1][axis]}
  for metric in ('step_ms', 'peak_mib'):
    ys = [r[metric] for r in ok]
    out[f'{metric}_ratio'] = ys[-1] / ys[0]
    out[f'{metric}_exponent'] = loglog_slope(xs, ys)
  return out


def quality_row(bench, variant: str, size: str, setup, compiled, step_row: dict) -> dict:
  """Trains `variant` from scratch with its measured train step (`compiled`, the bench's batch)
  on the synthetic quickstart data until quality.seconds of step time are spent (data loading
  not counted), then scores it: {'variant', 'size', 'steps', 'batch_size', 'seconds_budget',
  'train_s', 'flops', 'train_loss' (mean of the last 10%), 'eval_loss' (EMA params, held-out
  batches), 'scores' (sample/... prompt adherence of quality.eval_videos DDIM samples; with
  quality.video_metrics eval/fvd, eval/warping_error, ...), 'curve' [{step, flops,
  train_loss}]}."""
  cfg, q = setup.config, bench.quality
  batch_size = cfg.train.batch_size
  state = train.init_state(setup)
  batches = prefetch.DevicePrefetch(pipeline.train_iterator(cfg.data, cfg.model.text, batch_size),
                                    setup.batch_shardings, cfg.data.device_prefetch)
  curve, spent, flops_per_step = [], 0.0, step_row['flops_per_step'] or 0.0
  with setup.context():
    while spent < q.seconds:
      batch = next(batches)
      start = time.perf_counter()
      state, metrics = compiled(state, batch)
      loss = float(metrics['loss'])  # blocks: the step's time ends here
      spent += time.perf_counter() - start
      curve.append({'step': len(curve) + 1, 'flops': (len(curve) + 1) * flops_per_step,
                    'train_loss': loss})
  eval_batches = pipeline.eval_batches(cfg.data, cfg.model.text, batch_size)
  scores = dict(train.eval_loss(setup, steps.make_eval_step(setup), state, eval_batches))
  eval_loss = scores.pop('eval/loss')
  if q.eval_videos:
    prompts = synthetic.example_prompts(q.eval_videos, seed=cfg.sample.seed)
    options = generate.options_from_config(cfg, steps=bench.quality.sample_steps,
                                           batch_size=q.eval_videos)
    videos = generate.generate(setup, state.ema_params, prompts, options, progress=False)
    scores.update({f'sample/{k}': v for k, v in adherence.score_batch(videos, prompts).items()})
  if q.video_metrics:
    metrics_config = cfg.copy_and_resolve_references()
    metrics_config.metrics.update(every=1, num_videos=q.eval_videos)
    metrics_fn = train.video_metrics_fn(dataclasses.replace(setup, config=metrics_config))
    scores.update(metrics_fn(state))
  tail = [p['train_loss'] for p in curve[-max(1, len(curve) // 10):]]
  return {'variant': variant, 'size': size, 'steps': len(curve), 'batch_size': batch_size,
          'seconds_budget': q.seconds, 'train_s': spent, 'flops': curve[-1]['flops'],
          'train_loss': float(np.mean(tail)), 'eval_loss': eval_loss, 'scores': scores,
          'curve': curve}


def backbone_params(params) -> int:
  """Parameters of a denoiser without its prompt encoder (the 'text' module)."""
  text = params['params'].get('text', {}) if 'params' in params else params.get('text', {})
  return train.count_params(params) - train.count_params(text)


def peer_comparison(bench, device, peak) -> dict:
  """video-diffusion-pytorch's train step against vidiff's REFERENCE U-Net of the first size
  with patch_size (1, 1, 1) (level widths, clips and batch shared): {'size', 'vidiff': row,
  'peer': row}, or {'skipped': why} off CPU or without the package."""
  why = ('the torch peer is measured on CPU only' if device.platform != 'cpu' else
         bench_peer.missing())
  if why:
    return {'skipped': why}
  size = bench.sizes[0]
  config = bench_configs.train_config(bench, REFERENCE, size)
  config.model.patch_size = (1, 1, 1)
  row, _, state, _ = step_measurement(config, device, bench.warmup_steps, bench.timed_steps,
                                      peak, compiler_options(bench, device))
  vidiff_row = {'variant': f'{REFERENCE}, patch 1x1x1', 'model_patch': [1, 1, 1],
                'params': train.count_params(state.params),
                'backbone_params': backbone_params(state.params), **row}
  del state
  peer = bench_peer.step_measurement(config.model.channels, config.model.text.width,
                                     bench.batch_size, bench.frames, bench.resolution,
                                     bench.warmup_steps, bench.timed_steps, peak)
  return {'size': size, 'vidiff': vidiff_row, 'peer': peer}


def width_row(bench, width: int, device, peak) -> dict:
  """The train-step row of the first size's WIDTH_VARIANT at `width` (its depth and head dim
  kept), with 'variant', 'size', 'width', 'params'."""
  size = bench.sizes[0]
  config = bench_configs.train_config(bench, WIDTH_VARIANT, size)
  head_dim = config.model.width // config.model.num_heads
  if width % head_dim:
    raise ValueError(f'bench width_sweep: {width} is not a multiple of the head dim {head_dim}.')
  config.model.update(width=width, num_heads=width // head_dim, cond_dim=width)
  row, _, state, _ = step_measurement(config, device, bench.warmup_steps, bench.timed_steps,
                                      peak, compiler_options(bench, device))
  return {'variant': WIDTH_VARIANT, 'size': size, 'width': width,
          'params': train.count_params(state.params), **row}


def job_count(bench) -> int:
  """Progress-bar units: per size and variant a train step, sampling and each sweep point,
  plus the quality runs and the peer."""
  per_variant = 2 + len(bench.frames_sweep) + len(bench.resolution_sweep)
  quality = len(bench.quality.variants) if bench.quality.seconds > 0 else 0
  return (len(bench.sizes) * len(bench.variants) * per_variant + quality + int(bench.peer) +
          len(bench.width_sweep))


def run(bench, out, progress: bool = True) -> dict:
  """Measures everything of preset `bench` and writes the outputs to `out`; returns the record."""
  out = epath.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  if bench.quality.seconds > 0 and bench.quality.video_metrics:
    i3d.weights_path()  # a UserError now, not after every measurement, if FVD cannot run
  started = time.perf_counter()
  device = jax.devices()[0]
  peak, peak_source = device_peak(device, bench.matmul_n)
  record = {'schema_version': SCHEMA_VERSION, 'preset': bench.preset,
            'config_hash': config_hash(bench), 'device': device_info(device),
            'peak_flops': peak, 'peak_source': peak_source, 'bench_config': bench.to_dict(),
            'variants': [], 'sweeps': [], 'scaling': [], 'quality': [], 'peer': None,
            'width_sweep': []}
  bar = tqdm(total=job_count(bench), desc='bench', disable=not progress, dynamic_ncols=True)
  for size in bench.sizes:  # every variant's train step first, then the sweeps
    for variant in bench.variants:
      record['variants'].append(variant_row(bench, variant, size, device, peak, bar, record))
      save_partial(out, record, started)
  measured = {}  # sweep rows by (variant, size, frames, resolution, batch size)
  for size in bench.sizes:
    for variant in bench.variants:
      for axis in ('frames', 'resolution'):
        rows = sweep_rows(bench, variant, size, axis, device, peak, bar, measured)
        record['sweeps'] += rows
        record['scaling'].append({'variant': variant, 'size': size, 'sweep': axis,
                                  **growth(rows, axis)})
      save_partial(out, record, started)
  for width in bench.width_sweep:
    bar.set_description(f'{WIDTH_VARIANT} width={width}')
    record['width_sweep'].append(width_row(bench, width, device, peak))
    bar.update(1)
  if bench.peer:
    bar.set_description(f'peer: {bench_peer.PACKAGE}')
    record['peer'] = peer_comparison(bench, device, peak)
    bar.update(1)
  bar.close()
  save_partial(out, record, started)
  return record


def save_partial(out, record: dict, started: float) -> None:
  """Writes the outputs measured so far (a run cut short keeps them)."""
  record['wall_s'] = time.perf_counter() - started
  write_outputs(out, record)


def variant_row(bench, variant: str, size: str, device, peak, bar, record: dict) -> dict:
  """{'variant', 'family', 'size', 'params', 'model', 'train_step', 'sampling'} of one variant;
  also runs its quality training when the preset has one. A train step that runs out of device
  memory gives train_step {'error': 'out of memory'}, no sampling and no params."""
  config = bench_configs.train_config(bench, variant, size)
  out = {'variant': variant, 'family': bench_variants.family(variant), 'size': size,
         'params': None, 'model': config.model.to_dict(), 'sampling': None}
  bar.set_description(f'{variant}/{size} train step')
  try:
    row, setup, state, compiled = step_measurement(
        config, device, bench.warmup_steps, bench.timed_steps, peak,
        compiler_options(bench, device))
  except Exception as e:  # pylint: disable=broad-except
    if not is_out_of_memory(e):
      raise
    bar.update(2)
    return {**out, 'train_step': {'error': 'out of memory'}}
  bar.update(1)
  bar.set_description(f'{variant}/{size} sampling')
  out['sampling'] = sampling_measurement(setup, state.ema_params, bench.sample_videos,
                                         bench.sample_steps, bench.sample_reference_steps)
  bar.update(1)
  if (bench.quality.seconds > 0 and variant in bench.quality.variants
      and size == bench.sizes[0]):
    bar.set_description(f'{variant}/{size} quality ({bench.quality.seconds:g} s)')
    record['quality'].append(quality_row(bench, variant, size, setup, compiled, row))
    bar.update(1)
  return {**out, 'params': train.count_params(state.params), 'train_step': row}


# ---- Tables ------------------------------------------------------------------------------------


def _fmt(value, spec: str = '.3g') -> str:
  return '-' if value is None else format(value, spec)


def _reference(record: dict, size: str) -> dict | None:
  return next((v for v in record['variants'] if v['size'] == size and v['variant'] == REFERENCE),
              None)


def variant_table(record: dict, size: str) -> str:
  """Markdown: one row per variant of `size`: params, compile, step, throughput, FLOPs, MFU,
  memory, sampling; then the same as ratios to REFERENCE."""
  rows = [v for v in record['variants'] if v['size'] == size]
  if not rows:
    return 'Not measured (yet).'
  ref = _reference(record, size) or rows[0]
  at = f's/video @{record["bench_config"]["sample_reference_steps"]} steps'
  lines = ['| variant | params | compile s | step ms | clips/s | GFLOP/step | TFLOP/s | MFU % | '
           f'peak MiB | {at} |', '|---|' + '---:|' * 9]
  for v in rows:
    s, p = v['train_step'], v['sampling']
    if 'error' in s:
      lines.append(f'| {v["variant"]} | {s["error"]} |' + ' - |' * 8)
      continue
    key = next(k for k in p if k.startswith('s_per_video_at_'))
    gflops = s['flops_per_step'] / 1e9 if s['flops_per_step'] else None
    mfu = 100 * s['mfu'] if s['mfu'] else None
    lines.append(f'| {v["variant"]} | {v["params"] / 1e6:.2f}M | {s["compile_s"]:.1f} | '
                 f'{s["step_ms"]:.1f} | {s["clips_per_s"]:.3g} | {_fmt(gflops)} | '
                 f'{_fmt(s["tflops_per_s"])} | {_fmt(mfu, ".2g")} | {s["peak_mib"]:.1f} | '
                 f'{p[key]:.3g} |')
  lines += ['', f'Ratios to {ref["variant"]} (same size):', '',
            '| variant | params | step time | GFLOP/step | peak MiB | sampling s/video |',
            '|---|---:|---:|---:|---:|---:|']
  ratio = lambda a, b: _fmt(a / b if a and b else None, '.2f')
  for v in rows:
    s, r = v['train_step'], ref['train_step']
    if 'error' in s or 'error' in r:
      lines.append(f'| {v["variant"]} |' + ' - |' * 5)
      continue
    lines.append(f'| {v["variant"]} | {ratio(v["params"], ref["params"])} | '
                 f'{ratio(s["step_ms"], r["step_ms"])} | '
                 f'{ratio(s["flops_per_step"], r["flops_per_step"])} | '
                 f'{ratio(s["peak_mib"], r["peak_mib"])} | '
                 f'{ratio(v["sampling"]["s_per_video"], ref["sampling"]["s_per_video"])} |')
  return '\n'.join(lines)


def sweep_table(record: dict, size: str, axis: str) -> str:
  """Markdown: step ms and peak MiB per variant at each sweep point, then growth last/first and
  the log-log exponent."""
  rows = [r for r in record['sweeps'] if r['size'] == size and r['sweep'] == axis]
  points = list(dict.fromkeys(r[axis] for r in rows))
  names = list(dict.fromkeys(r['variant'] for r in rows))
  at = {(r['variant'], r[axis]): r for r in rows}
  label = 'T' if axis == 'frames' else 'res'
  per = 'T' if axis == 'frames' else 'pixels'
  head = ([f'step ms {label}={p}' for p in points] + [f'MiB {label}={p}' for p in points] +
          ['step x', f'step exp. vs {per}', 'MiB x', f'MiB exp. vs {per}'])
  lines = ['| variant | ' + ' | '.join(head) + ' |', '|---|' + '---:|' * len(head)]
  for name in names:
    g = next(s for s in record['scaling']
             if s['variant'] == name and s['size'] == size and s['sweep'] == axis)
    cells = [_fmt(at[name, p].get('step_ms'), '.1f') for p in points]
    cells += [_fmt(at[name, p].get('peak_mib'), '.1f') for p in points]
    cells += [_fmt(g.get('step_ms_ratio'), '.2f'), _fmt(g.get('step_ms_exponent'), '.2f'),
              _fmt(g.get('peak_mib_ratio'), '.2f'), _fmt(g.get('peak_mib_exponent'), '.2f')]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def quality_table(record: dict) -> str:
  """Markdown: one row per trained variant: steps, seconds, FLOPs, losses, scores; then the
  real clips' own warping error and flow consistency (the same for every row), if scored."""
  rows = record['quality']
  keys = sorted({k for r in rows for k in r['scores'] if not k.startswith('eval/real_')})
  head = ['variant', 'steps', 'train s', 'TFLOP', 'train loss', 'eval loss',
          *(k.split('/', 1)[1] for k in keys)]
  lines = ['| ' + ' | '.join(head) + ' |', '|---|' + '---:|' * (len(head) - 1)]
  for r in rows:
    cells = [r['variant'], str(r['steps']), f'{r["train_s"]:.0f}', _fmt(r['flops'] / 1e12),
             _fmt(r['train_loss'], '.4f'), _fmt(r['eval_loss'], '.4f'),
             *(_fmt(r['scores'].get(k)) for k in keys)]
    lines.append('| ' + ' | '.join(cells) + ' |')
  real = {k.split('/real_', 1)[1]: v for k, v in rows[0]['scores'].items() if '/real_' in k}
  if real:
    lines += ['', 'The held-out real clips themselves: ' +
              ', '.join(f'{k} {_fmt(v)}' for k, v in sorted(real.items())) + '.']
  return '\n'.join(lines)


def width_table(record: dict) -> str:
  """Markdown: WIDTH_VARIANT's train step at its own width (the variant row) and at each
  width of the sweep."""
  base = next(v for v in record['variants']
              if v['variant'] == WIDTH_VARIANT and v['size'] == record['width_sweep'][0]['size'])
  rows = [{'width': base['model']['width'], 'params': base['params'], **base['train_step']},
          *record['width_sweep']]
  lines = ['| width | params | step ms | GFLOP/step | TFLOP/s | MFU % |', '|---:|' + '---:|' * 5]
  for r in rows:
    gflops = r['flops_per_step'] / 1e9 if r['flops_per_step'] else None
    lines.append(f'| {r["width"]} | {r["params"] / 1e6:.2f}M | {r["step_ms"]:.1f} | '
                 f'{_fmt(gflops)} | {_fmt(r["tflops_per_s"])} | '
                 f'{_fmt(100 * r["mfu"] if r["mfu"] else None, ".2g")} |')
  return '\n'.join(lines)


def peer_table(record: dict) -> str:
  """Markdown: vidiff's U-Net against the torch peer's train step, then their ratios."""
  peer = record['peer']
  if 'skipped' in peer:
    return f'Skipped: {peer["skipped"]}.'
  v, p = peer['vidiff'], peer['peer']
  lines = ['| train step | params (no prompt encoder) | step ms | clips/s | GFLOP/step | TFLOP/s | '
           'MFU % |', '|---|' + '---:|' * 6]
  for name, r, params in ((f'vidiff {v["variant"]}', v, v['backbone_params']),
                          (f'{p["package"]} {p["version"]} (torch {p["torch_version"]}, '
                           f'{p["threads"]} threads)', p, p['params'])):
    gflops = r['flops_per_step'] / 1e9 if r['flops_per_step'] else None
    lines.append(f'| {name} | {params / 1e6:.2f}M | {r["step_ms"]:.1f} | {r["clips_per_s"]:.3g} | '
                 f'{_fmt(gflops)} | {_fmt(r["tflops_per_s"])} | '
                 f'{_fmt(100 * r["mfu"] if r["mfu"] else None, ".2g")} |')
  lines += ['', f'vidiff / peer: step time {v["step_ms"] / p["step_ms"]:.2f}, clips/s '
            f'{v["clips_per_s"] / p["clips_per_s"]:.2f}. FLOPs: vidiff\'s are XLA\'s cost analysis '
            "of the whole step, the peer's torch's FlopCounterMode (matmuls and convolutions)."]
  return '\n'.join(lines)


def markdown(record: dict) -> str:
  """All tables of the record under a title naming device, jax version and config hash."""
  d, b = record['device'], record['bench_config']
  peak = record['peak_flops']
  lines = [f'# vidiff bench, preset {record["preset"]}', '',
           f'{d["device_kind"]} ({d["platform"]}), jax {d["jax_version"]}, config hash '
           f'{record["config_hash"]}, peak {_fmt(peak / 1e12 if peak else None)} TFLOP/s '
           f'({record["peak_source"]}), {record["wall_s"]:.0f} s in all.', '']
  for size in b['sizes']:
    lines += [f'## Size {size}: train step ({b["batch_size"]} clips of {b["frames"]}x'
              f'{b["resolution"]}x{b["resolution"]}, {b["dtype"]}) and sampling (DDIM '
              f'{b["sample_steps"]} steps, guidance {SAMPLE_GUIDANCE:g}, scaled)', '',
              variant_table(record, size), '']
    if b['frames_sweep']:
      lines += [f'### Frames sweep at {b["sweep_resolution"]}x{b["sweep_resolution"]}, '
                f'{b["sweep_batch_size"]} clip(s), forward + backward', '',
                sweep_table(record, size, 'frames'), '']
    if b['resolution_sweep']:
      lines += [f'### Resolution sweep at T={b["sweep_frames"]}, {b["sweep_batch_size"]} '
                'clip(s), forward + backward', '', sweep_table(record, size, 'resolution'), '']
  if record['width_sweep']:
    lines += [f'## MFU against width: {WIDTH_VARIANT} train step (size {b["sizes"][0]}, its depth '
              'and head dim)', '', width_table(record), '']
  if record['quality']:
    q = b['quality']
    lines += [f'## Quality at equal wall-clock ({q["seconds"]:g} s of train steps each, size '
              f'{b["sizes"][0]}, synthetic data)', '', quality_table(record), '']
    if not q['video_metrics']:
      lines += ['FVD / warping error are left to the `gpu` preset (quality.video_metrics).', '']
  else:
    lines += ['Quality at equal compute: not in this preset (quality.seconds = 0); on CPU run '
              '`--preset=cpu-quality`.', '']
  if record['peer'] is not None:
    lines += [f'## Peer: the same U-Net in video-diffusion-pytorch ({b["batch_size"]} clips of '
              f'{b["frames"]}x{b["resolution"]}x{b["resolution"]}, float32, this CPU)', '',
              peer_table(record), '']
  return '\n'.join(lines)


# ---- Plots and files ---------------------------------------------------------------------------


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path) -> None:
  fig.tight_layout()
  with epath.Path(path).open('wb') as f:
    fig.savefig(f, format='png', dpi=100)


def plot_scaling(record: dict, axis: str, path) -> None:
  """Forward + backward ms and peak MiB against the sweep's axis (log-log), a line per variant
  and size."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for (name, size) in dict.fromkeys((r['variant'], r['size']) for r in record['sweeps']):
    rows = [r for r in record['sweeps'] if r['variant'] == name and r['size'] == size
            and r['sweep'] == axis and 'error' not in r]
    for ax, metric in zip(axes, ('step_ms', 'peak_mib')):
      ax.plot([r[axis] for r in rows], [r[metric] for r in rows], marker='o',
              label=f'{name} ({size})')
  for ax, label in zip(axes, ('forward + backward ms', 'peak MiB per device')):
    ax.set_xscale('log', base=2)
    ax.set_yscale('log')
    ax.set_xlabel('frames T' if axis == 'frames' else 'resolution')
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, which='both')
  axes[0].legend(fontsize=8)
  _save(fig, path)
  plt.close(fig)


def plot_loss_vs_flops(record: dict, path) -> None:
  """Train loss against FLOPs spent per trained variant: each step faint, and its mean over
  windows of 5% of the steps."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 3.8))
  for r in record['quality']:
    flops = np.array([p['flops'] for p in r['curve']])
    loss = np.array([p['train_loss'] for p in r['curve']])
    line, = ax.plot(flops, loss, alpha=0.2, linewidth=0.8)
    window = max(1, len(loss) // 20)
    smooth = np.convolve(loss, np.ones(window) / window, mode='valid')
    ax.plot(flops[window - 1:], smooth, color=line.get_color(), linewidth=2,
            label=f'{r["variant"]} ({r["size"]})')
  ax.set_xlabel('training FLOPs')
  ax.set_ylabel('train loss')
  ax.set_yscale('log')
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize=8)
  _save(fig, path)
  plt.close(fig)


def finite_or_none(value):
  """The record with NaN/inf floats as None (JSON null), so bench.json is strict JSON."""
  if isinstance(value, dict):
    return {k: finite_or_none(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite_or_none(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  return value


def write_outputs(out, record: dict) -> None:
  """bench.json, bench.md and the PNG plots into `out`."""
  out = epath.Path(out)
  (out / 'bench.json').write_text(json.dumps(finite_or_none(record), indent=1,
                                             allow_nan=False) + '\n')
  (out / 'bench.md').write_text(markdown(record))
  for axis in ('frames', 'resolution'):
    if any(r['sweep'] == axis for r in record['sweeps']):
      plot_scaling(record, axis, out / f'scaling_{axis}.png')
  if record['quality']:
    plot_loss_vs_flops(record, out / 'loss_vs_flops.png')


def main(argv):
  del argv
  bench = bench_configs.get_config(FLAGS.preset)
  record = run(bench, FLAGS.out)
  metric_writer.say(markdown(record) + f'\n-> {FLAGS.out}/bench.json, bench.md, *.png')


if __name__ == '__main__':
  define_flags()
  cli.run(main)
