"""Joint image-video training (data.image_batches, diffusion.image_shift): image batches in the
pipeline, their noise levels, their compiled step, and the text -> image -> video sampler."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import quickstart
from vidiff import generate, sharding, steps, train
from vidiff.data import pipeline, synthetic
from vidiff.diffusion import schedules
from vidiff.errors import UserError
from vidiff.models import text


@pytest.fixture
def config():
  """The tiny quickstart (8 clips of 4 frames of 16x16) with half of its batches images."""
  config = quickstart.get_config('unet3d,tiny')
  config.data.image_batches = 0.5
  config.diffusion.update(shift=8.0, image_shift=1.0)
  config.mesh.update(data=2, fsdp=2, time=1, space=1, tensor=2)
  return config


@pytest.mark.parametrize('name', schedules.NAMES)
def test_equivalent_t_has_the_other_shifts_logsnr(name):
  schedule, u = schedules.Schedule(name, 8.), jnp.linspace(0.02, 0.98, 25)
  t = schedule.equivalent_t(u, 1.)
  np.testing.assert_allclose(schedule.logsnr(t), schedules.Schedule(name, 1.).logsnr(u),
                             atol=0.02)
  assert (t < u).all()  # shift 1 is less noisy than shift 8 at every u
  np.testing.assert_allclose(schedule.equivalent_t(u, 8.), u, atol=1e-3)


def test_image_batches_are_single_frames_each_with_its_own_caption(config):
  d, text = config.data, config.model.text
  batches = [next(it) for it in [pipeline.train_iterator(d, text, 4)] for _ in range(24)]
  images = [b for b in batches if b['video'].shape[1] == 1]
  clips = [b for b in batches if b['video'].shape[1] != 1]
  assert 4 <= len(images) <= 20 and clips  # about half of them
  for b in images:  # 4 clips' worth of pixels: 4 x 4 frames, each a whole example
    assert b['video'].shape == (16, 1, 16, 16, 3) and b['tokens'].shape == (16, text.max_len)
    assert len({tuple(t) for t in b['tokens']}) > 1  # frames of different videos
  for b in clips:
    assert b['video'].shape == (4, 4, 16, 16, 3) and b['tokens'].shape == (4, text.max_len)
  again = [next(it) for it in [pipeline.train_iterator(d, text, 4)] for _ in range(24)]
  for a, b in zip(batches, again):  # deterministic from the seed
    np.testing.assert_array_equal(a['video'], b['video'])


def test_still_captions_drop_the_motion_phrases(config):
  assert (synthetic.still_caption('a red circle moving left and a blue square bouncing up')
          == 'a red circle and a blue square')
  config.data.image_captions = 'still'
  d, t = config.data, config.model.text
  motion = set(text.tokenize(['moving bouncing left right up down'], 8, t.vocab_size)[0, 1:7])
  shape = set(text.tokenize(['circle square triangle'], 8, t.vocab_size)[0, 1:4])
  images = [b for b in (next(it) for it in [pipeline.train_iterator(d, t, 4)] for _ in range(16))
            if b['video'].shape[1] == 1]
  assert images
  for b in images:
    assert not motion & set(b['tokens'].ravel()) and shape & set(b['tokens'].ravel())


def test_one_frame_clips_get_no_context_and_the_image_shifts_levels(config):
  setup = train.make_setup(config)
  batch = {'video': jnp.zeros((512, 1, 2, 2, 3))}
  config.diffusion.context.prob = 1.0
  noise = steps.draw(jax.random.PRNGKey(0), setup, batch, train=True)
  assert not noise['context'].any()  # a whole clip given clean would leave nothing to learn
  config.diffusion.image_shift = 0.0  # the same levels as video clips: t = u
  plain = steps.draw(jax.random.PRNGKey(0), setup, batch, train=True)
  np.testing.assert_allclose(noise['t'], setup.schedule.equivalent_t(plain['t'], 1.), atol=1e-6)
  assert float(jnp.median(setup.schedule.logsnr(noise['t']))) > float(
      jnp.median(setup.schedule.logsnr(plain['t']))) + 3  # 2 log 8 = 4.2 less noise
  video = steps.draw(jax.random.PRNGKey(0), setup, {'video': jnp.zeros((512, 4, 2, 2, 3))}, True)
  assert noise['t'].shape == video['t'].shape and video['context'].any()


def test_image_loss_weight_scales_the_image_batches_loss_only(config):
  setup = train.make_setup(config)
  params = train.init_state(setup).params
  batches = {t: {'video': jnp.full((b, t, 16, 16, 3), 90, jnp.uint8),
                 'tokens': jnp.ones((b, config.model.text.max_len), jnp.int32)}
             for b, t in ((32, 1), (8, 4))}
  def losses(weight, **where):
    config.diffusion.image_loss_weight = weight
    for key, value in where.items():
      config.data[key] = value
    loss = jax.jit(lambda batch: steps.loss_fn(
        params, setup, batch, steps.draw(jax.random.PRNGKey(0), setup, batch, True), True)[0])
    with setup.context():
      return {t: float(loss(batch)) for t, batch in batches.items()}
  one, weighted = losses(1.), losses(2.5)
  assert weighted[1] == pytest.approx(2.5 * one[1], rel=1e-5) and one[1] > 0
  assert weighted[4] == pytest.approx(one[4], rel=1e-6)  # clip batches keep weight 1
  assert losses(2.5, image_batches=0.)[1] == pytest.approx(one[1], rel=1e-5)  # images only: 1


def test_quickstart_unet_is_the_joint_recipe_by_default():
  config = quickstart.get_config(None)
  assert (config.data.image_batches, config.data.image_captions) == (0.35, 'still')
  assert config.diffusion.image_shift == 1.0 and config.train.num_steps == 2000
  assert config.mesh.cpu_devices == 2
  train.check_config(config)
  assert quickstart.get_config('images=1').to_dict() == config.to_dict()
  clips_only = quickstart.get_config('images=0')
  assert clips_only.data.image_batches == 0 and clips_only.train.num_steps == 1000
  # The ST-Transformer takes the same recipe for twice the steps; tests' tiny configs stay clips
  # only on the devices they are given.
  st = quickstart.get_config('st_transformer')
  assert st.data.image_batches == 0.35 and st.train.num_steps == 4000
  assert st.metrics.every == 4000
  train.check_config(st)
  assert quickstart.get_config('st_transformer,images=0').data.image_batches == 0
  tiny = quickstart.get_config('unet3d,tiny')
  assert tiny.data.image_batches == 0 and tiny.mesh.cpu_devices == 0


def test_training_compiles_one_step_per_kind_of_batch_and_runs_both(config):
  setup = train.make_setup(config)
  fns = train.train_steps(setup)
  assert set(fns) == {(8, 4, 16, 16), (32, 1, 16, 16)}
  state = train.init_state(setup)
  batches = pipeline.train_iterator(config.data, config.model.text, 8)
  seen = set()
  for _ in range(12):
    batch = sharding.global_batch(next(batches), setup.batch_shardings)
    with setup.context():
      state, metrics = fns[batch['video'].shape[:4]](state, batch)
    assert np.isfinite(float(metrics['loss']))
    seen.add(batch['video'].shape[:4])
  assert seen == set(fns)


@pytest.mark.parametrize('change, message', [
    (dict(image_batches=1.0), r'data.image_batches=1.0 must be in \[0, 1\)'),
    (dict(image_shift=-1.0), 'diffusion.image_shift=-1.0 must be >= 0'),
    (dict(image_loss_weight=0.0), 'diffusion.image_loss_weight=0.0 must be > 0'),
    (dict(time=2), 'set --config.mesh.time=1 or --config.data.image_batches=0'),
    (dict(task='vae'), "task='vae' does not support it"),
    (dict(image_captions='none'), "data.image_captions='none': use 'full' or 'still'"),
    (dict(image_captions='still', source='folder'), "data.source='folder' has free captions"),
])
def test_bad_image_batch_configs_are_clear_errors(config, change, message):
  for key, value in change.items():
    section = {'image_batches': config.data, 'image_shift': config.diffusion,
               'image_loss_weight': config.diffusion,
               'time': config.mesh, 'task': config, 'image_captions': config.data,
               'source': config.data}[key]
    section[key] = value
  if 'time' in change:
    config.mesh.data = 1
  with pytest.raises(UserError, match=message):  # (a VAE config fails on its model before)
    if 'task' in change or 'source' in change:
      train.check_data_config(config)
    else:
      train.make_setup(config)


@pytest.mark.parametrize('captions', ['full', 'still'])
def test_first_frame_of_a_model_trained_with_images_is_a_sampled_image(config, captions):
  """Text -> image -> video: stage 1 samples one frame at image_shift (for the prompt its
  images were captioned with); stage 2 continues it."""
  config.data.image_captions = captions
  setup = train.make_setup(config)
  params = train.init_state(setup).params  # perturbed: the fresh output layers are zero
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
  params = jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape, p.dtype)
                                     for p, k in zip(leaves, keys)])
  assert generate.sample_schedule(setup, 1).shift == 1.0
  assert generate.sample_schedule(setup, 4) is setup.schedule
  prompts = ['a red circle moving left', 'a blue square moving up']
  options = generate.Options(num_frames=4, steps=2, seed=1, first_frame=True)
  videos = generate.generate(setup, params, prompts, options, progress=False)
  stills = [synthetic.still_caption(p) for p in prompts] if captions == 'still' else prompts
  images = generate.generate(setup, params, stills,
                             dataclasses.replace(options, first_frame=False, num_frames=1),
                             progress=False)
  assert videos.shape == (2, 4, 16, 16, 3) and images.shape == (2, 1, 16, 16, 3)
  np.testing.assert_array_equal(videos[:, 0], images[:, 0])
  assert len(np.unique(images)) > 8  # not a blank image
  if captions == 'still':  # the motion words would have changed the image
    assert not np.array_equal(images, generate.generate(
        setup, params, prompts, dataclasses.replace(options, first_frame=False, num_frames=1),
        progress=False))
