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


def draw_noise(rng, shape, context_prob: float = 0., max_context: int = 0) -> dict:
  """The diffusion randomness of a video batch of `shape` [B, T, ...]: {'t': U(0, 1) [B],
  'eps': N(0, I) [B, T, ...], 'context': int [B]}.

  `context`: how many leading frames of each clip are given clean, as context the model learns
  to continue (0 for most clips; with probability `context_prob` uniform in 1..max_context).
  Long videos are spliced with it: each chunk continues the clean last frames of the one before.
  Drawn for the whole batch at once, so splitting the batch into microbatches afterwards
  (gradient accumulation) trains on exactly the same noisy examples.
  """
  t_rng, eps_rng, use_rng, k_rng = jax.random.split(rng, 4)
  batch = shape[:1]
  frames = jax.random.randint(k_rng, batch, 1, max(max_context, 1) + 1)
  use = jax.random.bernoulli(use_rng, context_prob, batch) & (max_context > 0)
  return {'t': jax.random.uniform(t_rng, batch), 'eps': jax.random.normal(eps_rng, shape),
          'context': jnp.where(use, frames, 0).astype(jnp.int32)}


def context_frames(context, frames: int):
  """bool [B, frames]: True for the first `context` [B] frames of each clip (given clean)."""
  return jnp.arange(frames)[None, :] < context[:, None]


def diffusion_loss(apply_fn, x0, tokens, noise: dict, schedule: Schedule, prediction: str,
                   min_snr_gamma: float | None = None, temporal_weight: float = 0.):
  """Mean squared error of the model's prediction, plus the temporal coherence loss.

  x0: [B, T, ...]; apply_fn(x_t, t [B, T], tokens) -> prediction. `noise` is `draw_noise`'s;
  frames given as clean context are exact in x_t and left out of the loss. `min_snr_gamma`
  weights each example by `min_snr_weight` (None weighs all equally). `temporal_weight` > 0 adds
  lambda * ||Flow(x0_hat_t) - Flow(x0_hat_{t-1})||^2 on the predicted clean frames
  (`jax_flow.temporal_coherence_loss`: the mean squared change between consecutive optical-flow
  fields, 0 for a static video). Returns (loss scalar, per-example loss [B]).
  """
  t, eps = noise['t'], noise['eps'].astype(x0.dtype)
  clean = context_frames(noise['context'], x0.shape[1])
  t_frames = jnp.where(clean, 0., t[:, None])
  alpha, sigma = schedule.marginal(t_frames)
  x_t = expand(alpha, x0) * x0 + expand(sigma, x0) * eps
  pred = apply_fn(x_t, t_frames, tokens)
  err = jnp.square(pred.astype(jnp.float32) - target(x0, eps, alpha, sigma, prediction))
  per_frame = err.mean(axis=tuple(range(2, err.ndim)))  # [B, T]
  scored = ~clean
  per_example = (jnp.where(scored, per_frame, 0.).sum(1) /
                 jnp.maximum(scored.sum(1), 1).astype(jnp.float32))
  if min_snr_gamma:
    per_example = per_example * min_snr_weight(*schedule.alpha_sigma(t), prediction,
                                               min_snr_gamma)
  if temporal_weight:
    x0_hat = x0_eps(pred.astype(jnp.float32), x_t, alpha, sigma, prediction)[0]
    x0_hat = jnp.where(expand(clean, x0), x0, jnp.clip(x0_hat, -1., 1.))
    per_example = per_example + temporal_weight * jax_flow.temporal_coherence_loss(x0_hat)
  return per_example.mean(), per_example
