"""Schedules, prediction targets and the DDIM sampler on an analytic case."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidiff.diffusion import objectives, samplers, schedules
from vidiff.errors import UserError


@pytest.mark.parametrize('name', ['cosine', 'linear'])
@pytest.mark.parametrize('shift', [1.0, 2.0])
def test_schedule_is_variance_preserving_and_monotone(name, shift):
  s = schedules.Schedule(name, shift)
  t = jnp.linspace(0, 1, 101)
  alpha, sigma = s.alpha_sigma(t)
  np.testing.assert_allclose(alpha ** 2 + sigma ** 2, 1., atol=1e-6)
  assert (jnp.diff(s.logsnr(t)) <= 0).all()
  assert alpha[0] > 0.99 and sigma[-1] > 0.99


def test_shift_lowers_snr():
  t = jnp.linspace(0.1, 0.9, 9)
  assert (schedules.Schedule('cosine', 2.).logsnr(t) < schedules.Schedule('cosine', 1.).logsnr(t)).all()


@pytest.mark.parametrize('prediction', objectives.PREDICTIONS)
def test_prediction_round_trip(prediction):
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  x0, eps = jax.random.normal(k1, (4, 3)), jax.random.normal(k2, (4, 3))
  alpha, sigma = schedules.Schedule().alpha_sigma(jnp.array([0.1, 0.4, 0.6, 0.9]))
  x_t = objectives.expand(alpha, x0) * x0 + objectives.expand(sigma, x0) * eps
  pred = objectives.target(x0, eps, alpha, sigma, prediction)
  x0_hat, eps_hat = objectives.x0_eps(pred, x_t, alpha, sigma, prediction)
  np.testing.assert_allclose(x0_hat, x0, atol=1e-4)
  np.testing.assert_allclose(eps_hat, eps, atol=1e-4)


def test_bad_prediction_is_a_user_error():
  with pytest.raises(UserError, match='diffusion.prediction'):
    objectives.check_prediction('score')


def gaussian_denoiser(mean, std, schedule):
  """Exact posterior mean E[x0 | x_t] for data ~ N(mean, std^2) (per dimension)."""
  def denoise(x_t, t):
    alpha, sigma = schedule.alpha_sigma(t)
    a, s = objectives.expand(alpha, x_t), objectives.expand(sigma, x_t)
    var = a ** 2 * std ** 2 + s ** 2
    x0 = mean + a * std ** 2 * (x_t - a * mean) / var
    return x0, (x_t - a * x0) / s
  return denoise


# Ancestral steps (eta=1) drop the posterior variance of x0 and need more steps to converge.
@pytest.mark.parametrize('eta,steps', [(0.0, 50), (1.0, 200)])
def test_ddim_samples_an_analytic_gaussian(eta, steps):
  schedule = schedules.Schedule('cosine')
  mean, std = 0.3, 0.5
  noise = jax.random.normal(jax.random.PRNGKey(0), (4000, 2))
  out = samplers.ddim(gaussian_denoiser(mean, std, schedule), noise, jax.random.PRNGKey(1),
                      schedule, steps=steps, eta=eta, clip_x0=False)
  np.testing.assert_allclose(out.mean(), mean, atol=0.03)
  np.testing.assert_allclose(out.std(), std, atol=0.03)


def test_ddim_eta0_is_deterministic():
  schedule = schedules.Schedule('cosine')
  noise = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
  run = lambda key: samplers.ddim(gaussian_denoiser(0., 0.5, schedule), noise, key, schedule, 20)
  np.testing.assert_array_equal(run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2)))


def test_guidance_one_equals_unguided():
  schedule = schedules.Schedule('cosine')
  apply = lambda x, t, tok: x * tok[:, :1].astype(x.dtype)
  tokens, null = jnp.full((2, 4), 3), jnp.ones((2, 4), jnp.int32)
  x, t = jnp.ones((2, 3)), jnp.full((2,), 0.5)
  guided = samplers.guided_denoise_fn(apply, tokens, null, 1.0, schedule, 'eps')(x, t)
  plain = objectives.x0_eps(apply(x, t, tokens), x, *schedule.alpha_sigma(t), 'eps')
  np.testing.assert_allclose(guided[0], plain[0])
  strong = samplers.guided_denoise_fn(apply, tokens, null, 3.0, schedule, 'eps')(x, t)
  # uncond pred = x, cond pred = 3x -> guided = x + 3 * 2x = 7x.
  np.testing.assert_allclose(strong[1], 7 * x)


@pytest.mark.parametrize('prediction', objectives.PREDICTIONS)
def test_min_snr_weight_is_min_snr_gamma_on_the_x0_error(prediction):
  """weight * (prediction error)^2 == min(SNR, gamma) * (x0 error)^2 for every prediction type."""
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  x0, eps, pred = (jax.random.normal(k, (4, 3)) for k in (k1, k2, k3))
  schedule = schedules.Schedule()
  t = jnp.array([0.05, 0.3, 0.6, 0.95])
  alpha, sigma = schedule.alpha_sigma(t)
  x_t = objectives.expand(alpha, x0) * x0 + objectives.expand(sigma, x0) * eps
  weight = objectives.min_snr_weight(schedule.logsnr(t), prediction, gamma=5.)
  pred_err = ((pred - objectives.target(x0, eps, alpha, sigma, prediction)) ** 2).sum(-1)
  x0_err = ((objectives.x0_eps(pred, x_t, alpha, sigma, prediction)[0] - x0) ** 2).sum(-1)
  snr = (alpha / sigma) ** 2
  np.testing.assert_allclose(weight * pred_err, jnp.minimum(snr, 5.) * x0_err, rtol=2e-3)
