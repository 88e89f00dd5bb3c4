"""Long videos: chunk layout, exact splicing at chunk boundaries, window fusion, FreeNoise, and
`generate` (seeds, image-to-video, one compile per shape)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import quickstart
from test_diffusion import gaussian_denoiser
from vidiff import generate, train
from vidiff.diffusion import long_video, objectives, samplers, schedules
from vidiff.errors import UserError


def test_chunks_step_by_chunk_minus_overlap_and_end_at_the_last_frame():
  assert long_video.chunk_starts(20, 8, 2) == [0, 6, 12]
  assert long_video.chunk_starts(64, 8, 2) == list(range(0, 57, 6)) + [56]
  assert long_video.chunk_starts(8, 8, 2) == [0]


@pytest.mark.parametrize('frames,chunk,overlap,trim,fragment', [
    (6, 8, 2, 0, 'smaller than one chunk'), (16, 8, 8, 0, 'overlap=8'),
    (16, 8, -1, 0, 'overlap=-1'), (16, 8, 2, 6, 'trim=6'), (16, 8, 2, -1, 'trim=-1')])
def test_bad_chunking_is_a_user_error(frames, chunk, overlap, trim, fragment):
  with pytest.raises(UserError, match=fragment):
    long_video.chunk_starts(frames, chunk, overlap, trim)


def test_trim_redraws_each_chunks_last_frames_in_the_next_chunk():
  """Chunks of 4 sharing 1 context frame, trim 1: a chunk's last frame is sampled again by
  the next chunk, which is given the frame before it; the last chunk is kept whole."""
  calls = []

  def sample_chunk(noise, known, mask, index):
    calls.append(mask.copy())
    return np.where(mask[None, :, None, None, None] > 0, known, index + 1.)

  video = long_video.splice(sample_chunk, np.zeros((1, 10, 2, 2, 3), np.float32), 4, 1,
                            progress=False, trim=1)
  assert long_video.chunk_starts(10, 4, 1, trim=1) == [0, 2, 4, 6]
  assert all(list(m) == [1, 0, 0, 0] for m in calls[1:]) and not calls[0].any()
  np.testing.assert_array_equal(video[0, :, 0, 0, 0], [1, 1, 1, 2, 2, 3, 3, 4, 4, 4])


@pytest.mark.parametrize('offset', [0, 1, 2, 3, 4, 5])
def test_shifted_windows_cover_every_frame(offset):
  starts = np.asarray(long_video.window_starts(30, 8, 6, offset))
  covered = np.zeros(30, bool)
  for s in starts:
    covered[s:s + 8] = True
  assert covered.all() and starts.min() == 0 and starts.max() == 22


def test_window_fusion_of_a_framewise_denoiser_is_exact():
  """Averaging windows of a denoiser that treats frames independently changes nothing."""
  schedule = schedules.Schedule('cosine')
  denoise = gaussian_denoiser(0.2, 0.5, schedule)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 21, 3, 3, 3))
  t = np.full((2,), 0.6, np.float32)
  fused = long_video.windowed_denoise_fn(denoise, 21, 8, 5, steps=10)(x, t)
  for got, want in zip(fused, denoise(x, t)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_anchored_windows_continue_the_clean_estimate_of_the_windows_before():
  """A denoiser that copies a clean (t = 0) first frame of its window onto the whole window and
  else returns its input: anchored, windows after the first continue window 0's frame 4."""
  def denoise(x, t):
    anchor = (t[:, :1] == 0)[:, :, None, None, None]
    return jnp.where(anchor, x[:, :1], x), jnp.zeros_like(x)

  x = jax.random.normal(jax.random.PRNGKey(0), (2, 12, 2, 2, 3))
  t = np.ones((2,), np.float32)  # step 0: windows start at 0, 4, 4 (window 8, stride 4)
  free = long_video.windowed_denoise_fn(denoise, 12, 8, 4, steps=10)(x, t)[0]
  np.testing.assert_allclose(free, x, atol=1e-6)
  anchored = long_video.windowed_denoise_fn(denoise, 12, 8, 4, steps=10, anchor=1)
  anchored = anchored(x, t)[0]
  np.testing.assert_allclose(anchored[:, :4], x[:, :4], atol=1e-6)  # window 0 alone
  np.testing.assert_allclose(anchored[:, 8:], np.repeat(x[:, 4:5], 4, axis=1), atol=1e-6)


def test_anchors_need_overlapping_windows():
  denoise = lambda x, t: (x, x)
  with pytest.raises(UserError, match='overlap of at least 3'):
    long_video.windowed_denoise_fn(denoise, 12, 8, 6, steps=10, anchor=3)


def test_freenoise_reuses_shuffled_earlier_noise():
  noise = np.random.default_rng(0).normal(size=(2, 20, 2, 2, 3)).astype(np.float32)
  out = long_video.freenoise(noise, window=8, stride=4)
  np.testing.assert_array_equal(out[:, :8], noise[:, :8])
  for start in (8, 12, 16):
    block, source = out[:, start:start + 4], out[:, start - 8:start - 4]
    key = lambda a: sorted(a[0, :, 0, 0, 0].tolist())
    assert key(block) == key(source)  # the same frames of noise, in another order


def correlated_denoiser(rho: float, schedule):
  """Exact E[x0 | x_t] for two-frame data [B, 2, 1, 1, 1] ~ N(0, [[1, rho], [rho, 1]])."""
  cov = np.array([[1., rho], [rho, 1.]], np.float32)

  def denoise(x_t, t):
    alpha, sigma = schedule.alpha_sigma(t)
    solve = lambda v, a, s: a * cov @ jnp.linalg.solve(a ** 2 * cov + s ** 2 * jnp.eye(2), v)
    x0 = jax.vmap(solve)(x_t[:, :, 0, 0, 0], alpha, sigma)[:, :, None, None, None]
    return x0, (x_t - objectives.expand(alpha, x_t) * x0) / objectives.expand(sigma, x_t)
  return denoise


def test_reconstruction_guidance_corrects_the_bias_of_replacement():
  """Frame 0 known = 1.5, frames correlated 0.9: frame 1 should come out ~ N(1.35, 0.44^2).
  Replacement alone (the exact denoiser sees frame 0 only through its noisy value) lands near
  0.66; reconstruction guidance pulls it to the true conditional as its weight grows."""
  schedule, rho, value = schedules.Schedule('cosine'), 0.9, 1.5
  noise = jax.random.normal(jax.random.PRNGKey(0), (4000, 2, 1, 1, 1))
  known, mask = jnp.zeros_like(noise).at[:, 0].set(value), jnp.array([1., 0.])
  project = long_video.replace_known(known, mask, noise, schedule)
  errors = []
  for weight in (0., 1., 4.):
    denoise = correlated_denoiser(rho, schedule)
    if weight:
      denoise = long_video.reconstruction_guided(denoise, known, mask, weight, schedule)
    out = samplers.ddim(denoise, noise, jax.random.PRNGKey(1), schedule, 50, clip_x0=False,
                        project=project)
    np.testing.assert_array_equal(out[:, 0], known[:, 0])
    errors.append(abs(float(out[:, 1].mean()) - rho * value))
  assert errors[0] > 0.5 and errors[0] > errors[1] > errors[2] and errors[2] < 0.1, errors


@pytest.fixture(scope='module')
def tiny_setup():
  from configs import quickstart  # pylint: disable=import-outside-toplevel
  config = quickstart.get_config('unet3d,tiny')
  config.mesh.update(data=2, fsdp=2, time=2)
  setup = train.make_setup(config)
  return setup, train.init_state(setup).params


def test_splice_reproduces_the_overlap_exactly_and_compiles_once(tiny_setup):
  setup, params = tiny_setup
  options = generate.Options(num_frames=10, steps=3)
  fn = generate.sampler_fn(setup, options)
  tokens = jax.device_put(np.ones((4, 16), np.int32), setup.batch_shardings['tokens'])
  chunks = []

  def sample_chunk(noise, known, mask, index):
    with setup.context():
      out = np.asarray(fn(params, tokens, noise, jax.random.PRNGKey(index), known, mask))
    chunks.append((out, known, mask))
    return out

  noise = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (4, 10, 16, 16, 3)))
  video = long_video.splice(sample_chunk, noise, chunk_frames=4, overlap=1, progress=False)
  assert len(chunks) == 3  # starts 0, 3, 6
  for (prev, _, _), (out, known, mask) in zip(chunks, chunks[1:]):
    np.testing.assert_array_equal(mask, [1, 0, 0, 0])
    np.testing.assert_array_equal(out[:, 0], prev[:, -1])  # bitwise: the seam frame is kept
  np.testing.assert_array_equal(video[:, 6:], chunks[-1][0])
  assert not np.allclose(video[:, 3], video[:, 4])
  assert fn._cache_size() == 1  # pylint: disable=protected-access


@pytest.mark.parametrize('long_mode,reconstruction', [('splice', 0.), ('window', 0.),
                                                       ('splice', 2.)])
def test_generate_is_reproducible_and_honours_the_init_image(tiny_setup, long_mode,
                                                             reconstruction):
  setup, params = tiny_setup
  image = np.linspace(-1, 1, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3)
  options = generate.Options(num_frames=10, steps=2, long_mode=long_mode, seed=3, guidance=2.,
                             reconstruction=reconstruction)
  prompts = ['a red circle moving left', 'a blue square moving up', 'a green triangle']
  run = lambda: generate.generate(setup, params, prompts, options, init_image=image,
                                  progress=False)
  first, second = run(), run()
  assert first.shape == (3, 10, 16, 16, 3) and first.dtype == np.uint8
  np.testing.assert_array_equal(first, second)
  want = np.round((image + 1) * 127.5)
  assert np.abs(first[:, 0].astype(np.float32) - want).max() <= 1
  other = generate.generate(setup, params, prompts[:1], options, init_image=image, progress=False)
  np.testing.assert_array_equal(other[0], first[0])  # a video does not depend on its batch


def test_generate_rejects_chunks_the_model_cannot_take(tiny_setup):
  setup, params = tiny_setup
  setup.config.model.temporal_downsample = (True, False)
  try:
    with pytest.raises(UserError, match='chunk_frames'):
      generate.generate(setup, params, ['a red circle'],
                        generate.Options(num_frames=9, chunk_frames=3, overlap=1), progress=False)
  finally:
    setup.config.model.temporal_downsample = (False, False)


def test_plan_lays_out_videos_and_checks_options_without_parameters(tiny_setup):
  """What `vidiff.sample` checks before it restores a checkpoint."""
  setup, _ = tiny_setup
  plan = lambda **kw: generate.plan(setup, generate.Options(**kw), num_prompts=2)
  assert plan(num_frames=10) == generate.Plan((10, 16, 16, 3), 4, 1, 'splice', 0)
  assert plan(num_frames=10, long_mode='window', trim=2) == generate.Plan(
      (10, 16, 16, 3), 4, 2, 'window', 0)
  assert plan(num_frames=4, trim=2).mode == 'single'
  with pytest.raises(UserError, match='overlap=4'):
    plan(num_frames=12, overlap=4)
  context = setup.config.diffusion.context.prob
  setup.config.diffusion.context.prob = 0.
  try:
    with pytest.raises(UserError, match='first_frame'):
      plan(num_frames=4, first_frame=True)
  finally:
    setup.config.diffusion.context.prob = context


def test_zero_steps_is_a_user_error(tiny_setup):
  setup, params = tiny_setup
  with pytest.raises(UserError, match='at least 1 step'):
    generate.generate(setup, params, ['a red circle'], generate.Options(num_frames=4, steps=0),
                      progress=False)


def test_one_frame_videos_need_no_overlap(tiny_setup):
  setup, params = tiny_setup
  video = generate.generate(setup, params, ['a red circle'], generate.Options(num_frames=1, steps=2),
                            progress=False)
  assert video.shape == (1, 1, 16, 16, 3)


def test_every_sampler_runs_the_model(tiny_setup):
  setup, params = tiny_setup
  for name in samplers.SAMPLERS:
    video = generate.generate(setup, params, ['a red circle moving left'],
                              generate.Options(num_frames=4, steps=2, sampler=name), progress=False)
    assert video.shape == (1, 4, 16, 16, 3)


def test_first_frame_sampling_continues_the_first_frame_of_a_sampled_clip(tiny_setup):
  """Two stages: a training-length clip per prompt, then the video given its first frame."""
  setup, params = tiny_setup
  prompts = ['a red circle moving left', 'a blue square moving up']
  options = generate.Options(num_frames=6, steps=2, seed=1, first_frame=True)
  videos = generate.generate(setup, params, prompts, options, progress=False)
  clips = generate.generate(setup, params, prompts,
                            dataclasses.replace(options, first_frame=False, num_frames=4),
                            progress=False)  # stage 1: the tiny config's 4-frame clips
  start = generate.drawn_frame(setup, 4)  # the first frame never given as context in training
  assert start == min(setup.config.diffusion.context.max_frames, 3) and start > 0
  np.testing.assert_array_equal(videos[:, 0], clips[:, start])
  again = generate.generate(setup, params, prompts, dataclasses.replace(options, first_frame=False),
                            clips[:, start].astype(np.float32) / 127.5 - 1., progress=False)
  np.testing.assert_array_equal(videos, again)
  prob, setup.config.diffusion.context.prob = setup.config.diffusion.context.prob, 0.
  try:
    with pytest.raises(UserError, match='context frames'):
      generate.generate(setup, params, prompts, options, progress=False)
  finally:
    setup.config.diffusion.context.prob = prob


def test_default_splice_overlap_is_at_most_the_context_frames_the_model_learned():
  options = generate.Options(num_frames=20)
  assert options.overlap_frames(8) == 2 and options.overlap_frames(8, max_context=1) == 1
  assert options.overlap_frames(8, max_context=4) == 2 and options.overlap_frames(2) == 1
  assert generate.Options(num_frames=20, long_mode='window').overlap_frames(8, 1) == 4
  assert generate.Options(num_frames=20, overlap=3).overlap_frames(8, max_context=1) == 3


def test_long_video_settings_default_to_the_config_and_flags_override_them():
  config = quickstart.get_config('unet3d,tiny')
  config.sample.update(long_mode='window', trim=2)
  options = generate.options_from_config(config, num_frames=20)
  assert (options.long_mode, options.trim) == ('window', 2)
  options = generate.options_from_config(config, long_mode='splice', trim=0)
  assert (options.long_mode, options.trim) == ('splice', 0)
  del config.sample.long_mode, config.sample.trim  # configs saved before these fields existed
  assert generate.options_from_config(config).long_mode == 'splice'
