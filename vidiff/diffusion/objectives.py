"""Diffusion training objectives: what the model predicts and the loss against it."""

import jax
import jax.numpy as jnp

from vidiff.diffusion.schedules import Schedule
from vidiff.errors import check

PREDICTIONS = ('eps', 'v', 'x0')


def check_prediction(prediction: str) -> None:
  check(prediction in PREDICTIONS,
        f'diffusion.prediction={prediction!r}; use one of {", ".join(PREDICTIONS)}.')


def expand(a, x):
  """Broadcasts a per-example [B] array against x [B, ...]."""
  return a.reshape(a.shape + (1,) * (x.ndim - a.ndim))


def target(x0, eps, alpha, sigma, prediction: str):
  """The regression target for clean x0 [B,...], noise eps, alpha/sigma [B]."""
  alpha, sigma = expand(alpha, x0), expand(sigma, x0)
  return {'eps': eps, 'x0': x0, 'v': alpha * eps - sigma * x0}[prediction]


def x0_eps(pred, x_t, alpha, sigma, prediction: str):
  """Recovers (x0_hat, eps_hat) from a model prediction at x_t."""
  alpha, sigma = expand(alpha, x_t), expand(sigma, x_t)
  if prediction == 'eps':
    return (x_t - sigma * pred) / alpha, pred
  if prediction == 'x0':
    return pred, (x_t - alpha * pred) / sigma
  return alpha * x_t - sigma * pred, sigma * x_t + alpha * pred


def min_snr_weight(logsnr, prediction: str, gamma: float):
  """Min-SNR-gamma loss weights [B] (Hang et al. 2023, arXiv:2303.09556) for a prediction type.

  Equals min(SNR, gamma) on the x0 error, i.e. it caps the weight of low-noise steps, which
  otherwise dominate the loss while contributing little to what samples look like.
  """
  snr = jnp.exp(logsnr)
  capped = jnp.minimum(snr, gamma)
  return {'eps': capped / snr, 'v': capped / (snr + 1.), 'x0': capped}[prediction]


def draw_noise(rng, shape) -> dict:
  """The diffusion randomness of a batch of `shape` [B, ...]: {'t': U(0, 1) [B], 'eps': N(0, I)}.

  Drawn for the whole batch at once, so splitting the batch into microbatches afterwards
  (gradient accumulation) trains on exactly the same noisy examples.
  """
  t_rng, eps_rng = jax.random.split(rng)
  return {'t': jax.random.uniform(t_rng, shape[:1]), 'eps': jax.random.normal(eps_rng, shape)}


def diffusion_loss(apply_fn, x0, tokens, noise: dict, schedule: Schedule, prediction: str,
                   min_snr_gamma: float | None = None):
  """Mean squared error of the model's prediction. apply_fn(x_t, t, tokens) -> prediction.

  `noise` is `draw_noise`'s {'t' [B], 'eps' [B, ...]}; `min_snr_gamma` weights each example by
  `min_snr_weight` (None weighs all equally). Returns (loss scalar, per-example loss [B]).
  """
  t, eps = noise['t'], noise['eps'].astype(x0.dtype)
  alpha, sigma = schedule.alpha_sigma(t)
  x_t = expand(alpha, x0) * x0 + expand(sigma, x0) * eps
  pred = apply_fn(x_t, t, tokens)
  err = jnp.square(pred.astype(jnp.float32) - target(x0, eps, alpha, sigma, prediction))
  per_example = err.mean(axis=tuple(range(1, err.ndim)))
  if min_snr_gamma:
    per_example = per_example * min_snr_weight(schedule.logsnr(t), prediction, min_snr_gamma)
  return per_example.mean(), per_example
