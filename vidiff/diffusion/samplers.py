"""Samplers: each is one `lax.scan` over a time grid from t=1 (noise) to t=0 (data).

`denoise_fn(x_t, t [B]) -> (x0_hat, eps_hat)` hides the model, the prediction type and
classifier-free guidance, so samplers stay a few lines of math.
"""

import jax
import jax.numpy as jnp

from vidiff.diffusion import objectives
from vidiff.diffusion.schedules import Schedule


def guided_denoise_fn(apply_fn, tokens, null_tokens, guidance: float, schedule: Schedule,
                      prediction: str):
  """Classifier-free guidance: pred = uncond + guidance * (cond - uncond), on one 2B batch.

  apply_fn(x_t, t, tokens) -> prediction. guidance == 1 calls the model on the prompt only.
  """
  def denoise(x_t, t):
    alpha, sigma = schedule.alpha_sigma(t)
    if guidance == 1.0:
      pred = apply_fn(x_t, t, tokens)
    else:
      both = apply_fn(jnp.concatenate([x_t, x_t]), jnp.concatenate([t, t]),
                      jnp.concatenate([tokens, null_tokens]))
      cond, uncond = jnp.split(both, 2)
      pred = uncond + guidance * (cond - uncond)
    return objectives.x0_eps(pred, x_t, alpha, sigma, prediction)
  return denoise


def time_grid(steps: int):
  """[steps + 1] times from 1 to 0."""
  return jnp.linspace(1., 0., steps + 1)


def ddim(denoise_fn, noise, rng, schedule: Schedule, steps: int = 50, eta: float = 0.0,
         clip_x0: bool = True):
  """DDIM (eta=0 deterministic, eta=1 ancestral-like). noise: [B,...] -> samples [B,...]."""
  grid = time_grid(steps)
  batch = noise.shape[0]

  def step(x, inputs):
    t, s, key = inputs
    x0, eps = denoise_fn(x, jnp.full((batch,), t))
    if clip_x0:
      x0 = jnp.clip(x0, -1., 1.)
    a_t, s_t = schedule.alpha_sigma(t)
    a_s, s_s = schedule.alpha_sigma(s)
    a_s = jnp.where(s > 0, a_s, 1.)
    s_s = jnp.where(s > 0, s_s, 0.)
    # sigma of the injected noise (DDIM eq. 16), in alpha/sigma form.
    noise_std = eta * (s_s / s_t) * jnp.sqrt(jnp.maximum(1. - (a_t / a_s) ** 2, 0.))
    direction = jnp.sqrt(jnp.maximum(s_s ** 2 - noise_std ** 2, 0.))
    x_next = a_s * x0 + direction * eps + noise_std * jax.random.normal(key, x.shape, x.dtype)
    return x_next, None

  keys = jax.random.split(rng, steps)
  x, _ = jax.lax.scan(step, noise, (grid[:-1], grid[1:], keys))
  return x
