"""Noise schedules in continuous time t in [0, 1], defined through the log signal-to-noise ratio.

x_t = alpha(t) x_0 + sigma(t) eps with alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr).
`shift` > 1 moves every t to lower SNR by 2 log(shift) (resolution shift, SD3 / Simple
Diffusion), the usual correction when clips get larger than the ones a schedule was tuned on.
"""

import dataclasses

import jax
import jax.numpy as jnp

from vidiff.errors import check

LOGSNR_MIN, LOGSNR_MAX = -20., 20.


@dataclasses.dataclass(frozen=True)
class Schedule:
  """name: 'cosine' or 'linear' (DDPM betas 1e-4..0.02 over 1000 steps); shift: SNR shift."""
  name: str = 'cosine'
  shift: float = 1.0

  def __post_init__(self):
    check(self.name in ('cosine', 'linear'),
          f"diffusion.schedule={self.name!r}; use 'cosine' or 'linear'.")
    check(self.shift > 0, f'diffusion.shift={self.shift} must be > 0.')

  def logsnr(self, t):
    """t: [...] in [0, 1] -> log SNR [...], decreasing in t."""
    t = jnp.asarray(t, jnp.float32)
    if self.name == 'cosine':
      logsnr = -2. * jnp.log(jnp.tan(jnp.pi / 2 * jnp.clip(t, 1e-5, 1 - 1e-5)))
    else:
      log_alpha_bar = -1000. * (1e-4 * t + 0.5 * (0.02 - 1e-4) * t ** 2)
      logsnr = log_alpha_bar - jnp.log(-jnp.expm1(jnp.minimum(log_alpha_bar, -1e-7)))
    return jnp.clip(logsnr - 2. * jnp.log(self.shift), LOGSNR_MIN, LOGSNR_MAX)

  def alpha_sigma(self, t):
    """t: [...] -> (alpha [...], sigma [...]) with alpha^2 + sigma^2 = 1."""
    logsnr = self.logsnr(t)
    return jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))


def from_config(diffusion_config) -> Schedule:
  return Schedule(diffusion_config.schedule, diffusion_config.shift)
