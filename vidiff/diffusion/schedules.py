"""Noise schedules in continuous time t in [0, 1]: x_t = alpha(t) x_0 + sigma(t) eps.

Variance-preserving schedules ('cosine', 'linear') are defined through the log signal-to-noise
ratio: alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr). 'rectified_flow' is the straight
path of flow matching (Liu et al. 2022, arXiv:2209.03003; Lipman et al. 2022): alpha = 1 - t,
sigma = t. `shift` > 1 moves every t to lower SNR by 2 log(shift) (resolution shift, SD3 /
Simple Diffusion), the usual correction when clips get larger than the ones a schedule was
tuned on; for rectified flow it is SD3's t' = shift t / (1 + (shift - 1) t).
"""

import dataclasses

import jax
import jax.numpy as jnp

from vidiff.errors import check

LOGSNR_MIN, LOGSNR_MAX = -20., 20.
NAMES = ('cosine', 'linear', 'rectified_flow')


@dataclasses.dataclass(frozen=True)
class Schedule:
  """name: one of NAMES ('linear': DDPM betas 1e-4..0.02 over 1000 steps); shift: SNR shift."""
  name: str = 'cosine'
  shift: float = 1.0

  def __post_init__(self):
    check(self.name in NAMES, f'diffusion.schedule={self.name!r}; use one of {", ".join(NAMES)}.')
    check(self.shift > 0, f'diffusion.shift={self.shift} must be > 0.')

  def logsnr(self, t):
    """t: [...] in [0, 1] -> log SNR [...], decreasing in t, clipped to [-20, 20]."""
    t = jnp.asarray(t, jnp.float32)
    if self.name == 'rectified_flow':
      t = jnp.clip(self._shifted(t), 1e-9, 1 - 1e-9)
      return jnp.clip(2. * (jnp.log1p(-t) - jnp.log(t)), LOGSNR_MIN, LOGSNR_MAX)
    if self.name == 'cosine':
      logsnr = -2. * jnp.log(jnp.tan(jnp.pi / 2 * jnp.clip(t, 1e-5, 1 - 1e-5)))
    else:
      log_alpha_bar = -1000. * (1e-4 * t + 0.5 * (0.02 - 1e-4) * t ** 2)
      logsnr = log_alpha_bar - jnp.log(-jnp.expm1(jnp.minimum(log_alpha_bar, -1e-7)))
    return jnp.clip(logsnr - 2. * jnp.log(self.shift), LOGSNR_MIN, LOGSNR_MAX)

  def equivalent_t(self, u, shift: float):
    """The times t [...] at which this schedule has the logSNR that the same schedule with
    `shift` has at u [...]: how a batch is noised and sampled at another shift (image batches,
    `diffusion.image_shift`) while the model keeps one meaning for t. Inverted numerically on a
    grid of 4097 times (logSNR is monotone in t)."""
    grid = jnp.linspace(0., 1., 4097)
    target = dataclasses.replace(self, shift=shift).logsnr(u)
    # np.interp wants increasing x: -logSNR increases with t.
    return jnp.interp(-target, -self.logsnr(grid), grid)

  def _shifted(self, t):
    return self.shift * t / (1. + (self.shift - 1.) * t)

  def alpha_sigma(self, t):
    """t: [...] -> (alpha [...], sigma [...]); alpha^2 + sigma^2 = 1 except for rectified flow."""
    if self.name == 'rectified_flow':
      t = self._shifted(jnp.asarray(t, jnp.float32))
      return 1. - t, t
    logsnr = self.logsnr(t)
    return jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))

  def marginal(self, t):
    """alpha_sigma with the data end exact: (1, 0) at t == 0, where the logSNR clip would
    leave sigma ~ 5e-5. What a sampler's last step lands on."""
    alpha, sigma = self.alpha_sigma(t)
    return jnp.where(t > 0, alpha, 1.), jnp.where(t > 0, sigma, 0.)

  def rates(self, t):
    """(d alpha / dt, d sigma / dt) at t [...]: the probability-flow ODE's velocity is
    alpha' x0 + sigma' eps. Evaluated at t clipped to [1e-3, 1 - 1e-3], inside the region where
    the logSNR clip would make the derivative vanish."""
    t = jnp.clip(jnp.asarray(t, jnp.float32), 1e-3, 1 - 1e-3)
    return jax.jvp(self.alpha_sigma, (t,), (jnp.ones_like(t),))[1]


def from_config(diffusion_config) -> Schedule:
  return Schedule(diffusion_config.schedule, diffusion_config.shift)
