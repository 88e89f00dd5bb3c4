"""Diffusion training objectives: what the model predicts and the loss against it.

Predictions: 'eps' (the noise), 'x0' (the clean video), 'v' (alpha eps - sigma x0, Salimans &
Ho 2022) and 'flow' (the velocity eps - x0 of flow matching; with schedule='rectified_flow' it is
d x_t / dt, the rectified-flow objective). Each works with every schedule.
"""

import jax
import jax.numpy as jnp

from vidiff.diffusion.schedules import Schedule
from vidiff.errors import check
from vidiff.metrics import jax_flow

PREDICTIONS = ('eps', 'v', 'x0', 'flow')


def check_prediction(prediction: str) -> None:
  check(prediction in PREDICTIONS,
        f'diffusion.prediction={prediction!r}; use one of {", ".join(PREDICTIONS)}.')


def expand(a, x):
  """Broadcasts a per-example [B] array against x [B, ...]."""
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def target(x0, eps, alpha, sigma, prediction: str):
  """The regression target for clean x0 [B,...], noise eps, alpha/sigma [B]."""
  alpha, sigma = expand(alpha, x0), expand(sigma, x0)
  return {'eps': eps, 'x0': x0, 'v': alpha * eps - sigma * x0, 'flow': eps - x0}[prediction]


def x0_eps(pred, x_t, alpha, sigma, prediction: str):
  """Recovers (x0_hat, eps_hat) from a model prediction at x_t."""
  alpha, sigma = expand(alpha, x_t), expand(sigma, x_t)
  if prediction == 'eps':
    return (x_t - sigma * pred) / alpha, pred
  if prediction == 'x0':
    return pred, (x_t - alpha * pred) / sigma
  if prediction == 'flow':  # x_t = alpha x0 + sigma (x0 + pred)
    return (x_t - sigma * pred) / (alpha + sigma), (x_t + alpha * pred) / (alpha + sigma)
  norm = jnp.square(alpha) + jnp.square(sigma)  # 1 for variance-preserving schedules
  return (alpha * x_t - sigma * pred) / norm, (sigma * x_t + alpha * pred) / norm


def min_snr_weight(alpha, sigma, prediction: str, gamma: float):
  """Min-SNR-gamma loss weights [B] (Hang et al. 2023, arXiv:2303.09556) for a prediction type.

  Equals min(SNR, gamma) on the x0 error, i.e. it caps the weight of low-noise steps, which
  otherwise dominate the loss while contributing little to what samples look like. Each weight is
  min(SNR, gamma) * (d x0_hat / d prediction)^2 from `x0_eps`.
  """
  snr = jnp.square(alpha / sigma)
  capped = jnp.minimum(snr, gamma)
  scale = {'eps': sigma / alpha, 'x0': jnp.ones_like(alpha),
           'v': sigma / (jnp.square(alpha) + jnp.square(sigma)), 'flow': sigma / (alpha + sigma)}
  return capped * jnp.square(scale[prediction])


def draw_noise(rng, shape, context_prob: float = 0., max_context: int = 0,
               self_step_prob: float = 0.) -> dict:
  """The diffusion randomness of a video batch of `shape` [B, T, ...]: {'t': U(0, 1) [B],
  'eps': N(0, I) [B, T, ...], 'context': int [B], 'self': bool [B], 'gap': U(0, 1) [B]}.

  `context`: how many leading frames of each clip are given clean, as context the model learns
  to continue (0 for most clips; with probability `context_prob` uniform in 1..max_context, at
  most T - 1: 1-frame batches never get context).
  Long videos are spliced with it: each chunk continues the clean last frames of the one before.
  Drawn for the whole batch at once, so splitting the batch into microbatches afterwards
  (gradient accumulation) trains on exactly the same noisy examples.
  """
  t_rng, eps_rng, use_rng, k_rng = jax.random.split(rng, 4)
  batch = shape[:1]
  max_context = min(max_context, shape[1] - 1)  # a clip given whole would have nothing to learn
  frames = jax.random.randint(k_rng, batch, 1, max(max_context, 1) + 1)
  use = jax.random.bernoulli(use_rng, context_prob, batch) & (max_context > 0)
  # `self`: the clip's x_t is the model's own sampler step (`own_step_input`) from a level
  # `gap` of the way to t = 1, with probability `self_step_prob`. Drawn from a key of their own,
  # so t, eps and context are the same with it as without.
  gap_rng, self_rng = jax.random.split(jax.random.fold_in(rng, 1))
  return {'t': jax.random.uniform(t_rng, batch), 'eps': jax.random.normal(eps_rng, shape),
          'context': jnp.where(use, frames, 0).astype(jnp.int32),
          'gap': jax.random.uniform(gap_rng, batch),
          'self': jax.random.bernoulli(self_rng, self_step_prob, batch)}


def context_frames(context, frames: int):
  """bool [B, frames]: True for the first `context` [B] frames of each clip (given clean)."""
  return jnp.arange(frames)[None, :] < context[:, None]


def own_step_input(apply_fn, x0, tokens, noise: dict, schedule: Schedule, prediction: str,
                   max_gap: float, clip_x0: bool = True):
  """x_t [B, T, ...] as the model's own DDIM step leaves it: noised to t1 = t + gap * max_gap *
  (1 - t), the model predicts (x0_hat, eps_hat) there (no gradient) and the step to t gives
  alpha_t x0_hat + sigma_t eps_hat. A perfect model gives back alpha_t x0 + sigma_t eps; a real
  one leaves what samplers meet (dim, blurred objects), which training on it with the true x0
  as target (scheduled sampling, Bengio et al. 2015, one sampler step long) teaches the model to
  correct. Context frames stay clean. x0_hat is clipped to [-1, 1] as the samplers clip it
  (`clip_x0=False` for latents, which have no fixed range)."""
  t, eps = noise['t'], noise['eps'].astype(x0.dtype)
  clean = context_frames(noise['context'], x0.shape[1])
  per_frame = lambda level: jnp.where(clean, 0., level[:, None])  # context frames at t = 0
  t1 = per_frame(t + noise['gap'] * max_gap * (1. - t))
  a1, s1 = schedule.marginal(t1)
  x_t1 = expand(a1, x0) * x0 + expand(s1, x0) * eps
  pred = jax.lax.stop_gradient(apply_fn(x_t1, t1, tokens))
  x0_hat = x0_eps(pred.astype(jnp.float32), x_t1, a1, s1, prediction)[0]
  x0_hat = jnp.clip(x0_hat, -1., 1.) if clip_x0 else x0_hat
  eps_hat = (x_t1 - expand(a1, x0) * x0_hat) / expand(jnp.maximum(s1, 1e-6), x0)
  alpha, sigma = schedule.marginal(per_frame(t))
  return jnp.where(expand(clean, x0), x0,
                   expand(alpha, x0) * x0_hat + expand(sigma, x0) * eps_hat)


def diffusion_loss(apply_fn, x0, tokens, noise: dict, schedule: Schedule, prediction: str,
                   min_snr_gamma: float | None = None, temporal_weight: float = 0.,
                   self_step_gap: float = 0., clip_x0: bool = True):
  """Mean squared error of the model's prediction, plus the temporal coherence loss.

  x0: [B, T, ...]; apply_fn(x_t, t [B, T], tokens) -> prediction. `noise` is `draw_noise`'s;
  frames given as clean context are exact in x_t and left out of the loss. `min_snr_gamma`
  weights each example by `min_snr_weight` (None weighs all equally). `temporal_weight` > 0 adds
  lambda * ||Flow(x0_hat_t) - Flow(x0_hat_{t-1})||^2 on the predicted clean frames
  (`jax_flow.temporal_coherence_loss`: the mean squared change between consecutive optical-flow
  fields, 0 for a static video; left out for x0 of fewer than 3 frames, such as the single
  frames of image batches, which have no flow to change). `self_step_gap` > 0: clips with
  noise['self'] take `own_step_input(..., self_step_gap, clip_x0)` as x_t, the target the noise
  it holds.
  Returns (loss scalar, per-example loss [B]).
  """
  t, eps = noise['t'], noise['eps'].astype(x0.dtype)
  clean = context_frames(noise['context'], x0.shape[1])
  t_frames = jnp.where(clean, 0., t[:, None])
  alpha, sigma = schedule.marginal(t_frames)
  x_t = expand(alpha, x0) * x0 + expand(sigma, x0) * eps
  if self_step_gap:  # clips drawn with noise['self'] start from the model's own step
    x_t = jnp.where(expand(noise['self'], x0), own_step_input(
        apply_fn, x0, tokens, noise, schedule, prediction, self_step_gap, clip_x0), x_t)
    # Their target is the noise that x_t holds beside alpha x0.
    held = (x_t - expand(alpha, x0) * x0) / expand(jnp.maximum(sigma, 1e-6), x0)
    eps = jnp.where(expand(noise['self'][:, None] & ~clean, x0), held, eps)
  pred = apply_fn(x_t, t_frames, tokens)
  err = jnp.square(pred.astype(jnp.float32) - target(x0, eps, alpha, sigma, prediction))
  per_frame = err.mean(axis=tuple(range(2, err.ndim)))  # [B, T]
  scored = ~clean
  per_example = (jnp.where(scored, per_frame, 0.).sum(1) /
                 jnp.maximum(scored.sum(1), 1).astype(jnp.float32))
  if min_snr_gamma:
    per_example = per_example * min_snr_weight(*schedule.alpha_sigma(t), prediction,
                                               min_snr_gamma)
  if temporal_weight and x0.shape[1] >= jax_flow.LOSS_MIN_FRAMES:
    x0_hat = x0_eps(pred.astype(jnp.float32), x_t, alpha, sigma, prediction)[0]
    x0_hat = jnp.where(expand(clean, x0), x0, jnp.clip(x0_hat, -1., 1.))
    per_example = per_example + temporal_weight * jax_flow.temporal_coherence_loss(x0_hat)
  return per_example.mean(), per_example
