r"""Input-pipeline benchmark: clips/s the Grain pipeline delivers from mp4 files against clips/s
the train steps consume, measured one after the other on the same machine.

  python -m vidiff.data.bench [--out=DIR] [--nobase] [--videos=DIR] [--quick]

1. Test videos: `--num_videos` mp4 files (libx264 at imageio-ffmpeg's defaults, yuv420p, 30 fps,
   one keyframe every 250 frames, so a clip decodes from the video's start) of `--video_frames`
   frames at `--video_size`, cached in a temp folder. Content: the synthetic dataset's shapes
   over a panning 1/f-noise texture with sensor noise, so the codec does real work (about the
   bitrate of a real 240x320 clip). `--videos=DIR` measures a folder of your own instead.
   "prepared": the same videos re-encoded as `build_tfds --short_side=<clip resolution>
   --keyframe_every=16` stores them (cached too), read by the same pipeline.
2. Pipeline rate: `pipeline.train_iterator` with data.source='folder' for clips of
   `--num_frames` x `--resolution`^2 at `--frame_stride` (and at each train step's own clip
   shape), per `--settings` WORKERS:THREADS (data.workers, data.num_threads): clips/s over
   `--seconds` after 3 warm-up batches (Grain workers start during them).
3. Consumption rate: the quickstart train steps (unet3d, st_transformer) and (unless
   `--nobase`) the base-size U-Net at the big clip shape with batch `--base_batch`: compiled
   with `train.compile_train_step`, clips/s over `--steps` steps after a warm-up step. A step
   whose buffers do not fit in memory is not run: its time is estimated as FLOPs / peak FLOP/s
   (on 2 CPU cores with 23 GB the base U-Net at 16x128x128 needs ~126 GB, so it is estimated;
   the estimate is a lower bound on its time, so its ratio is a lower bound too).
4. Per-clip costs: one clip at a time, the ms of opening the file, decoding up to the clip's
   last frame, converting (RGB + resize) its frames, and the whole clip sampler.

The table gives each pipeline row's clips/s over each train step's, for steps whose clips are no
bigger (frames, height, width, span) than the pipeline's; the pipeline must deliver >= 5x what a
step consumes (`TARGET`). Both run alone here: in training they share the cores.
"""

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
import zlib

import av
import jax
import numpy as np
from absl import flags
from etils import epath
from tqdm import tqdm

from configs import quickstart
from vidiff import cli, perf, sharding, train, video_io
from vidiff.data import decode, pipeline, reencode, synthetic, transforms, video_folder
from vidiff.errors import UserError, check

FLAGS = flags.FLAGS
TARGET = 5.  # the pipeline must deliver at least this many times what a train step consumes
FPS = 30
CACHE_VERSION = 1  # bump when the test videos change
SLOW_STEP_S = 20.  # a first train step this slow is timed alone


@dataclasses.dataclass(frozen=True)
class Clip:
  """What a train batch holds per example: `frames` x `resolution`^2, every `stride`-th frame."""
  frames: int
  resolution: int
  stride: int

  @property
  def span(self) -> int:
    return transforms.clip_span(self.frames, self.stride)

  def __str__(self) -> str:
    return f'{self.frames}x{self.resolution}x{self.resolution} /{self.stride}'

  def fits_in(self, other: 'Clip') -> bool:
    """No bigger than `other` in frames, pixels and span: `other`'s pipeline can feed it."""
    return (self.frames <= other.frames and self.resolution <= other.resolution
            and self.span <= other.span)


@dataclasses.dataclass(frozen=True)
class Plan:
  """What one bench run measures: the defaults, or `quick_plan()`; flags override fields."""
  num_videos: int = 24
  video_frames: int = 120
  video_size: tuple[int, int] = (240, 320)  # (height, width)
  clip: Clip = Clip(16, 128, 4)
  settings: tuple[tuple[int, int], ...] = ((0, 1), (0, 4), (2, 1), (2, 2))  # (workers, threads)
  batch_size: int = 4  # pipeline batch (clips)
  warmup: int = 3  # pipeline batches before timing
  seconds: float = 6.  # timed per pipeline row
  steps: tuple[str, ...] = ('unet3d', 'st_transformer')  # quickstart.get_config arguments
  base: bool = True  # also the base-size U-Net at `clip`
  base_batch: int = 1
  timed_steps: int = 5  # train steps timed after one warm-up step
  cost_clips: int = 20  # clips timed stage by stage (`clip_costs`)
  videos: str | None = None  # a folder of the user's videos instead of the generated ones
  # Also read copies re-encoded as `build_tfds --short_side=<clip resolution>
  # --keyframe_every=<this>` would store them (0: not).
  prepared_keyframe_every: int = 16
  progress: bool = True


def quick_plan(**overrides) -> Plan:
  """Tiny videos and clips, the tiny ST-Transformer's step (the quickest to compile), no base
  step: the whole bench in ~30 s, mostly compiling (what tests run)."""
  return dataclasses.replace(Plan(
      num_videos=4, video_frames=32, video_size=(48, 64), clip=Clip(4, 32, 4),
      settings=((0, 2), (2, 1)), batch_size=8, warmup=1, seconds=0.5,
      steps=('st_transformer,tiny',), base=False, timed_steps=2, cost_clips=3,
      prepared_keyframe_every=4),
      **overrides)


# ---------------------------------------------------------------------------------------------
# Test videos.


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """uint8 [height, width, 3]: periodic noise with a natural image's 1/f spectrum (a grey
  pattern with weaker colour), so rolling it pans without a seam."""
  fy, fx = np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :]
  amplitude = 1. / np.maximum(np.hypot(fy, fx), 1. / max(height, width)) ** 0.9
  spectrum = rng.normal(size=(4, *amplitude.shape)) + 1j * rng.normal(size=(4, *amplitude.shape))
  noise = np.fft.irfft2(spectrum * amplitude, s=(height, width))
  noise = (noise - noise.mean((1, 2), keepdims=True)) / noise.std((1, 2), keepdims=True)
  rgb = noise[0][..., None] + 0.6 * noise[1:].transpose(1, 2, 0)
  return np.clip(110 + 50 * rgb, 0, 255).astype(np.uint8)


def textured_video(source: synthetic.SyntheticVideos, index: int,
                   size: tuple[int, int]) -> tuple[np.ndarray, str]:
  """(uint8 [T, H, W, 3], caption): video `index` of `source` (rendered at max(H, W), centre
  cropped to `size`) over a texture panning 0.5-2 px a frame, with sensor noise (sigma 3)."""
  height, width = size
  example = source.read(index, np.arange(source.config.length))
  side = source.config.resolution
  top, left = (side - height) // 2, (side - width) // 2
  shapes = example['video'][:, top:top + height, left:left + width]
  rng = np.random.default_rng([source.seed, index])
  background = texture(rng, height, width)
  velocity = rng.uniform(0.5, 2., 2) * rng.choice([-1, 1], 2)
  frames = []
  for t, shape_frame in enumerate(shapes):
    panned = np.roll(background, tuple(np.round(velocity * t).astype(int)), axis=(0, 1))
    frame = np.where(shape_frame.any(-1, keepdims=True), shape_frame, panned).astype(np.int16)
    frames.append(np.clip(frame + rng.normal(0, 3, frame.shape).round(), 0, 255).astype(np.uint8))
  return np.stack(frames), example['caption']


def videos_folder(plan: Plan, seed: int = 0) -> str:
  """The folder of the plan's test videos (`plan.videos` if given, else generated once into a
  temp cache folder): N.mp4 files and captions.jsonl."""
  if plan.videos:
    check(os.path.isdir(plan.videos), f'--videos={plan.videos} is not a directory; pass a folder '
                                      f'of videos, or leave --videos out to generate some.')
    return plan.videos
  height, width = plan.video_size
  check(height % 16 == 0 and width % 16 == 0 and min(height, width) >= 16,
        f'--video_size={height}x{width}: use multiples of 16 (the codec\'s macroblocks).')
  check(plan.num_videos >= 1 and plan.video_frames >= 2,
        f'--num_videos={plan.num_videos} and --video_frames={plan.video_frames}: need at least '
        f'1 video of 2 frames.')
  name = f'v{CACHE_VERSION}_{plan.num_videos}x{plan.video_frames}x{height}x{width}_seed{seed}'
  folder = epath.Path(tempfile.gettempdir()) / 'vidiff_data_bench' / name
  captions = folder / video_folder.CAPTIONS
  if captions.exists():
    return str(folder)
  config = synthetic.SyntheticConfig(resolution=max(height, width), length=plan.video_frames,
                                     max_objects=2, motion='bounce')
  source = synthetic.SyntheticVideos(plan.num_videos, seed, config)
  folder.parent.mkdir(parents=True, exist_ok=True)
  partial = epath.Path(tempfile.mkdtemp(prefix=f'.{name}.', dir=folder.parent))
  rows = []
  for i in tqdm(range(plan.num_videos), desc='write test videos', disable=not plan.progress,
                dynamic_ncols=True):
    video, caption = textured_video(source, i, (height, width))
    video_io.write_video(partial / f'{i:03d}.mp4', video, fps=FPS)
    rows.append(json.dumps({'file': f'{i:03d}.mp4', 'caption': caption}))
  (partial / video_folder.CAPTIONS).write_text('\n'.join(rows) + '\n')
  try:
    os.rename(partial, folder)  # atomic: a folder that exists is complete
  except OSError:  # another run (or an interrupted one) got there first
    shutil.rmtree(partial, ignore_errors=True)
    check(captions.exists(), f'{folder} exists but is incomplete; delete it and run again.')
  return str(folder)


def folder_summary(folder: str) -> dict:
  """{'path', 'videos', 'frames' (mean), 'size' (the first video's 'HxW'), 'fps', 'kbps' (mean)}."""
  source = video_folder.VideoFolder(folder)
  frames = [source.num_frames(i) for i in range(len(source))]
  seconds = sum(n / (source.fps(i) or FPS) for i, n in enumerate(frames))
  size = sum(os.path.getsize(p) for p in source.paths)
  height, width = source.frame_size(0)
  return {'path': folder, 'videos': len(source), 'frames': round(float(np.mean(frames)), 1),
          'size': f'{height}x{width}', 'fps': round(source.fps(0), 2),
          'kbps': round(8 * size / seconds / 1e3, 1)}


def prepared_folder(folder: str, short_side: int, keyframe_every: int) -> str:
  """A cached copy of `folder`'s videos re-encoded by `reencode.reencoded` (what
  `build_tfds --short_side --keyframe_every` stores), with the same captions.jsonl."""
  source = video_folder.VideoFolder(folder)
  tag = f'{epath.Path(folder).name}_{zlib.crc32(os.path.abspath(folder).encode()):08x}'
  name = f'{tag}_s{short_side}_k{keyframe_every}_v{reencode.VERSION}'
  target = epath.Path(tempfile.gettempdir()) / 'vidiff_data_bench' / 'prepared' / name
  if (target / video_folder.CAPTIONS).exists():
    return str(target)
  target.parent.mkdir(parents=True, exist_ok=True)
  partial = epath.Path(tempfile.mkdtemp(prefix=f'.{name}.', dir=target.parent))
  rows = []
  for i, path in enumerate(source.paths):
    file = f'{i:04d}.mp4'
    video_io.write_bytes(partial / file, reencode.reencoded(path, short_side, keyframe_every))
    rows.append(json.dumps({'file': file, 'caption': source.captions[i]}))
  (partial / video_folder.CAPTIONS).write_text('\n'.join(rows) + '\n')
  try:
    os.rename(partial, target)
  except OSError:
    shutil.rmtree(partial, ignore_errors=True)
  return str(target)


# ---------------------------------------------------------------------------------------------
# Rates.


def data_config(folder: str, clip: Clip, workers: int, threads: int):
  """The quickstart's data config reading clips of `clip` from the video `folder` (clips only:
  its image batches are the synthetic grammar's)."""
  data = quickstart.get_config('images=0').data
  data.update(source='folder', num_frames=clip.frames, resolution=clip.resolution,
              frame_stride=clip.stride, workers=workers, num_threads=threads)
  data.folder.path = folder
  return data


def pipeline_rate(folder: str, clip: Clip, workers: int, threads: int, plan: Plan) -> dict:
  """{'clip', 'workers', 'threads', 'clips', 'seconds', 'clips_per_s'}: the train iterator's
  rate over `plan.seconds` after `plan.warmup` batches (worker start-up is in the warm-up)."""
  text = quickstart.get_config().model.text
  iterator = pipeline.train_iterator(data_config(folder, clip, workers, threads), text,
                                     plan.batch_size)
  try:
    for _ in range(max(1, plan.warmup)):
      batch = next(iterator)
    expected = (plan.batch_size, clip.frames, clip.resolution, clip.resolution, 3)
    assert batch['video'].shape == expected, (batch['video'].shape, expected)
    count, start = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - start < plan.seconds:
      count += len(next(iterator)['video'])
    seconds = time.perf_counter() - start
  finally:
    if hasattr(iterator, 'close'):
      iterator.close()
  return {'clip': str(clip), 'workers': workers, 'threads': threads, 'clips': count,
          'seconds': round(seconds, 2), 'clips_per_s': count / seconds}


def clip_costs(folder: str, clip: Clip, count: int, seed: int = 0) -> dict:
  """Where one clip's time goes, one clip at a time in this process: mean ms per clip over
  `count` random clips of 'open' (open the file, decode and convert its first frame), 'decode'
  (from the keyframe before the clip to its last frame), 'convert' (RGB + resize of the clip's
  frames), 'sampler' (all of `ClipSampler`: the above, crop and tokenize, for other random
  clips), and 'frames_decoded' / 'frames_used' per clip. Differences of separate timings: noisy."""
  source = video_folder.VideoFolder(folder, min_frames=clip.span)
  data = data_config(folder, clip, 0, 1)
  shape = (clip.frames, clip.resolution, clip.resolution)
  sampler = pipeline.make_sampler(data, quickstart.get_config().model.text, source, 'train', shape)
  rng = np.random.default_rng(seed)
  times, decoded = np.zeros(4), 0
  for _ in range(count):
    i = int(rng.integers(len(source)))
    path, info = source.paths[i], source.probes[i]
    start = int(rng.integers(0, info.num_frames - clip.span + 1))
    frames = transforms.clip_indices(clip.frames, clip.stride, start)
    size = transforms.cover_size(info.size, shape[1:])
    calls = (lambda: decode.read_frames(path, info, [0]),
             lambda: decode.read_frames(path, info, [start, frames[-1]]),
             lambda: decode.read_frames(path, info, frames, None if size == info.size else size),
             lambda: sampler(i, rng))
    for k, call in enumerate(calls):
      begin = time.perf_counter()
      call()
      times[k] += time.perf_counter() - begin
    decoded += frames[-1] + 1 - keyframe_before(path, info, start)
  first, to_last, clip_s, sampler_s = (float(t) for t in times * 1e3 / count)
  return {'clip': str(clip), 'open': first, 'decode': to_last - first, 'convert': clip_s - to_last,
          'sampler': sampler_s, 'frames_decoded': float(decoded) / count,
          'frames_used': clip.frames}


def keyframe_before(path: str, info: decode.Probe, frame: int) -> int:
  """The display index of the last keyframe at or before `frame` (where decoding it starts)."""
  with av.open(path) as container:
    stream = container.streams.video[0]
    keys = [p.pts for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
  if info.pts is None or not keys:
    return 0
  starts = np.searchsorted(info.pts, np.sort(keys))
  return int(starts[starts <= frame].max(initial=0))


def step_configs(plan: Plan) -> dict[str, object]:
  """{row name: train config}: the quickstart steps as configured, and with `plan.base` the
  base-size U-Net at `plan.clip` with batch `plan.base_batch`."""
  configs = {f'{arg} step': quickstart.get_config(arg) for arg in plan.steps}
  if plan.base:
    config = quickstart.get_config('unet3d,base')
    config.data.update(num_frames=plan.clip.frames, resolution=plan.clip.resolution,
                       frame_stride=plan.clip.stride)
    config.train.batch_size = plan.base_batch
    configs['unet3d,base step'] = config
  return configs


def clip_of(config) -> Clip:
  d = config.data
  return Clip(d.num_frames, d.resolution, d.frame_stride)


def step_rate(name: str, config, timed_steps: int) -> dict:
  """{'name', 'clip', 'batch_size', 'devices', 'compile_s', 'peak_mib', 'step_s', 'clips_per_s',
  'estimate'} of the compiled train step over `timed_steps` steps (host batch -> mesh included,
  as in training) after one warm-up step (a step slower than SLOW_STEP_S: that step alone), on
  as many devices as divide the batch.

  A step whose buffers (XLA's memory analysis) do not fit in the devices' memory is not run:
  'estimate' then says how step_s = FLOPs / peak FLOP/s (`perf.peak_flops`: on CPU a measured
  f32 matmul) was found, a lower bound on the real time (else 'estimate' is None)."""
  batch_size = config.train.batch_size
  devices = jax.devices()[:math.gcd(batch_size, jax.device_count())]
  start = time.perf_counter()
  setup = train.make_setup(config, devices)
  step = train.compile_train_step(setup)
  row = {'name': name, 'clip': str(clip_of(config)), 'batch_size': batch_size,
         'devices': len(devices), 'compile_s': round(time.perf_counter() - start, 1),
         'peak_mib': round(perf.step_memory_mib(step)['peak'], 1)}
  limit = memory_limit_mib(devices)
  if row['peak_mib'] > limit:
    flops, (peak, source) = perf.step_flops(step, len(devices)), perf.peak_flops(devices)
    check(bool(flops and peak), f'{name} needs {row["peak_mib"]:.0f} MiB, more than the '
                          f'{limit:.0f} MiB here, and has no FLOP count to estimate its time; '
                          f'lower --base_batch or --resolution.')
    seconds = flops / peak
    estimate = (f'needs {row["peak_mib"] / 1024:.0f} GiB > {limit / 1024:.0f} GiB here: '
                f'{flops / 1e12:.1f} TFLOP / {peak / 1e9:.0f} GFLOP/s ({source}) = '
                f'{seconds:.1f} s, a lower bound')
    return {**row, 'step_s': seconds, 'clips_per_s': batch_size / seconds, 'estimate': estimate}
  state = train.init_state(setup)
  batch = {k: np.zeros(shape, train.BATCH_DTYPES[k])
           for k, shape in train.batch_shape(config).items()}
  with setup.context():
    start = time.perf_counter()
    state, metrics = step(state, sharding.global_batch(batch, setup.batch_shardings))
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - start
    if seconds < SLOW_STEP_S:  # else the warm-up step is the measurement
      start = time.perf_counter()
      for _ in range(timed_steps):
        state, metrics = step(state, sharding.global_batch(batch, setup.batch_shardings))
      jax.block_until_ready(metrics)
      seconds = (time.perf_counter() - start) / timed_steps
  return {**row, 'step_s': seconds, 'clips_per_s': batch_size / seconds, 'estimate': None}


def memory_limit_mib(devices) -> float:
  """MiB the step may use on each of `devices`: the allocator's limit, or on CPU the host's
  available RAM shared by the (virtual) devices."""
  try:
    stats = devices[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except  (not every backend has memory stats)
    stats = {}
  if stats.get('bytes_limit'):
    return stats['bytes_limit'] / perf.MIB
  return available_ram() / perf.MIB / len(devices)


def available_ram() -> float:
  """Bytes of RAM available to a new allocation (Linux MemAvailable, else free pages)."""
  try:
    with open('/proc/meminfo') as f:
      return next(int(l.split()[1]) * 1024 for l in f if l.startswith('MemAvailable:'))
  except (OSError, StopIteration, ValueError):
    pass
  try:
    return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (ValueError, OSError):
    return float('inf')


def ratios(pipelines: list[dict], steps: list[dict], clips: dict[str, Clip]) -> list[dict]:
  """{'pipeline' (index), 'step' (name), 'ratio'} for each pipeline row and each step whose clip
  fits in the pipeline's (`clips`: clip label -> Clip)."""
  return [{'pipeline': i, 'step': s['name'], 'ratio': p['clips_per_s'] / s['clips_per_s']}
          for i, p in enumerate(pipelines) for s in steps
          if clips[s['clip']].fits_in(clips[p['clip']])]


def verdicts(pipelines: list[dict], steps: list[dict], table: list[dict]) -> list[dict]:
  """Per step: {'step', 'best_ratio', 'best' (the setting), 'ok' (best_ratio >= TARGET)}."""
  out = []
  for s in steps:
    mine = [r for r in table if r['step'] == s['name']]
    if mine:
      best = max(mine, key=lambda r: r['ratio'])
      p = pipelines[best['pipeline']]
      out.append({'step': s['name'], 'best_ratio': best['ratio'], 'ok': best['ratio'] >= TARGET,
                  'best': f'{p["videos"]} videos, {p["clip"]}, workers={p["workers"]}, '
                          f'threads={p["threads"]}'})
  return out


# ---------------------------------------------------------------------------------------------
# Report.


def markdown(report: dict) -> str:
  """The report: a title, the rates table (ratios under the target in bold), a line per step
  (its best ratio; how an estimated step time was found) and the per-clip cost table."""
  pipelines, steps, table = report['pipeline'], report['steps'], report['ratios']
  v = report['videos']
  at = {(r['pipeline'], r['step']): r['ratio'] for r in table}
  load = '' if report['load'] is None else f', load average {report["load"]:.1f} at the start'
  lines = [f'Input pipeline vs train-step consumption on {report["device"]} '
           f'({report["cpus"]} CPU cores{load}); clips are frames x height x width /frame stride, '
           f'from {v["videos"]} mp4 files of ~{v["frames"]:g} frames at {v["size"]} (HxW, '
           f'{v["fps"]:g} fps, ~{v["kbps"]:g} kbit/s) as given, and "prepared": re-encoded as '
           f'`build_tfds --short_side={report["plan"]["clip"]["resolution"]} --keyframe_every='
           f'{report["plan"]["prepared_keyframe_every"]}` stores them. '
           f'Ratio = pipeline clips/s / step clips/s, '
           f'for steps whose clips are no bigger; target >= {TARGET:g}x.', '',
           '| row | clip | batch | clips/s | ' + ' | '.join(f'/ {s["name"]}' for s in steps) + ' |',
           '|---|---|---:|---:|' + '---:|' * len(steps)]
  for i, p in enumerate(pipelines):
    cells = [_ratio_cell(at.get((i, s['name']))) for s in steps]
    lines.append(f'| pipeline, {p["videos"]}, workers={p["workers"]} threads={p["threads"]} | '
                 f'{p["clip"]} | '
                 f'{report["plan"]["batch_size"]} | {_number(p["clips_per_s"])} | '
                 + ' | '.join(cells) + ' |')
  for s in steps:
    seconds = f'{s["step_s"]:.3g} s/step' + (', estimated' if s['estimate'] else '')
    lines.append(f'| {s["name"]} ({seconds}) | {s["clip"]} | {s["batch_size"]} | '
                 f'{_number(s["clips_per_s"])} |' + ' |' * len(steps))
  lines.append('')
  for verdict in report['verdicts']:
    lines.append(f'- {verdict["step"]}: best {_number(verdict["best_ratio"])}x '
                 f'({verdict["best"]}): {"meets" if verdict["ok"] else "MISSES"} the '
                 f'{TARGET:g}x target.')
  lines += [f'- {s["name"]} not run: {s["estimate"]}.' for s in steps if s['estimate']]
  if not report['plan']['base']:
    lines.append('- base-size step left out (--base adds it).')
  return '\n'.join(lines + ['', *cost_lines(report)])


def cost_lines(report: dict) -> list[str]:
  """Markdown: ms per clip by stage (`clip_costs`) against the in-process pipeline's."""
  first = next(((p['workers'], p['threads']) for p in report['pipeline'] if not p['workers']),
               None)
  per_clip = {(p['videos'], p['clip']): 1e3 / p['clips_per_s'] for p in report['pipeline']
              if (p['workers'], p['threads']) == first}
  pipe = f'pipeline workers=0 threads={first[1]}' if first else 'pipeline'
  lines = ['Per clip, one at a time in this process (ms; differences of separate timings):', '',
           f'| videos | clip | open + 1st frame | decode to last frame (frames decoded / used) | '
           f'RGB + resize | sampler in all | {pipe} |', '|---|---|---:|---:|---:|---:|---:|']
  for c in report['costs']:
    key = (c['videos'], c['clip'])
    piped = f'{per_clip[key]:.1f}' if key in per_clip else '-'
    lines.append(f'| {c["videos"]} | {c["clip"]} | {c["open"]:.1f} | {c["decode"]:.1f} '
                 f'({c["frames_decoded"]:.0f} / {c["frames_used"]}) | {c["convert"]:.1f} | '
                 f'{c["sampler"]:.1f} | {piped} |')
  return lines


def _number(x: float) -> str:
  """3 significant digits, without exponents for rates up to millions."""
  return f'{x:.0f}' if x >= 100 else f'{x:.3g}'


def _ratio_cell(ratio: float | None) -> str:
  if ratio is None:
    return '-'
  return f'{_number(ratio)}x' if ratio >= TARGET else f'**{_number(ratio)}x**'


def run(plan: Plan) -> dict:
  """Measures everything the plan asks for: {'plan', 'device', 'cpus', 'load', 'videos',
  'pipeline', 'costs', 'steps', 'ratios', 'verdicts', 'seconds'}. 'load': the 1-minute load
  average before the timings (other busy processes make every rate here low)."""
  start = time.perf_counter()
  check(plan.videos or plan.clip.span <= plan.video_frames,
        f'a clip of {plan.clip} spans {plan.clip.span} frames but the test videos have '
        f'{plan.video_frames}; raise --video_frames or lower --num_frames / --frame_stride.')
  folders = {'as given': videos_folder(plan)}
  videos = folder_summary(folders['as given'])
  if plan.prepared_keyframe_every:
    folders['prepared'] = prepared_folder(folders['as given'], plan.clip.resolution,
                                          plan.prepared_keyframe_every)
  configs = step_configs(plan)
  shapes = list(dict.fromkeys([plan.clip, *(clip_of(c) for c in configs.values())]))
  load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
  grid = [(f, c, w, t) for f in folders for c in shapes for w, t in plan.settings]
  pipelines = [{'videos': f, **pipeline_rate(folders[f], c, w, t, plan)}
               for f, c, w, t in tqdm(grid, desc='pipeline', disable=not plan.progress,
                                      dynamic_ncols=True)]
  costs = [{'videos': f, **clip_costs(folders[f], c, plan.cost_clips)}
           for f in folders for c in shapes]
  steps = [step_rate(name, config, plan.timed_steps)
           for name, config in tqdm(configs.items(), desc='train steps',
                                    disable=not plan.progress, dynamic_ncols=True)]
  table = ratios(pipelines, steps, {str(c): c for c in shapes})
  return {'plan': _plain(dataclasses.asdict(plan)), 'device': jax.devices()[0].device_kind,
          'cpus': os.cpu_count(), 'load': load, 'videos': videos, 'pipeline': pipelines,
          'costs': costs, 'steps': steps, 'ratios': table,
          'verdicts': verdicts(pipelines, steps, table),
          'seconds': round(time.perf_counter() - start, 1)}


def _plain(value):
  """Tuples -> lists, recursively (for JSON)."""
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def write_report(out: str, report: dict, table: str) -> None:
  """Writes `out`/bench.json and `out`/bench.md."""
  path = epath.Path(out)
  path.mkdir(parents=True, exist_ok=True)
  (path / 'bench.json').write_text(json.dumps(report, indent=1) + '\n')
  (path / 'bench.md').write_text(table + '\n')


# ---------------------------------------------------------------------------------------------
# Command line.


def define_flags() -> None:
  """The command's flags (defined only when it runs, so importing the module defines none)."""
  flags.DEFINE_bool('quick', False, 'Tiny videos, clips and model: ~30 s (what tests run).')
  flags.DEFINE_string('videos', None, 'A folder of videos to read instead of generated ones.')
  flags.DEFINE_integer('num_videos', None, 'Test videos to generate (default 24).')
  flags.DEFINE_integer('video_frames', None, 'Frames per test video (default 120).')
  flags.DEFINE_string('video_size', None, 'HEIGHTxWIDTH of the test videos (default 240x320).')
  flags.DEFINE_integer('num_frames', None, 'Clip frames (default 16).')
  flags.DEFINE_integer('resolution', None, 'Clip height and width (default 128).')
  flags.DEFINE_integer('frame_stride', None, 'Clip frame stride (default 4).')
  flags.DEFINE_list('settings', None, 'Pipeline settings WORKERS:THREADS (data.workers, '
                    'data.num_threads); default 0:1,0:4,2:1,2:2.')
  flags.DEFINE_integer('batch_size', None, 'Pipeline batch size (default 4).')
  flags.DEFINE_float('seconds', None, 'Timed seconds per pipeline row (default 6).')
  flags.DEFINE_integer('steps', None, 'Timed train steps per model (default 5).')
  flags.DEFINE_bool('base', None, 'Also the base-size U-Net at the clip shape (default: on, '
                    'off with --quick): ~1.5 minutes of compilation on 2 CPU cores; a step that '
                    'does not fit in memory (as there) is not run but estimated from its FLOPs.')
  flags.DEFINE_integer('base_batch', 1, 'Batch size of the base-size step.')
  flags.DEFINE_string('out', None, 'Optional directory for bench.json and bench.md.')


def plan_from_flags() -> Plan:
  """The default (or `--quick`) plan with the flags that were given."""
  plan = quick_plan() if FLAGS.quick else Plan()
  clip = Clip(*(FLAGS[k].value if FLAGS[k].value is not None else getattr(plan.clip, a)
                for k, a in (('num_frames', 'frames'), ('resolution', 'resolution'),
                             ('frame_stride', 'stride'))))
  check(min(clip.frames, clip.resolution, clip.stride) >= 1,
        f'--num_frames, --resolution and --frame_stride must be >= 1, got {clip}.')
  overrides = {'clip': clip, 'base_batch': FLAGS.base_batch, 'videos': FLAGS.videos}
  for flag, field in (('base', 'base'), ('num_videos', 'num_videos'),
                      ('video_frames', 'video_frames'), ('batch_size', 'batch_size'),
                      ('seconds', 'seconds'), ('steps', 'timed_steps')):
    if FLAGS[flag].value is not None:
      overrides[field] = FLAGS[flag].value
  if FLAGS.video_size:
    overrides['video_size'] = size_flag(FLAGS.video_size)
  if FLAGS.settings:
    overrides['settings'] = tuple(setting_flag(s) for s in FLAGS.settings)
  plan = dataclasses.replace(plan, **overrides)
  check(plan.batch_size >= 1 and plan.seconds > 0 and plan.timed_steps >= 1 and
        plan.base_batch >= 1, '--batch_size, --seconds, --steps and --base_batch must be positive.')
  return plan


def size_flag(value: str) -> tuple[int, int]:
  """'240x320' -> (240, 320)."""
  try:
    height, width = (int(n) for n in value.lower().split('x'))
  except ValueError:
    raise UserError(f'--video_size={value}: write HEIGHTxWIDTH, e.g. 240x320.') from None
  return height, width


def setting_flag(value: str) -> tuple[int, int]:
  """'2:1' -> (workers 2, threads 1)."""
  try:
    workers, threads = (int(n) for n in value.split(':'))
  except ValueError:
    workers = threads = -1
  check(workers >= 0 and threads >= 1,
        f'--settings entry {value!r}: write WORKERS:THREADS with workers >= 0 and threads >= 1, '
        f'e.g. 0:4 or 2:1.')
  return workers, threads


def main(argv):
  del argv
  plan = plan_from_flags()
  report = run(plan)
  table = markdown(report)
  print(table)
  print(f'\n{report["seconds"]:.0f} s in all.')
  if FLAGS.out:
    write_report(FLAGS.out, report, table)
    print(f'wrote {epath.Path(FLAGS.out) / "bench.json"} and bench.md')


if __name__ == '__main__':
  define_flags()
  cli.run(main)
