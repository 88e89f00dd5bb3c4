"""The train state: one pytree holding everything a run needs to continue exactly."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """step: int32 []; params / ema_params: model params; opt_state: optax state;
  rng: uint32 [2] base key (per-step keys are `fold_in(rng, step)`)."""
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  rng: jax.Array

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation, rng) -> 'TrainState':
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               ema_params=jax.tree.map(jnp.copy, params), rng=rng)

  def with_weights(self, params) -> 'TrainState':
    """This state with params and their EMA both set to `params` (pretrained weights; the EMA
    gets copies, so no buffer is donated twice)."""
    return self.replace(params=params, ema_params=jax.tree.map(jnp.copy, params))

  def step_rng(self) -> jax.Array:
    """The key of the current step: identical on every host and on resume."""
    return jax.random.fold_in(self.rng, self.step)


def ema_decay(step, decay: float):
  """The EMA decay at `step`: min(decay, (1 + step) / (10 + step)).

  The warm-up (as in tf.train.ExponentialMovingAverage with num_updates) keeps the average
  from dragging the random init along in short runs.
  """
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1. + step) / (10. + step))


def ema_update(ema, params, decay):
  """Exponential moving average of params, as ema + (1 - decay) (params - ema): a parameter
  that does not change (a frozen base model) keeps its average bit for bit."""
  return jax.tree.map(lambda e, p: e + (1. - decay) * (p - e), ema, params)
