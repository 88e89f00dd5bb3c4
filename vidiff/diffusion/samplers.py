"""Samplers: each is one `lax.scan` over a time grid from t=1 (noise) to t=0 (data).

`denoise_fn(x_t, t [B]) -> (x0_hat, eps_hat)` hides the model, the prediction type and
classifier-free guidance, so samplers stay a few lines of math and work with every schedule
(variance-preserving or rectified flow) and prediction.

`project(x, t) -> x`, if given, is applied to the initial noise (t = 1) and to the state after
every step (at its new time): the hook that conditions on known frames by replacement (long-video
splicing, image-to-video). Sampler signature: (denoise_fn, noise [B, ...], rng, schedule,
steps, *, eta, clip_x0, project) -> samples [B, ...].
"""

import jax
import jax.numpy as jnp

from vidiff.diffusion import objectives
from vidiff.diffusion.schedules import Schedule
from vidiff.errors import check


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


def _no_projection(x, t):
  del t
  return x


def _model(denoise_fn, x, t, clip_x0: bool):
  """(x0_hat, eps_hat) at scalar time t; clipping x0 to the data range keeps eps consistent."""
  x0, eps = denoise_fn(x, jnp.full((x.shape[0],), t))
  return (jnp.clip(x0, -1., 1.), eps) if clip_x0 else (x0, eps)


def _scan(step, x, rng, grid, project):
  """Runs step(x, (t, s, key)) -> x over consecutive (t, s) of `grid`, projecting after every
  step. x is taken as already projected."""
  def body(x, inputs):
    return project(step(x, inputs), inputs[1]), None

  keys = jax.random.split(rng, grid.shape[0] - 1)
  return jax.lax.scan(body, x, (grid[:-1], grid[1:], keys))[0]


def _transition_var(a_t, s_t, a_s, s_s):
  """sigma_{t|s}^2 = sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2: the variance of q(x_t | x_s)."""
  return jnp.maximum(s_t ** 2 - (a_t / a_s) ** 2 * s_s ** 2, 0.)


def _posterior_std(a_t, s_t, a_s, s_s):
  """Std of q(x_s | x_t, x0) for s < t: sigma_{t|s} sigma_s / sigma_t (Kingma et al. 2021)."""
  return jnp.sqrt(_transition_var(a_t, s_t, a_s, s_s)) * s_s / s_t


def ddim(denoise_fn, noise, rng, schedule: Schedule, steps: int = 50, *, eta: float = 0.0,
         clip_x0: bool = True, project=_no_projection):
  """DDIM (Song et al. 2021): eta=0 deterministic (the probability-flow ODE, first order in
  sigma/alpha), eta=1 injects DDPM's posterior noise (DDIM eq. 16). One model call per step."""
  def step(x, inputs):
    t, s, key = inputs
    x0, eps = _model(denoise_fn, x, t, clip_x0)
    a_t, s_t = schedule.alpha_sigma(t)
    a_s, s_s = schedule.marginal(s)
    noise_std = eta * _posterior_std(a_t, s_t, a_s, s_s)
    direction = jnp.sqrt(jnp.maximum(s_s ** 2 - noise_std ** 2, 0.))
    return a_s * x0 + direction * eps + noise_std * jax.random.normal(key, x.shape, x.dtype)
  return _scan(step, project(noise, 1.), rng, time_grid(steps), project)


def ddim_invert(denoise_fn, x0, schedule: Schedule, steps: int = 50):
  """Deterministic DDIM run backwards, data (t=0) -> noise (t=1): the latent that `ddim` with
  eta=0 maps back to about x0 (for editing and for checking the sampler). Each step moves
  t -> s > t with the model's eps at x_t; the first is evaluated at time s / 2 rather than 0,
  where eps = (x - alpha x0_hat) / sigma would divide by sigma ~ 0."""
  def step(x, inputs):
    t, s, _ = inputs
    x0_hat, eps = _model(denoise_fn, x, jnp.maximum(t, 0.5 * s), False)
    a_s, s_s = schedule.alpha_sigma(s)
    return a_s * x0_hat + s_s * eps
  return _scan(step, x0, jax.random.PRNGKey(0), time_grid(steps)[::-1], _no_projection)


def ddpm(denoise_fn, noise, rng, schedule: Schedule, steps: int = 1000, *, eta: float = 1.0,
         clip_x0: bool = True, project=_no_projection):
  """Ancestral DDPM (Ho et al. 2020): x_s ~ q(x_s | x_t, x0 = x0_hat), the Gaussian posterior
  with mean (a_{t|s} s_s^2 x_t + a_s s_{t|s}^2 x0) / s_t^2. One model call per step; `eta`
  is ignored (always 1)."""
  del eta

  def step(x, inputs):
    t, s, key = inputs
    x0, _ = _model(denoise_fn, x, t, clip_x0)
    a_t, s_t = schedule.alpha_sigma(t)
    a_s, s_s = schedule.marginal(s)
    var_ts = _transition_var(a_t, s_t, a_s, s_s)
    mean = ((a_t / a_s) * s_s ** 2 * x + a_s * var_ts * x0) / s_t ** 2
    return mean + _posterior_std(a_t, s_t, a_s, s_s) * jax.random.normal(key, x.shape, x.dtype)
  return _scan(step, project(noise, 1.), rng, time_grid(steps), project)


def _velocity(denoise_fn, schedule, x, t, clip_x0):
  """d x_t / dt of the probability-flow ODE: alpha'(t) x0_hat + sigma'(t) eps_hat."""
  x0, eps = _model(denoise_fn, x, t, clip_x0)
  da, ds = schedule.rates(t)
  return da * x0 + ds * eps


def euler(denoise_fn, noise, rng, schedule: Schedule, steps: int = 50, *, eta: float = 0.0,
          clip_x0: bool = False, project=_no_projection):
  """Euler on the probability-flow ODE in t: x_s = x_t + (s - t) v(x_t, t). For rectified flow
  v = eps - x0, the standard flow-matching sampler. One model call per step; `eta` ignored."""
  del eta

  def step(x, inputs):
    t, s, _ = inputs
    return x + (s - t) * _velocity(denoise_fn, schedule, x, t, clip_x0)
  return _scan(step, project(noise, 1.), rng, time_grid(steps), project)


def heun(denoise_fn, noise, rng, schedule: Schedule, steps: int = 25, *, eta: float = 0.0,
         clip_x0: bool = False, project=_no_projection):
  """Heun's second-order method on the probability-flow ODE in t (Karras et al. 2022, Alg. 1):
  an Euler step, then the trapezoid of the velocities at both ends. The last step (to t = 0)
  is plain Euler, so `steps` cost 2 * steps - 1 model calls; `eta` ignored."""
  del eta
  vel = lambda x, t: _velocity(denoise_fn, schedule, x, t, clip_x0)

  def step(x, inputs):
    t, s, _ = inputs
    v_t = vel(x, t)
    return x + (s - t) * 0.5 * (v_t + vel(x + (s - t) * v_t, s))

  grid = time_grid(steps)
  x = _scan(step, project(noise, 1.), rng, grid[:-1], project)
  return project(x + (grid[-1] - grid[-2]) * vel(x, grid[-2]), grid[-1])


SAMPLERS = {'ddim': ddim, 'ddpm': ddpm, 'euler': euler, 'heun': heun}


def model_calls(sampler: str, steps: int) -> int:
  """Model evaluations (per guidance branch) a sampler makes in `steps` steps."""
  return 2 * steps - 1 if sampler == 'heun' else steps


def get(name: str):
  """The sampler function called `name`; an unknown name is a UserError naming the choices."""
  check(name in SAMPLERS, f'sampler {name!r} is unknown; use one of {", ".join(SAMPLERS)}.')
  return SAMPLERS[name]
