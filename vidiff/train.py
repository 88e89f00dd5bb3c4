"""The train loop: sharded init, one jitted train step, eval, checkpoints, logs, samples.

    train_and_evaluate(config, workdir)

What is trained is `config.task` (`tasks`): the text-to-video denoiser ('diffusion') or the
causal video VAE ('vae'); the task supplies the model, loss, eval metrics and end-of-run
samples, everything else here is shared.

The state is created with `jax.eval_shape` -> shardings -> a jitted init with
`out_shardings`, so a model that does not fit on one device never materialises on one. The
train step is one `jit` with explicit in/out shardings and the state donated.
"""

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from etils import epath
from tqdm import tqdm

from vidiff import (checkpointing, evaluate, generate, metric_writer, optimizer, perf,
                    preemption, sharding, steps, tasks)
from vidiff.data import pipeline, prefetch
from vidiff.diffusion import objectives, schedules
from vidiff.errors import UserError, check
from vidiff.metrics import flow, i3d, jax_flow, video_metrics
from vidiff.models import remat
from vidiff.train_state import TrainState


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything derived from the config that the loop and the steps need."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  rules: tuple
  task: tasks.Task
  model: nn.Module
  tx: optax.GradientTransformation
  lr_fn: optax.Schedule
  schedule: schedules.Schedule
  state_shardings: TrainState
  batch_shardings: dict

  @contextlib.contextmanager
  def context(self):
    """Mesh + logical rules under which the model's activation constraints resolve."""
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      yield


BATCH_DTYPES = {'video': np.uint8, 'tokens': np.int32, 'depth': np.float32}


def batch_shape(config, clip: tuple[int, int, int] | None = None,
                batch_size: int | None = None) -> dict[str, tuple[int, ...]]:
  """Global shapes of the train batch arrays, for `batch_size` (default train.batch_size) clips
  of (frames, height, width) = `clip` (default: the config's data.num_frames x data.resolution
  x data.resolution); their dtypes are BATCH_DTYPES. 'depth' is there with data.depth."""
  d = config.data
  frames, height, width = clip or (d.num_frames, d.resolution, d.resolution)
  batch_size = batch_size or config.train.batch_size
  shapes = {'video': (batch_size, frames, height, width, 3),
            'tokens': (batch_size, config.model.text.max_len)}
  if d.get('depth', False):
    shapes['depth'] = shapes['video'][:4]
  return shapes


def check_config(config) -> None:
  """Validates fields that the model, data and diffusion code would otherwise choke on."""
  objectives.check_prediction(config.diffusion.prediction)
  check(0 <= config.diffusion.prompt_dropout < 1,
        f'diffusion.prompt_dropout={config.diffusion.prompt_dropout} must be in [0, 1).')
  own = config.diffusion.get('self_step')
  check(own is None or (0 <= own.prob <= 1 and 0 < own.gap <= 1),
        f'diffusion.self_step.prob={own.prob}, .gap={own.gap}: prob must be in [0, 1] and '
        f'gap in (0, 1].')
  check(config.data.num_frames >= 1 and config.data.frame_stride >= 1,
        'data.num_frames and data.frame_stride must be >= 1.')
  check(not config.diffusion.get('temporal_weight', 0.) or
        config.data.num_frames >= jax_flow.LOSS_MIN_FRAMES,
        f'diffusion.temporal_weight={config.diffusion.temporal_weight} needs clips of at least '
        f'{jax_flow.LOSS_MIN_FRAMES} frames (two flows to compare); data.num_frames is '
        f'{config.data.num_frames}: raise it or set --config.diffusion.temporal_weight=0.')
  check(config.train.batch_size >= 1, f'train.batch_size={config.train.batch_size} must be >= 1.')
  for key in ('log_every', 'eval_every', 'checkpoint_every', 'grad_accum_steps',
              'max_nonfinite_steps'):
    check(config.train[key] >= 1, f'train.{key}={config.train[key]} must be >= 1.')
  k = config.train.grad_accum_steps
  check(config.train.batch_size % k == 0,
        f'train.batch_size={config.train.batch_size} must be divisible by '
        f'train.grad_accum_steps={k} (the batch is split into that many microbatches).')
  tasks.get(config).check_shape(config, config.data.num_frames, config.data.resolution)
  check(config.get('task', 'diffusion') != 'vae' or not config.metrics.every,
        f'metrics.every={config.metrics.every}: the video metrics sample from a diffusion '
        f'model; set --config.metrics.every=0 for task={config.task!r}.')
  check_data_config(config)
  check_metrics_config(config.metrics)


def check_metrics_config(m) -> None:
  """Validates `metrics` before training starts (not at the first eval, minutes in)."""
  check(m.every >= 0, f'metrics.every={m.every} must be >= 0 (0: off).')
  if not m.every:
    return
  check(m.num_videos >= 2, f'metrics.num_videos={m.num_videos}: FVD and the FIDs compare '
                           f'feature covariances, which need at least 2 videos (16+ is usual).')
  check(m.resolution >= 32, f'metrics.resolution={m.resolution}: I3D needs frames of at least '
                            f'32 pixels (224 is the standard FVD size).')
  check(m.flow in flow.METHODS, f'metrics.flow={m.flow!r}; use one of {flow.METHODS}.')


def check_data_config(config) -> None:
  """Validates the clip-sampling fields of `data` (sources check their own paths)."""
  d = config.data
  check(d.clip_start in ('random', 'first'), f"data.clip_start={d.clip_start!r}: use 'random' or 'first'.")
  check(d.crop in ('random', 'center'), f"data.crop={d.crop!r}: use 'random' or 'center'.")
  check(d.max_frame_stride == 0 or d.max_frame_stride >= d.frame_stride,
        f'data.max_frame_stride={d.max_frame_stride} must be 0 (a fixed stride) or >= '
        f'data.frame_stride={d.frame_stride}.')
  check(d.target_fps >= 0, f'data.target_fps={d.target_fps} must be >= 0 (0: off).')
  check(d.device_prefetch >= 0, f'data.device_prefetch={d.device_prefetch} must be >= 0.')
  check(0 <= d.get('image_batches', 0.) < 1,
        f'data.image_batches={d.get("image_batches")} must be in [0, 1): the fraction of train '
        f'batches made of single frames (0: off).')
  check(not d.get('image_batches', 0.) or config.get('task', 'diffusion') == 'diffusion',
        f'data.image_batches={d.get("image_batches")} trains a pixel diffusion model on images '
        f'too; task={config.get("task")!r} does not support it: set it to 0.')
  captions = d.get('image_captions', 'full')
  check(captions in ('full', 'still'),
        f"data.image_captions={captions!r}: use 'full' or 'still'.")
  check(captions == 'full' or d.source == 'synthetic',
        f"data.image_captions='still' drops the synthetic grammar's motion phrases; "
        f"data.source={d.source!r} has free captions: use 'full'.")
  check(config.diffusion.get('image_loss_weight', 1.) > 0,
        f'diffusion.image_loss_weight={config.diffusion.get("image_loss_weight")} must be > 0 '
        f'(1: image batches weigh as much as clip batches).')
  check(config.diffusion.get('image_shift', 0.) >= 0,
        f'diffusion.image_shift={config.diffusion.get("image_shift")} must be >= 0 (0: the same '
        f'as diffusion.shift).')
  size = tuple(d.synthetic.size)  # (saved configs get the field's default: common.from_saved)
  check(len(size) == 2 and 0 < size[0] <= size[1] <= 0.5,
        f'data.synthetic.size={size} must be (min, max) object sides as fractions of '
        f'data.resolution, with 0 < min <= max <= 0.5.')
  for bucket in d.buckets:
    check(len(bucket) == 3 and all(int(n) >= 1 for n in bucket),
          f'data.buckets entry {bucket!r} must be (frames, height, width), each >= 1.')
    try:
      for side in (int(bucket[1]), int(bucket[2])):
        tasks.get(config).check_shape(config, int(bucket[0]), side, 'data.num_frames')
    except UserError as e:
      raise UserError(f'data.buckets entry {tuple(bucket)}: {e}') from None


def make_setup(config, devices: Sequence[jax.Device] | None = None) -> Setup:
  """Builds mesh, model, optimizer and shardings; raises UserError on a bad config."""
  check_config(config)
  mesh = sharding.make_mesh(config.mesh, devices)
  rules = sharding.rules(config.mesh)
  task = tasks.get(config)
  model = task.model(config)
  tx, lr_fn = optimizer.make(config.train, trainable=task.trainable)
  batch_shardings = sharding.batch_shardings(mesh, rules, depth=config.data.get('depth', False))
  for clip in pipeline.shapes(config.data):
    sharding.check_batch_divisible(batch_shape(config, clip), batch_shardings)
    sharding.check_whole_clips_per_process(batch_shape(config, clip)['video'],
                                           batch_shardings['video'])
  time_ways = sharding.ways(batch_shardings['video'], 1)
  check(not config.data.get('image_batches', 0.) or time_ways == 1,
        f'data.image_batches={config.data.image_batches}: batches of single frames cannot be '
        f'split over the {time_ways} ways of the mesh axes that split frames; set '
        f'--config.mesh.time=1 or --config.data.image_batches=0.')
  micro = config.train.batch_size // config.train.grad_accum_steps
  check(micro % sharding.ways(batch_shardings['video']) == 0,
        f'a microbatch of train.batch_size / train.grad_accum_steps = {micro} clips cannot be '
        f'split over the {sharding.ways(batch_shardings["video"])} batch shards of the mesh; '
        f'lower train.grad_accum_steps or raise train.batch_size.')
  setup = Setup(config, mesh, rules, task, model, tx, lr_fn,
                schedules.from_config(config.diffusion), None, batch_shardings)
  boxed = jax.eval_shape(functools.partial(_boxed_state, setup), jax.random.PRNGKey(0))
  return dataclasses.replace(setup, state_shardings=sharding.tree_shardings(boxed, mesh, rules))


def _boxed_state(setup: Setup, rng) -> TrainState:
  """The train state with logically-partitioned (boxed) params, for sharding inference."""
  param_rng, state_rng = jax.random.split(rng)
  params = setup.model.init(param_rng, *setup.task.init_inputs(setup.config))['params']
  return TrainState.create(params, setup.tx, state_rng)


def init_state(setup: Setup) -> TrainState:
  """Initialises the state directly into its shardings (never whole on one device), then lets
  the task fill in pretrained weights (a ControlNet's frozen base model)."""
  rng = jax.random.PRNGKey(setup.config.seed)
  init = jax.jit(lambda r: nn.meta.unbox(_boxed_state(setup, r)),
                 out_shardings=setup.state_shardings)
  with setup.context():
    state = init(rng)
  return setup.task.init_params(setup, state) if setup.task.init_params else state


def abstract_state(setup: Setup) -> TrainState:
  """ShapeDtypeStructs with shardings: the target of a checkpoint restore."""
  shapes = jax.eval_shape(lambda r: nn.meta.unbox(_boxed_state(setup, r)), jax.random.PRNGKey(0))
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, setup.state_shardings)


def prepare_workdir(workdir: str) -> epath.Path:
  """Creates `workdir`; a local workdir whose parent does not exist is a UserError."""
  check(bool(workdir), '--workdir is required: pass a directory for checkpoints, logs and samples.')
  path = epath.Path(workdir)
  if '://' not in str(workdir):
    path = epath.Path(workdir).expanduser().resolve()
    check(path.parent.exists(), f'--workdir={workdir}: the parent directory {path.parent} does '
                                f'not exist; create it first or choose another --workdir.')
    check(not path.exists() or path.is_dir(), f'--workdir={workdir} exists and is not a directory.')
  if jax.process_index() == 0:
    path.mkdir(parents=True, exist_ok=True)
  return path


def eval_loss(setup: Setup, eval_step, state: TrainState, eval_batches) -> dict[str, float]:
  """Mean eval loss (and the task's other eval metrics: 'eval/psnr', ...) over the fixed
  held-out batches."""
  with setup.context():
    results = [eval_step(state.ema_params, sharding.global_batch(b, setup.batch_shardings), i)
               for i, b in enumerate(eval_batches)]
  results = [r if isinstance(r, dict) else {'loss': r} for r in jax.device_get(results)]
  return {f'eval/{k}': float(np.mean([r[k] for r in results])) for k in results[0]}


def eval_summary(scalars: dict[str, float]) -> str:
  """'eval loss 0.1234' (+ ', psnr 27.10, ssim 0.851' when the task reports them)."""
  extra = ''.join(f', {k} {scalars[f"eval/{k}"]:.{d}f}' for k, d in (('psnr', 2), ('ssim', 3))
                  if f'eval/{k}' in scalars)
  return f'eval loss {scalars["eval/loss"]:.4f}{extra}'


def video_metrics_fn(setup: Setup):
  """None if `metrics.every` is 0, else state -> {'eval/fvd', 'eval/warping_error', ...}: samples
  one video per held-out caption with the EMA params and scores them against those clips."""
  cfg = setup.config
  if not cfg.metrics.every:
    return None
  real, captions = pipeline.held_out_clips(cfg.data, cfg.metrics.num_videos)
  i3d_params = i3d.load_params()
  options = generate.options_from_config(cfg)
  # The real clips' features and flow scores: computed at the first eval, then reused.
  reference = functools.cache(lambda: video_metrics.set_stats(
      real, i3d_params, cfg.metrics.resolution, cfg.metrics.flow))

  def scores(state):
    values, _ = evaluate.sample_and_score(setup, state.ema_params, reference(), captions,
                                          i3d_params, options, cfg.metrics.resolution,
                                          cfg.metrics.flow, progress=False)
    return {f'eval/{k}': v for k, v in values.items()}
  return scores


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains (resuming from `workdir` if it has checkpoints), evaluates, samples. Returns the state.

  On SIGTERM it checkpoints at the next step and raises `preemption.Preempted`.
  """
  workdir = prepare_workdir(workdir)
  setup = make_setup(config)
  is_main = jax.process_index() == 0
  local_batch = sharding.process_batch_size(config.train.batch_size)
  train_iter = pipeline.train_iterator(config.data, config.model.text, local_batch)
  eval_batches = pipeline.eval_batches(config.data, config.model.text, local_batch)
  mngr = checkpointing.manager(workdir, config.train.keep_checkpoints)
  state = checkpointing.restore(mngr, abstract_state(setup), train_iter)
  if state is None:
    state = init_state(setup)
  start = int(state.step)
  metric_writer.say(f'{config.model.name}: {params_summary(setup, state.params)}, mesh '
                    f'{dict(setup.mesh.shape)}, {"resuming" if start else "starting"} at step {start}')
  writer = metric_writer.MetricWriter(workdir, enabled=is_main)
  step_fns = train_steps(setup)
  meter = Meter(setup, next(iter(step_fns.values())), start)
  evals = Evals(steps.make_eval_step(setup), eval_batches, video_metrics_fn(setup))
  batches = prefetch.DevicePrefetch(train_iter, setup.batch_shardings, config.data.device_prefetch)
  try:
    with preemption.Watcher() as watcher:
      state = train_loop(setup, state, step_fns, evals, batches, mngr, writer, meter, watcher)
  finally:
    mngr.wait_until_finished()
  setup.task.write_samples(setup, state, workdir, writer)
  writer.close()
  if is_main:
    metric_writer.plot_curves(workdir)
  mngr.close()
  return state


def train_steps(setup: Setup) -> dict:
  """The compiled train steps by batch shape (B, T, H, W) of 'video': one per bucket, and with
  data.image_batches one for batches of B x T single frames (`pipeline.flatten_images`)."""
  config = setup.config
  batch = config.train.batch_size
  fns = {(batch, *clip): compile_train_step(setup, clip) for clip in pipeline.shapes(config.data)}
  if config.data.get('image_batches', 0.):
    frames, height, width = pipeline.shapes(config.data)[0]
    fns[batch * frames, 1, height, width] = compile_train_step(setup, (1, height, width),
                                                               batch_size=batch * frames)
  return fns


def compile_train_step(setup: Setup, clip: tuple[int, int, int] | None = None,
                       compiler_options: dict | None = None, batch_size: int | None = None):
  """The train step compiled ahead of time for `batch_size` (default train.batch_size) clips of
  (frames, height, width) = `clip` (default: the config's shape): it cannot recompile.
  `compiler_options` (XLA flags) add to those that make remat effective on the platform."""
  batch = {k: jax.ShapeDtypeStruct(shape, BATCH_DTYPES[k], sharding=setup.batch_shardings[k])
           for k, shape in batch_shape(setup.config, clip, batch_size).items()}
  options = {**remat.compiler_options(setup.mesh.devices.flat[0].platform),
             **(compiler_options or {})}
  state = abstract_state(setup)  # outside the mesh context: compile-only devices hold nothing
  with setup.context():
    lowered = steps.make_train_step(setup).lower(state, batch)
    return lowered.compile(options or None)


@dataclasses.dataclass
class Evals:
  """What train_loop evaluates: the loss on fixed held-out batches every `train.eval_every`
  steps, and `video_metrics` (None: off) every `metrics.every` steps."""
  eval_step: Callable
  batches: list
  video_metrics: Callable | None = None


def train_loop(setup, state, step_fns: dict, evals: Evals, batches, mngr, writer, meter, watcher):
  """Runs steps up to train.num_steps with logging, eval, checkpoints and preemption.
  `step_fns`: compiled steps by the batch's video shape (B, T, H, W); `batches`: a
  DevicePrefetch."""
  cfg = setup.config.train
  bar = tqdm(total=cfg.num_steps, initial=meter.step, desc='train',
             disable=jax.process_index() != 0, mininterval=2., dynamic_ncols=True)
  for step in range(meter.step + 1, cfg.num_steps + 1):
    batch = next(batches)
    with setup.context():
      state, metrics = step_fns[batch['video'].shape[:4]](state, batch)
    meter.add(metrics, batches.skipped)
    bar.update(1)
    if step % cfg.log_every == 0 or step == cfg.num_steps:
      scalars = meter.summary(step)
      writer.scalars(step, scalars)
      bar.set_postfix(loss=f'{scalars["train/loss"]:.4f}')
    if step % cfg.eval_every == 0 or step == cfg.num_steps:
      scalars = eval_loss(setup, evals.eval_step, state, evals.batches)
      writer.scalars(step, scalars)
      metric_writer.say(f'step {step}: {eval_summary(scalars)} | {meter.speed()}')
    every = setup.config.metrics.every
    if evals.video_metrics and (step % every == 0 or step == cfg.num_steps):
      scalars = evals.video_metrics(state)
      writer.scalars(step, scalars)
      metric_writer.say(f'step {step}: ' + video_metrics.summary(
          {k.split('/')[1]: v for k, v in scalars.items()}))
    preempted = watcher.reached(step)
    if preempted or step % cfg.checkpoint_every == 0 or step == cfg.num_steps:
      checkpointing.save(mngr, step, state, batches, setup.config)
    if preempted:
      mngr.wait_until_finished()
      raise preemption.Preempted(f'preempted (SIGTERM): saved a checkpoint at step {step}; run '
                                 f'the same command again to resume from it.')
  bar.close()
  return state


class Meter:
  """Accumulates step metrics between logs: mean loss, speed, TFLOP/s, MFU, and the run of
  consecutive non-finite steps (a UserError once it reaches train.max_nonfinite_steps)."""

  def __init__(self, setup: Setup, compiled_step, start: int):
    devices = setup.mesh.devices.flatten()
    self.step, self.lr_fn, self.cfg = start, setup.lr_fn, setup.config.train
    self.flops = perf.step_flops(compiled_step, len(devices))
    self.peak, self.peak_source = perf.peak_flops(list(devices)) if self.flops else (None, '')
    self.pending, self.nonfinite_run, self.scalars, self.skipped_videos = [], 0, {}, 0
    self.last_time, self.last_step = time.perf_counter(), start

  def add(self, metrics, skipped_videos: int = 0) -> None:
    """One step's metrics; `skipped_videos`: unusable videos the data pipeline has skipped."""
    self.pending.append(metrics)
    self.step += 1
    self.skipped_videos = skipped_videos

  def summary(self, step: int) -> dict[str, float]:
    """Train scalars since the last call (blocks on the device)."""
    metrics, now = jax.device_get(self.pending), time.perf_counter()
    seconds = (now - self.last_time) / (step - self.last_step)
    for m in metrics:
      self.nonfinite_run = self.nonfinite_run + 1 if m['nonfinite'] else 0
      if self.nonfinite_run >= self.cfg.max_nonfinite_steps:
        raise UserError(f'{self.nonfinite_run} steps in a row (up to step {step}) had a '
                        f'non-finite loss or gradient and were skipped; lower '
                        f'train.learning_rate, set train.grad_clip, or use model.dtype=float32.')
    finite = [m for m in metrics if not m['nonfinite']]
    self.scalars = {
        'train/loss': float(np.mean([m['loss'] for m in finite])) if finite else float('nan'),
        'train/grad_norm': float(np.mean([m['grad_norm'] for m in finite])) if finite else 0.,
        'train/nonfinite_steps': float(len(metrics) - len(finite)),
        'train/lr': float(self.lr_fn(step - 1)), 'perf/seconds_per_step': seconds,
        'perf/steps_per_sec': 1. / seconds, 'perf/clips_per_sec': self.cfg.batch_size / seconds,
        'data/skipped_videos': float(self.skipped_videos)}
    if self.flops:
      self.scalars['perf/tflops_per_sec'] = self.flops / seconds / 1e12
    if self.flops and self.peak:
      self.scalars['perf/mfu'] = self.flops / seconds / self.peak
    self.pending, self.last_time, self.last_step = [], now, step
    return self.scalars

  def speed(self) -> str:
    """'0.35 s/step, 11.4 clips/s, 1.20 TFLOP/s, MFU 4.1%' from the last summary."""
    s = self.scalars
    if not s:
      return 'no speed yet'
    line = f'{s["perf/seconds_per_step"]:.3f} s/step, {s["perf/clips_per_sec"]:.1f} clips/s'
    if 'perf/tflops_per_sec' in s:
      line += f', {s["perf/tflops_per_sec"]:.3g} TFLOP/s'
    if 'perf/mfu' in s:
      line += f', MFU {100 * s["perf/mfu"]:.1f}% ({self.peak_source})'
    return line


def count_params(params) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def params_summary(setup: Setup, params) -> str:
  """'3,542,280 params', or for a partly frozen model '4,147,... params (604,... trained)'."""
  line = f'{count_params(params):,} params'
  if setup.task.trainable is None:
    return line
  trained = sum(int(np.prod(p.shape)) for path, p in jax.tree_util.tree_leaves_with_path(params)
                if setup.task.trainable(optimizer.key_names(path)))
  return f'{line} ({trained:,} trained)'
