"""The train loop: sharded init, one jitted train step, eval, checkpoints, logs, samples.

    train_and_evaluate(config, workdir)

The state is created with `jax.eval_shape` -> shardings -> a jitted init with
`out_shardings`, so a model that does not fit on one device never materialises on one. The
train step is one `jit` with explicit in/out shardings and the state donated.
"""

import contextlib
import dataclasses
import functools
import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from tqdm import tqdm

from vidiff import checkpointing, generate, metric_writer, models, optimizer, sharding
from vidiff.data import pipeline
from vidiff.diffusion import objectives, schedules
from vidiff.errors import UserError, check
from vidiff.models import text
from vidiff.train_state import TrainState, ema_decay, ema_update


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything derived from the config that the loop and the steps need."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  rules: tuple
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


def batch_shape(config) -> dict[str, tuple[int, ...]]:
  """Global shapes of the train batch arrays."""
  d = config.data
  return {'video': (config.train.batch_size, d.num_frames, d.resolution, d.resolution, 3),
          'tokens': (config.train.batch_size, config.model.text.max_len)}


def check_config(config) -> None:
  """Validates fields that the model, data and diffusion code would otherwise choke on."""
  objectives.check_prediction(config.diffusion.prediction)
  check(0 <= config.diffusion.prompt_dropout < 1,
        f'diffusion.prompt_dropout={config.diffusion.prompt_dropout} must be in [0, 1).')
  check(config.data.num_frames >= 1 and config.data.frame_stride >= 1,
        'data.num_frames and data.frame_stride must be >= 1.')
  check(config.train.batch_size >= 1, f'train.batch_size={config.train.batch_size} must be >= 1.')
  for key in ('log_every', 'eval_every', 'checkpoint_every'):
    check(config.train[key] >= 1, f'train.{key}={config.train[key]} must be >= 1.')
  models.check_video_shape(config.model, config.data.num_frames, config.data.resolution)


def make_setup(config, devices: Sequence[jax.Device] | None = None) -> Setup:
  """Builds mesh, model, optimizer and shardings; raises UserError on a bad config."""
  check_config(config)
  mesh = sharding.make_mesh(config.mesh, devices)
  rules = sharding.rules(config.mesh)
  model = models.get_model(config.model)
  tx, lr_fn = optimizer.make(config.train)
  batch_shardings = sharding.batch_shardings(mesh, rules)
  sharding.check_batch_divisible(batch_shape(config), batch_shardings)
  setup = Setup(config, mesh, rules, model, tx, lr_fn, schedules.from_config(config.diffusion),
                None, batch_shardings)
  boxed = jax.eval_shape(functools.partial(_boxed_state, setup), jax.random.PRNGKey(0))
  return dataclasses.replace(setup, state_shardings=sharding.tree_shardings(boxed, mesh, rules))


def _dummy_inputs(config):
  """One example of the training shapes: parameter shapes never depend on the batch size."""
  shapes = batch_shape(config)
  return (jnp.zeros((1, *shapes['video'][1:]), jnp.float32), jnp.zeros((1,), jnp.float32),
          jnp.zeros((1, *shapes['tokens'][1:]), jnp.int32))


def _boxed_state(setup: Setup, rng) -> TrainState:
  """The train state with logically-partitioned (boxed) params, for sharding inference."""
  param_rng, state_rng = jax.random.split(rng)
  params = setup.model.init(param_rng, *_dummy_inputs(setup.config))['params']
  return TrainState.create(params, setup.tx, state_rng)


def init_state(setup: Setup) -> TrainState:
  """Initialises the state directly into its shardings (never whole on one device)."""
  rng = jax.random.PRNGKey(setup.config.seed)
  init = jax.jit(lambda r: nn.meta.unbox(_boxed_state(setup, r)),
                 out_shardings=setup.state_shardings)
  with setup.context():
    return init(rng)


def abstract_state(setup: Setup) -> TrainState:
  """ShapeDtypeStructs with shardings: the target of a checkpoint restore."""
  shapes = jax.eval_shape(lambda r: nn.meta.unbox(_boxed_state(setup, r)), jax.random.PRNGKey(0))
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, setup.state_shardings)


def drop_prompts(tokens, rng, rate: float):
  """Replaces each prompt by the empty prompt with probability `rate` (for CFG)."""
  drop = jax.random.bernoulli(rng, rate, (tokens.shape[0],))
  null = jnp.asarray(text.null_tokens(tokens.shape[0], tokens.shape[1]))
  return jnp.where(drop[:, None], null, tokens)


def loss_fn(params, setup: Setup, batch, rng, train: bool):
  """Diffusion loss of `params` on a batch. Returns (loss, per-example loss [B])."""
  drop_rng, noise_rng, dropout_rng = jax.random.split(rng, 3)
  tokens = batch['tokens']
  if train:
    tokens = drop_prompts(tokens, drop_rng, setup.config.diffusion.prompt_dropout)
  apply = lambda x, t, tok: setup.model.apply({'params': params}, x, t, tok, train=train,
                                              rngs={'dropout': dropout_rng})
  return objectives.diffusion_loss(apply, pipeline.as_float(batch['video']), tokens, noise_rng,
                                   setup.schedule, setup.config.diffusion.prediction,
                                   setup.config.diffusion.min_snr_gamma)


def train_step(state: TrainState, batch, *, setup: Setup):
  """One optimizer step. Returns (new state, metrics {'loss', 'grad_norm'})."""
  (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, setup, batch, state.step_rng(), True)
  updates, opt_state = setup.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema_update(state.ema_params, params,
                                                  ema_decay(state.step, setup.config.train.ema_decay)))
  return new_state, {'loss': loss, 'grad_norm': optax.tree.norm(grads)}


def make_train_step(setup: Setup):
  """The jitted train step: explicit in/out shardings, state donated."""
  replicated = jax.sharding.NamedSharding(setup.mesh, jax.sharding.PartitionSpec())
  return jax.jit(functools.partial(train_step, setup=setup),
                 in_shardings=(setup.state_shardings, setup.batch_shardings),
                 out_shardings=(setup.state_shardings, replicated), donate_argnums=0)


def make_eval_step(setup: Setup):
  """Jitted eval loss of the EMA params on one batch with a fixed key (comparable over time)."""
  def eval_step(params, batch, index):
    rng = jax.random.fold_in(jax.random.PRNGKey(setup.config.seed + 1), index)
    return loss_fn(params, setup, batch, rng, False)[0]
  return jax.jit(eval_step, in_shardings=(setup.state_shardings.ema_params, setup.batch_shardings, None))


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


def evaluate(setup: Setup, eval_step, state: TrainState, eval_batches) -> dict[str, float]:
  """Mean eval loss over the fixed held-out batches."""
  with setup.context():
    losses = [eval_step(state.ema_params, sharding.global_batch(b, setup.batch_shardings), i)
              for i, b in enumerate(eval_batches)]
  return {'eval/loss': float(np.mean(jax.device_get(losses)))}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains (resuming from `workdir` if it has checkpoints), evaluates, samples. Returns the state."""
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
  metric_writer.say(f'{config.model.name}: {count_params(state.params):,} params, mesh '
                    f'{dict(setup.mesh.shape)}, {"resuming" if start else "starting"} at step {start}')
  writer = metric_writer.MetricWriter(workdir, enabled=is_main)
  step_fn, eval_step = make_train_step(setup), make_eval_step(setup)
  state = train_loop(setup, state, step_fn, eval_step, train_iter, eval_batches, mngr, writer, start)
  mngr.wait_until_finished()
  if config.sample.num_prompts > 0:
    generate.write_training_samples(setup, state, workdir, writer)
  writer.close()
  if is_main:
    metric_writer.plot_curves(workdir)
  mngr.close()
  return state


def train_loop(setup, state, step_fn, eval_step, train_iter, eval_batches, mngr, writer, start):
  """Runs steps start..num_steps with logging, eval and checkpoints."""
  cfg = setup.config.train
  pending, last_time, last_step = [], time.perf_counter(), start
  bar = tqdm(total=cfg.num_steps, initial=start, desc='train', disable=jax.process_index() != 0,
             mininterval=2., dynamic_ncols=True)
  for step in range(start + 1, cfg.num_steps + 1):
    batch = sharding.global_batch(next(train_iter), setup.batch_shardings)
    with setup.context():
      state, metrics = step_fn(state, batch)
    pending.append(metrics)
    bar.update(1)
    if step % cfg.log_every == 0 or step == cfg.num_steps:
      now = time.perf_counter()
      scalars = summarize(jax.device_get(pending), (now - last_time) / (step - last_step),
                          cfg.batch_size, float(setup.lr_fn(step - 1)))
      check_finite(scalars['train/loss'], step)
      writer.scalars(step, scalars)
      bar.set_postfix(loss=f'{scalars["train/loss"]:.4f}')
      pending, last_time, last_step = [], now, step
    if step % cfg.eval_every == 0 or step == cfg.num_steps:
      scalars = evaluate(setup, eval_step, state, eval_batches)
      writer.scalars(step, scalars)
      metric_writer.say(f'step {step}: eval loss {scalars["eval/loss"]:.4f}')
    if step % cfg.checkpoint_every == 0 or step == cfg.num_steps:
      checkpointing.save(mngr, step, state, train_iter, setup.config)
  bar.close()
  return state


def summarize(metrics: list[dict], seconds_per_step: float, batch_size: int, lr: float):
  """Mean train metrics since the last log, plus speed and learning rate."""
  return {'train/loss': float(np.mean([m['loss'] for m in metrics])),
          'train/grad_norm': float(np.mean([m['grad_norm'] for m in metrics])),
          'train/lr': lr, 'perf/steps_per_sec': 1. / seconds_per_step,
          'perf/clips_per_sec': batch_size / seconds_per_step}


def check_finite(loss: float, step: int) -> None:
  if not np.isfinite(loss):
    raise UserError(f'the train loss became {loss} at step {step}; lower train.learning_rate or '
                    f'train.grad_clip, or try model.dtype=float32.')


def count_params(params) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
