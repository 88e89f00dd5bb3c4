"""Schedules, prediction targets and the samplers on an analytic case (Gaussian data, whose exact
denoiser is known in closed form)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidiff.diffusion import objectives, samplers, schedules
from vidiff.errors import UserError

SCHEDULES = [schedules.Schedule('cosine'), schedules.Schedule('linear'),
             schedules.Schedule('cosine', 2.), schedules.Schedule('rectified_flow'),
             schedules.Schedule('rectified_flow', 3.)]


@pytest.mark.parametrize('name', ['cosine', 'linear'])
@pytest.mark.parametrize('shift', [1.0, 2.0])
def test_schedule_is_variance_preserving_and_monotone(name, shift):
  s = schedules.Schedule(name, shift)
  t = jnp.linspace(0, 1, 101)
  alpha, sigma = s.alpha_sigma(t)
  np.testing.assert_allclose(alpha ** 2 + sigma ** 2, 1., atol=1e-6)
  assert (jnp.diff(s.logsnr(t)) <= 0).all()
  assert alpha[0] > 0.99 and sigma[-1] > 0.99


@pytest.mark.parametrize('shift', [1.0, 3.0])
def test_rectified_flow_is_a_straight_path(shift):
  s = schedules.Schedule('rectified_flow', shift)
  t = jnp.linspace(0, 1, 101)
  alpha, sigma = s.alpha_sigma(t)
  np.testing.assert_allclose(alpha + sigma, 1., atol=1e-6)
  np.testing.assert_allclose(s.alpha_sigma(jnp.array([0., 1.]))[1], [0., 1.])
  inner = t[5:-5]
  np.testing.assert_allclose(s.logsnr(inner), 2 * jnp.log(s.alpha_sigma(inner)[0] /
                                                          s.alpha_sigma(inner)[1]), atol=1e-4)


@pytest.mark.parametrize('name', schedules.NAMES)
def test_shift_lowers_snr_by_two_log_shift(name):
  t = jnp.linspace(0.1, 0.9, 9)
  shifted, plain = schedules.Schedule(name, 2.).logsnr(t), schedules.Schedule(name, 1.).logsnr(t)
  np.testing.assert_allclose(plain - shifted, 2 * np.log(2.), atol=1e-4)


@pytest.mark.parametrize('schedule', SCHEDULES, ids=str)
def test_rates_are_the_derivative_of_the_path(schedule):
  t = jnp.linspace(0.1, 0.9, 9)
  h = 1e-3
  da, ds = schedule.rates(t)
  (a1, s1), (a0, s0) = schedule.alpha_sigma(t + h), schedule.alpha_sigma(t - h)
  np.testing.assert_allclose(da, (a1 - a0) / (2 * h), rtol=1e-2, atol=1e-3)
  np.testing.assert_allclose(ds, (s1 - s0) / (2 * h), rtol=1e-2, atol=1e-3)


def test_unknown_schedule_is_a_user_error():
  with pytest.raises(UserError, match='rectified_flow'):
    schedules.Schedule('sqrt')


@pytest.mark.parametrize('schedule', SCHEDULES, ids=str)
@pytest.mark.parametrize('prediction', objectives.PREDICTIONS)
def test_prediction_round_trip(prediction, schedule):
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  x0, eps = jax.random.normal(k1, (4, 3)), jax.random.normal(k2, (4, 3))
  alpha, sigma = schedule.alpha_sigma(jnp.array([0.1, 0.4, 0.6, 0.9]))
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


# Stochastic samplers plug in the posterior mean of x0 where the true reverse step would
# integrate over x0, so they need more steps than the ODE samplers to reach the right variance.
@pytest.mark.parametrize('schedule', [schedules.Schedule('cosine'),
                                      schedules.Schedule('rectified_flow')], ids=str)
@pytest.mark.parametrize('sampler,eta,steps', [('ddim', 0.0, 50), ('ddim', 1.0, 200),
                                               ('ddpm', 1.0, 200), ('euler', 0.0, 100),
                                               ('heun', 0.0, 25)])
def test_sampler_draws_an_analytic_gaussian(sampler, eta, steps, schedule):
  mean, std = 0.3, 0.5
  noise = jax.random.normal(jax.random.PRNGKey(0), (8000, 2))
  out = samplers.get(sampler)(gaussian_denoiser(mean, std, schedule), noise,
                              jax.random.PRNGKey(1), schedule, steps, eta=eta, clip_x0=False)
  np.testing.assert_allclose(out.mean(), mean, atol=0.02)
  np.testing.assert_allclose(out.std(), std, atol=0.02)


@pytest.mark.parametrize('schedule', [schedules.Schedule('cosine'),
                                      schedules.Schedule('rectified_flow')], ids=str)
def test_heun_is_second_order(schedule):
  """Doubling the steps divides Heun's error by about 4 and Euler's by about 2."""
  noise = jax.random.normal(jax.random.PRNGKey(0), (256, 2))
  denoise = gaussian_denoiser(0.3, 0.5, schedule)
  run = lambda name, steps: samplers.get(name)(denoise, noise, jax.random.PRNGKey(1), schedule,
                                               steps, clip_x0=False)
  exact = run('heun', 400)
  error = lambda name, steps: float(jnp.abs(run(name, steps) - exact).mean())
  assert error('heun', 20) / error('heun', 40) > 3.
  assert 1.5 < error('euler', 20) / error('euler', 40) < 2.5


@pytest.mark.parametrize('sampler', ['ddim', 'euler', 'heun'])
def test_ode_samplers_are_deterministic(sampler):
  schedule = schedules.Schedule('cosine')
  noise = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
  run = lambda key: samplers.get(sampler)(gaussian_denoiser(0., 0.5, schedule), noise, key,
                                          schedule, 20)
  np.testing.assert_array_equal(run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2)))


@pytest.mark.parametrize('sampler', ['ddim', 'ddpm'])
def test_stochastic_samplers_depend_on_the_key_only(sampler):
  schedule = schedules.Schedule('cosine')
  noise = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
  run = lambda key: samplers.get(sampler)(gaussian_denoiser(0., 0.5, schedule), noise, key,
                                          schedule, 20, eta=1.0)
  np.testing.assert_array_equal(run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(1)))
  assert not np.allclose(run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2)))


@pytest.mark.parametrize('schedule', [schedules.Schedule('cosine'),
                                      schedules.Schedule('rectified_flow')], ids=str)
def test_ddim_inversion_reconstructs(schedule):
  denoise = gaussian_denoiser(0.3, 0.5, schedule)
  x0 = 0.3 + 0.5 * jax.random.normal(jax.random.PRNGKey(0), (64, 2))
  latent = samplers.ddim_invert(denoise, x0, schedule, steps=200)
  assert 0.8 < latent.std() < 1.2  # a latent that looks like noise
  back = samplers.ddim(denoise, latent, jax.random.PRNGKey(1), schedule, 200, clip_x0=False)
  np.testing.assert_allclose(back, x0, atol=0.03)
  assert jnp.abs(back - x0).mean() < 0.01


def test_project_pins_the_known_part():
  """A projection applied after every step leaves the known coordinates exactly at the data."""
  schedule = schedules.Schedule('cosine')
  known = jnp.array([0.7, -0.2])
  eps = jax.random.normal(jax.random.PRNGKey(3), (16, 2))

  def project(x, t):
    a, s = schedule.marginal(t)
    return x.at[:, 0].set(a * known[0] + s * eps[:, 0])

  noise = jax.random.normal(jax.random.PRNGKey(0), (16, 2))
  for name in samplers.SAMPLERS:
    out = samplers.get(name)(gaussian_denoiser(0., 0.5, schedule), noise, jax.random.PRNGKey(1),
                             schedule, 10, project=project)
    np.testing.assert_array_equal(out[:, 0], known[0])


def test_unknown_sampler_is_a_user_error():
  with pytest.raises(UserError, match='ddim, ddpm, euler, heun'):
    samplers.get('plms')


def test_guidance_one_equals_unguided():
  schedule = schedules.Schedule('cosine')
  apply = lambda x, t, tok: x * tok[:, :1].astype(x.dtype)
  tokens, null = jnp.full((2, 4), 3), jnp.ones((2, 4), jnp.int32)
  x, t = jnp.ones((2, 3)), jnp.full((2,), 0.5)
  guided = samplers.guided_denoise_fn(apply, tokens, null, 1.0, schedule, 'eps')(x, t)
  plain = objectives.x0_eps(apply(x, t, tokens), x, *schedule.alpha_sigma(t), 'eps')
  np.testing.assert_allclose(guided[0], plain[0])
  # The 2B-batch formula at a scale of 1 + 1e-6 agrees with the prompt-only shortcut.
  near_one = samplers.guided_denoise_fn(apply, tokens, null, 1.0 + 1e-6, schedule, 'eps')(x, t)
  np.testing.assert_allclose(near_one[0], plain[0], atol=1e-4)
  strong = samplers.guided_denoise_fn(apply, tokens, null, 3.0, schedule, 'eps')(x, t)
  # uncond pred = x, cond pred = 3x -> guided = x + 3 * 2x = 7x.
  np.testing.assert_allclose(strong[1], 7 * x)


@pytest.mark.parametrize('schedule', SCHEDULES[:1] + SCHEDULES[3:4], ids=str)
@pytest.mark.parametrize('prediction', objectives.PREDICTIONS)
def test_min_snr_weight_is_min_snr_gamma_on_the_x0_error(prediction, schedule):
  """weight * (prediction error)^2 == min(SNR, gamma) * (x0 error)^2 for every prediction type."""
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  x0, eps, pred = (jax.random.normal(k, (4, 3)) for k in (k1, k2, k3))
  t = jnp.array([0.05, 0.3, 0.6, 0.95])
  alpha, sigma = schedule.alpha_sigma(t)
  x_t = objectives.expand(alpha, x0) * x0 + objectives.expand(sigma, x0) * eps
  weight = objectives.min_snr_weight(alpha, sigma, prediction, gamma=5.)
  pred_err = ((pred - objectives.target(x0, eps, alpha, sigma, prediction)) ** 2).sum(-1)
  x0_err = ((objectives.x0_eps(pred, x_t, alpha, sigma, prediction)[0] - x0) ** 2).sum(-1)
  snr = (alpha / sigma) ** 2
  np.testing.assert_allclose(weight * pred_err, jnp.minimum(snr, 5.) * x0_err, rtol=2e-3)


def test_context_frames_are_drawn_at_the_configured_rate():
  noise = objectives.draw_noise(jax.random.PRNGKey(0), (4000, 8, 1, 1, 1), 0.25, 4)
  context = np.asarray(noise['context'])
  assert 0.22 < (context > 0).mean() < 0.28 and context.max() == 4
  assert set(np.unique(context)) == {0, 1, 2, 3, 4}
  assert not objectives.draw_noise(jax.random.PRNGKey(0), (64, 8, 1), 0., 4)['context'].any()


def test_context_frames_are_clean_inputs_at_time_zero_and_out_of_the_loss():
  schedule = schedules.Schedule('cosine')
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  x0 = jax.random.uniform(k1, (2, 5, 3, 3, 3), minval=-1, maxval=1)
  noise = {'t': jnp.array([0.7, 0.4]), 'eps': jax.random.normal(k2, x0.shape),
           'context': jnp.array([2, 0])}
  seen = {}

  def apply(x_t, t, tokens):
    del tokens
    seen.update(x_t=x_t, t=t)
    return jnp.zeros_like(x_t)

  loss, _ = objectives.diffusion_loss(apply, x0, None, noise, schedule, 'x0')
  np.testing.assert_array_equal(seen['x_t'][0, :2], x0[0, :2])
  np.testing.assert_allclose(seen['t'], [[0, 0, .7, .7, .7], [.4] * 5])
  # The loss of a zero prediction is the mean square of x0 over the scored frames only.
  want = (jnp.square(x0[0, 2:]).mean() + jnp.square(x0[1]).mean()) / 2
  np.testing.assert_allclose(loss, want, rtol=1e-5)


def _self_step_case():
  schedule = schedules.Schedule('cosine', 2.)
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  x0 = jax.random.uniform(k1, (3, 4, 2, 2, 3), minval=-1, maxval=1)
  noise = {'t': jnp.array([0.2, 0.5, 0.3]), 'eps': jax.random.normal(k2, x0.shape),
           'context': jnp.array([0, 0, 1]), 'gap': jnp.array([0.5, 1.0, 0.8]),
           'self': jnp.array([True, False, True])}
  return schedule, x0, noise


def test_a_perfect_models_own_step_is_the_training_input():
  """DDIM from t1 to t with the true x0 lands on alpha_t x0 + sigma_t eps: the same x_t."""
  schedule, x0, noise = _self_step_case()
  own = objectives.own_step_input(lambda x, t, tok: x0, x0, None, noise, schedule, 'x0', 0.5)
  alpha, sigma = schedule.marginal(jnp.where(objectives.context_frames(noise['context'], 4), 0.,
                                             noise['t'][:, None]))
  want = (objectives.expand(alpha, x0) * x0 + objectives.expand(sigma, x0) * noise['eps'])
  np.testing.assert_allclose(own, want, atol=1e-5)


def test_self_step_clips_see_the_models_step_and_keep_the_true_target():
  """A model that halves x_t: clips with 'self' get its DDIM step from t1 = t + gap/2 (1 - t) as
  input (context frames still clean), the others the usual x_t; the target is x0 for all."""
  schedule, x0, noise = _self_step_case()
  seen = []

  def apply(x_t, t, tokens):
    del tokens
    seen.append((x_t, t))
    return 0.5 * x_t

  loss, per_example = objectives.diffusion_loss(apply, x0, None, noise, schedule, 'x0',
                                                self_step_gap=0.5)
  (x_t1, t1), (x_t, t) = seen  # the model's own step first, then the scored prediction
  np.testing.assert_allclose(t1[:, 1], noise['t'] + 0.5 * noise['gap'] * (1 - noise['t']))
  a1, s1 = schedule.marginal(t1)
  a, s = schedule.marginal(t)
  x0_hat = jnp.clip(0.5 * x_t1, -1., 1.)  # clipped as the samplers clip pixels
  eps_hat = (x_t1 - objectives.expand(a1, x0) * x0_hat) / objectives.expand(s1, x0)
  step = objectives.expand(a, x0) * x0_hat + objectives.expand(s, x0) * eps_hat
  plain = objectives.expand(a, x0) * x0 + objectives.expand(s, x0) * noise['eps']
  np.testing.assert_allclose(x_t[0], step[0], atol=1e-5)
  np.testing.assert_allclose(x_t[1], plain[1], atol=1e-6)
  np.testing.assert_allclose(x_t[2, 1:], step[2, 1:], atol=1e-5)
  np.testing.assert_array_equal(x_t[2, 0], x0[2, 0])
  assert np.abs(x_t[0] - plain[0]).max() > 0.1  # the step is not the usual input
  want = [jnp.square(0.5 * x_t[i, c:] - x0[i, c:]).mean() for i, c in enumerate([0, 0, 1])]
  np.testing.assert_allclose(per_example, want, rtol=1e-5)


def test_self_step_draws_leave_t_eps_and_context_unchanged():
  a = objectives.draw_noise(jax.random.PRNGKey(0), (2000, 3, 1), 0.5, 2)
  b = objectives.draw_noise(jax.random.PRNGKey(0), (2000, 3, 1), 0.5, 2, self_step_prob=0.25)
  for key in ('t', 'eps', 'context'):
    np.testing.assert_array_equal(a[key], b[key])
  assert not a['self'].any() and 0.22 < float(b['self'].mean()) < 0.28
