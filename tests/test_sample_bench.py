"""The sampling benchmark's measurements (their values are timings: only their form is tested)."""

import numpy as np

from configs import quickstart
from vidiff import sample_bench, train


def test_seam_ratio_sees_a_jump_at_a_boundary():
  video = np.zeros((1, 12, 2, 2, 3), np.uint8)
  video[0, :, 0, 0, 0] = np.arange(12) * 2        # smooth motion: difference 2 per frame
  video[0, 6:, 0, 0, 0] += 20                      # a jump between frames 5 and 6
  seam, inside, ratio = sample_bench.seam_ratio(sample_bench.frame_differences(video), [6])
  np.testing.assert_allclose([seam, inside], [22 / 12, 2 / 12])
  np.testing.assert_allclose(ratio, 11.)
  smooth = sample_bench.frame_differences(np.repeat(video[:, :6], 2, axis=0))
  assert sample_bench.seam_ratio(smooth, [3])[2] == 1.


def test_warping_error_seams_discount_motion_but_see_a_jump():
  """A square moving 1 px a frame, then jumping 6 px between frames 5 and 6."""
  video = np.zeros((2, 12, 24, 24, 3), np.uint8)
  for t in range(12):
    x = 2 + t + (6 if t >= 6 else 0)
    video[:, t, 8:14, x:x + 6] = 200
  errors = sample_bench.warping_errors(video)
  assert errors.shape == (11,)
  assert sample_bench.seam_ratio(errors, [6])[2] > 5.


def test_speed_rows_cover_every_sampler_with_its_model_calls():
  config = quickstart.get_config('unet3d,tiny')
  setup = train.make_setup(config)
  params = train.init_state(setup).params
  rows = sample_bench.speed_rows(setup, params, ['a red circle'] * 8, steps=3, repeats=1)
  assert [(r['sampler'], r['model_calls']) for r in rows] == [
      ('ddim', 3), ('ddpm', 3), ('euler', 3), ('heun', 5)]
  assert all(r['wall_s'] > 0 and r['forward_ms'] > 0 and r['ratio'] > 0 for r in rows)
  table = sample_bench.markdown(rows, [], 'cpu', 8)
  assert '| heun | 3 | 5 |' in table


def test_new_frame_starts_follow_the_chunk_layout():
  assert sample_bench.new_frame_starts(20, 8, 2) == [8, 14]  # chunks at 0, 6, 12
  assert sample_bench.new_frame_starts(64, 8, 2, trim=2)[:3] == [6, 10, 14]  # chunks every 4
  assert sample_bench.new_frame_starts(64, 8, 2)[-1] == 62  # the last chunk ends at frame 64


def test_long_rows_cover_every_mode_and_judge_the_object():
  config = quickstart.get_config('unet3d,tiny')
  setup = train.make_setup(config)
  params = train.init_state(setup).params
  prompts = ['a red circle moving left', 'a blue square bouncing up']
  names = ('trim', 'window', 'unanchored', 'freenoise')  # splice: tests/test_long_video.py
  rows = sample_bench.long_rows(setup, params, prompts, lengths=[4, 10], steps=2, names=names,
                                trim=1)
  assert [(r['frames'], r['mode']) for r in rows] == [(4, 'one chunk')] + [
      (10, name) for name in names]
  for r in rows:  # an untrained model draws no object: nothing persists, nothing adheres
    assert r['persists'] == 0. and r['all'] == 0. and r['s_per_video'] > 0
    assert np.isnan(r['seam_ratio'])  # seams are measured on persisting videos only
  table = sample_bench.markdown([], rows, 'cpu', len(prompts))
  assert '| 10 | unanchored | 0.00 |' in table and '| 4 | one chunk |' in table


def test_variants_set_the_long_video_options():
  # A config's own trim (the ST quickstart's) must not leak into the plain splice row.
  assert sample_bench.variant('splice', 3, 2.) == dict(long_mode='splice', trim=0)
  assert sample_bench.variant('trim', 3, 2.) == dict(long_mode='splice', trim=3)
  assert sample_bench.variant('unanchored', 3, 2.) == dict(long_mode='window', anchor=False)
  assert sample_bench.variant('freenoise', 3, 2.) == dict(long_mode='window', freenoise=True)


def test_bench_prompts_bounce_when_the_data_does():
  config = quickstart.get_config('unet3d,tiny')
  assert all('moving' in p for p in sample_bench.bench_prompts(config.data, 4, None))
  config.data.synthetic.motion = 'mixed'
  assert all('bouncing' in p for p in sample_bench.bench_prompts(config.data, 4, None))
  assert all('moving' in p for p in sample_bench.bench_prompts(config.data, 4, 'constant'))
