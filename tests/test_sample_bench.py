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
  table = sample_bench.markdown(rows, [], 64, 'cpu')
  assert '| heun | 3 | 5 |' in table


def test_new_frame_starts_follow_the_chunk_layout():
  assert sample_bench.new_frame_starts(20, 8, 2) == [8, 14]  # chunks at 0, 6, 12
  assert sample_bench.new_frame_starts(64, 8, 2, trim=2)[:3] == [6, 10, 14]  # chunks every 4
  assert sample_bench.new_frame_starts(64, 8, 2)[-1] == 62  # the last chunk ends at frame 64


def test_seam_rows_cover_every_long_video_mode():
  config = quickstart.get_config('unet3d,tiny')
  setup = train.make_setup(config)
  params = train.init_state(setup).params
  rows = sample_bench.seam_rows(setup, params, ['a red circle'] * 2, num_frames=10, steps=2,
                                reconstruction=1., trim=2)
  assert [r['mode'] for r in rows] == ['splice', 'splice + freenoise',
                                       'splice + reconstruction guidance 1', 'splice + trim 2',
                                       'window']
  assert all(np.isfinite(r['ratio']) and r['wall_s'] > 0 for r in rows)
  assert '| splice + trim 2 | 1 |' in sample_bench.markdown([], rows, 10, 'cpu')


def test_seam_variants_are_the_rows_asked_for_in_table_order():
  rows = sample_bench.seam_variants(('window', 'trim', 'splice'), 2., 3, trim_fits=True)
  assert rows == [('splice', False, 0., 0), ('splice', False, 0., 3), ('window', False, 0., 0)]
  assert sample_bench.seam_variants(('trim', 'reconstruction'), 2., 3, trim_fits=False) == [
      ('splice', False, 2., 0)]
  assert sample_bench.seam_variants(('trim',), 2., 0, trim_fits=True) == []
