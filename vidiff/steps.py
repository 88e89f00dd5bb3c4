"""The jitted train and eval steps: the task's loss, gradient accumulation, non-finite skipping.

    step_fn = make_train_step(setup)          # state, batch -> state, metrics
    eval_fn = make_eval_step(setup)           # ema_params, batch, index -> loss (or metrics)

`setup` is `train.Setup` (config, task, model, optimizer, schedule, shardings); the loss and
the randomness come from `setup.task` (`tasks`; diffusion's are `draw` and `loss_fn` below).
All randomness of a step derives from `state.step_rng()` and is drawn for the whole global
batch before it is split into `train.grad_accum_steps` microbatches, so k microbatches train on
exactly the examples, timesteps and noise of one big batch.
"""

import functools

import jax
import jax.numpy as jnp
import optax

from vidiff.data import pipeline
from vidiff.diffusion import objectives
from vidiff.models import text
from vidiff.train_state import TrainState, ema_decay, ema_update


def example_inputs(config) -> tuple:
  """One example of the training shapes (video, t, tokens), the denoiser's init arguments:
  parameter shapes never depend on the batch size."""
  d = config.data
  return (jnp.zeros((1, d.num_frames, d.resolution, d.resolution, 3), jnp.float32),
          jnp.zeros((1,), jnp.float32), jnp.zeros((1, config.model.text.max_len), jnp.int32))


def draw(rng, setup, batch, train: bool, shape=None) -> dict:
  """The randomness of one step for the whole batch: {'t' [B], 'eps' [B,T,H,W,C] (of `shape`,
  default the video's), 'context' int [B] (leading frames given clean), 'drop' bool [B]
  (prompts replaced by the empty prompt, for guidance), 'dropout' key}."""
  drop_rng, noise_rng, dropout_rng = jax.random.split(rng, 3)
  shape = shape or batch['video'].shape
  rate = setup.config.diffusion.prompt_dropout if train else 0.
  context = setup.config.diffusion.context
  own = own_step(setup.config) if train else None
  noise = objectives.draw_noise(noise_rng, shape, context.prob, context.max_frames,
                                own.prob if own else 0.)
  if shape[1] == 1:  # images (data.image_batches) at their own noise levels
    noise['t'] = image_times(setup, noise['t'])
  return {**noise, 'drop': jax.random.bernoulli(drop_rng, rate, shape[:1]),
          'dropout': dropout_rng}


def image_times(setup, u):
  """Times t [...] of 1-frame clips for uniform u [...]: the levels of `diffusion.image_shift`
  on the model's clock (`Schedule.equivalent_t`); u itself when image_shift is 0 (unset) or
  the schedule's own shift."""
  shift = image_shift(setup.config)
  return u if shift == setup.schedule.shift else setup.schedule.equivalent_t(u, shift)


def image_shift(config) -> float:
  """The SNR shift of images (1-frame clips): `diffusion.image_shift`, or if 0 / absent (configs
  saved before it) `diffusion.shift`."""
  return config.diffusion.get('image_shift', 0.) or config.diffusion.shift


def own_step(config):
  """`diffusion.self_step` when it is on (prob > 0), else None (configs saved before it: off)."""
  own = config.diffusion.get('self_step')
  return own if own is not None and own.prob > 0 else None


def loss_fn(params, setup, batch, noise: dict, train: bool, x0=None, **model_kwargs):
  """Diffusion loss of `params` on a batch with the randomness `noise` (see `draw`), denoising
  `x0` (default: the batch's video in [-1, 1]; latents for latent diffusion); `model_kwargs`
  go to the model (a ControlNet's hint). Returns (loss, per-example loss [B])."""
  tokens = batch['tokens']
  null = jnp.asarray(text.null_tokens(tokens.shape[0], tokens.shape[1]))
  tokens = jnp.where(noise['drop'][:, None], null, tokens)
  apply = lambda x, t, tok: setup.model.apply({'params': params}, x, t, tok, train=train,
                                              rngs={'dropout': noise['dropout']}, **model_kwargs)
  pixels = x0 is None  # latents (x0 given) have no fixed range to clip to
  x0 = pipeline.as_float(batch['video']) if x0 is None else x0
  own = own_step(setup.config) if train else None
  loss, per_example = objectives.diffusion_loss(apply, x0, tokens, noise,
                                                setup.schedule, setup.config.diffusion.prediction,
                                                setup.config.diffusion.min_snr_gamma,
                                                setup.config.diffusion.temporal_weight,
                                                own.gap if own else 0., clip_x0=pixels)
  weight = image_loss_weight(setup.config) if train and x0.shape[1] == 1 else 1.
  return loss * weight, per_example * weight


def image_loss_weight(config) -> float:
  """The train loss weight of image batches (`data.image_batches`): diffusion.image_loss_weight,
  1 without image batches and for configs saved before it."""
  if not config.data.get('image_batches', 0.):
    return 1.
  return config.diffusion.get('image_loss_weight', 1.)


def microbatches(tree, k: int):
  """Leaves [B, ...] -> [k, B/k, ...]. Microbatch j holds examples j, j+k, j+2k, ..., so that
  with the batch split into contiguous blocks over devices each microbatch spans all of them."""
  return jax.tree.map(lambda x: jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1),
                      tree)


def loss_and_grads(params, setup, batch, rng):
  """(mean loss, mean gradients) over the batch, in `train.grad_accum_steps` microbatches."""
  k = setup.config.train.grad_accum_steps
  noise = setup.task.draw(rng, setup, batch, train=True)
  grad_fn = jax.value_and_grad(lambda p, b, n: setup.task.loss(p, setup, b, n, True)[0])
  if k == 1:
    return grad_fn(params, batch, noise)
  keys = jax.random.split(noise.pop('dropout'), k)

  def add_micro(total, micro):
    mbatch, mnoise, key = micro
    loss, grads = grad_fn(params, mbatch, {**mnoise, 'dropout': key})
    return jax.tree.map(jnp.add, total, (loss, grads)), None

  zeros = jax.lax.with_sharding_constraint(jax.tree.map(jnp.zeros_like, params),
                                           setup.state_shardings.params)
  total, _ = jax.lax.scan(add_micro, (jnp.zeros((), jnp.float32), zeros),
                          (microbatches(batch, k), microbatches(noise, k), keys))
  return jax.tree.map(lambda x: x / k, total)


def train_step(state: TrainState, batch, *, setup):
  """One optimizer step. Returns (new state, metrics {'loss', 'grad_norm', 'nonfinite'}).

  A step whose loss or gradient is not finite changes nothing but the step counter (params,
  optimizer state and EMA keep their values) and reports nonfinite=1; the loop stops after
  `train.max_nonfinite_steps` of them in a row.
  """
  loss, grads = loss_and_grads(state.params, setup, batch, state.step_rng())
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  updates, opt_state = setup.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = ema_update(state.ema_params, params, ema_decay(state.step, setup.config.train.ema_decay))
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  new_state = state.replace(step=state.step + 1, params=keep(params, state.params),
                            opt_state=keep(opt_state, state.opt_state),
                            ema_params=keep(ema, state.ema_params))
  return new_state, {'loss': loss, 'grad_norm': grad_norm,
                     'nonfinite': 1 - finite.astype(jnp.int32)}


def make_train_step(setup):
  """The jitted train step: explicit in/out shardings, state donated."""
  replicated = jax.sharding.NamedSharding(setup.mesh, jax.sharding.PartitionSpec())
  return jax.jit(functools.partial(train_step, setup=setup),
                 in_shardings=(setup.state_shardings, setup.batch_shardings),
                 out_shardings=(setup.state_shardings, replicated), donate_argnums=0)


def make_eval_step(setup):
  """Jitted eval of the EMA params on one batch with a fixed key (comparable over time): the
  loss, or the task's dict of metrics ({'loss', 'psnr', ...} for the VAE)."""
  def eval_step(params, batch, index):
    rng = jax.random.fold_in(jax.random.PRNGKey(setup.config.seed + 1), index)
    return setup.task.evaluate(params, setup, batch, setup.task.draw(rng, setup, batch, False))
  return jax.jit(eval_step, in_shardings=(setup.state_shardings.ema_params, setup.batch_shardings,
                                          None))
