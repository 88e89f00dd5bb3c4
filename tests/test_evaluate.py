"""Reading video folders for evaluation, the metric dict, held-out clips, the temporal loss."""

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import quickstart
from vidiff import evaluate, train, video_io
from vidiff.data import pipeline
from vidiff.diffusion import objectives, schedules
from vidiff.errors import UserError
from vidiff.metrics import i3d, video_metrics


def moving_squares(n: int, frames: int = 10, size: int = 32, jitter: bool = False) -> np.ndarray:
  """uint8 [n, frames, size, size, 3]: a white square moving right 1 px/frame (or jumping)."""
  rng = np.random.default_rng(0)
  videos = np.zeros((n, frames, size, size, 3), np.uint8)
  for i in range(n):
    for t in range(frames):
      x = 4 + t + i % 3 + (rng.integers(-4, 5) if jitter else 0)
      videos[i, t, 10 + i % 4:20 + i % 4, x:x + 8] = 255
  return videos


def test_read_videos_takes_one_file_per_name_cuts_and_resizes(tmp_path):
  videos = moving_squares(3, frames=10)
  for i, video in enumerate(videos):
    iio.imwrite(tmp_path / f'{i}.gif', video, extension='.gif', duration=100, loop=0)
  video_io.write_video(tmp_path / '0.mp4', videos[0])  # the same name: read once (the gif)
  iio.imwrite(tmp_path / '3.gif', np.repeat(np.repeat(videos[0, :7], 2, 1), 2, 2),
              extension='.gif', duration=100, loop=0)  # shorter and larger
  (tmp_path / 'notes.txt').write_text('not a video')
  read = evaluate.read_videos(tmp_path)
  assert read.shape == (4, 7, 32, 32, 3) and read.dtype == np.uint8
  np.testing.assert_array_equal(read[:3], videos[:, :7])
  assert evaluate.read_videos(tmp_path, num_frames=5).shape[1] == 5
  with pytest.raises(UserError, match='shortest video'):
    evaluate.read_videos(tmp_path, num_frames=8)
  np.savez(tmp_path / 'v.npz', videos=videos)
  np.testing.assert_array_equal(evaluate.read_videos(tmp_path / 'v.npz'), videos)


def test_corrupt_or_missing_videos_are_user_errors(tmp_path):
  (tmp_path / 'broken.mp4').write_bytes(b'\x00not an mp4' * 50)
  with pytest.raises(UserError, match='broken.mp4.*not a readable video'):
    evaluate.read_videos(tmp_path)
  with pytest.raises(UserError, match='no video files'):
    evaluate.read_videos(_empty(tmp_path))
  with pytest.raises(UserError, match='does not exist'):
    evaluate.read_videos(tmp_path / 'missing')
  np.savez(tmp_path / 'other.npz', frames=np.zeros(3))
  with pytest.raises(UserError, match='no "videos" array'):
    evaluate.read_videos(tmp_path / 'other.npz')


def _empty(tmp_path):
  (tmp_path / 'empty').mkdir()
  return tmp_path / 'empty'


def test_scores_rank_coherent_motion_above_jitter():
  real = moving_squares(6)
  near = video_metrics.score(real, moving_squares(6)[::-1].copy(), resolution=64)
  far = video_metrics.score(real, moving_squares(6, jitter=True), resolution=64)
  assert set(near) == set(video_metrics.NAMES)
  assert all(np.isfinite(v) and v >= 0 for v in near.values())
  assert near['fvd'] < 1e-3 and far['fvd'] > 1.  # the same set in another order, then jitter
  # blank_fvd is the FVD that blank videos (each clip's mean colour) score as the generated set;
  # jittering squares are nearer the real ones than that.
  assert near['blank_fvd'] == far['blank_fvd'] > far['fvd']
  blank = video_metrics.score(real, video_metrics.blank_videos(real), resolution=64)
  assert blank['fvd'] == pytest.approx(near['blank_fvd'], rel=1e-6)
  assert blank['warping_error'] == 0. and np.ptp(video_metrics.blank_videos(real)[0]) == 0
  assert near['temporal_fid'] < far['temporal_fid']
  assert near['flow_consistency'] < far['flow_consistency']
  assert near['real_warping_error'] == far['real_warping_error']
  # Against the real set's statistics computed once (the periodic eval's way): the same scores.
  reference = video_metrics.set_stats(real, i3d.load_params(), resolution=64)
  assert video_metrics.score(reference, moving_squares(6, jitter=True), resolution=64) == (
      pytest.approx(far, rel=1e-6))
  with pytest.raises(UserError, match='uint8'):
    video_metrics.score(real, real.astype(np.float32))


def test_held_out_clips_are_the_eval_split_from_frame_zero():
  config = quickstart.get_config('unet3d,tiny')
  videos, captions = pipeline.held_out_clips(config.data, 3)
  assert videos.shape == (3, 4, 16, 16, 3) and len(captions) == 3
  again, _ = pipeline.held_out_clips(config.data, 3)
  np.testing.assert_array_equal(videos, again)
  with pytest.raises(UserError, match='eval_videos'):
    pipeline.held_out_clips(config.data, 10_000)


def test_temporal_loss_adds_the_flow_change_of_the_predicted_frames():
  """With x0-prediction the model's output is x0_hat: an identity 'model' on a static video
  adds nothing; on a jittering one the temporal term is positive and scales with its weight."""
  schedule = schedules.Schedule('cosine')
  noise = objectives.draw_noise(jax.random.PRNGKey(0), (2, 6, 32, 32, 3))
  noise['t'] = jnp.zeros_like(noise['t'])  # x_t = x0: the identity predicts x0 exactly
  apply = lambda x, t, tok: x
  static = jnp.repeat(jnp.asarray(moving_squares(2, 1) / 127.5 - 1, jnp.float32), 6, axis=1)
  jitter = jnp.asarray(moving_squares(2, 6, jitter=True) / 127.5 - 1, jnp.float32)
  loss = lambda x, w: objectives.diffusion_loss(apply, x, None, noise, schedule, 'x0',
                                                temporal_weight=w)[0]
  base = loss(static, 0.)
  np.testing.assert_allclose(loss(static, 1.), base, atol=1e-6)
  added = loss(jitter, 1.) - loss(jitter, 0.)
  assert added > 1e-3
  np.testing.assert_allclose(loss(jitter, 2.) - loss(jitter, 0.), 2 * added, rtol=1e-4)


def test_temporal_loss_leaves_out_single_frames_and_rejects_short_clips():
  """Image batches (1 frame) train beside clips with the temporal loss on: the term is left out
  of their loss, not an error; a config whose clips are too short for it fails up front."""
  schedule = schedules.Schedule('cosine')
  noise = objectives.draw_noise(jax.random.PRNGKey(0), (2, 1, 32, 32, 3))
  frames = jnp.asarray(moving_squares(2, 1) / 127.5 - 1, jnp.float32)
  loss = lambda w: objectives.diffusion_loss(lambda x, t, tok: x, frames, None, noise, schedule,
                                             'x0', temporal_weight=w)[0]
  assert loss(1.) == loss(0.)
  config = quickstart.get_config('unet3d,tiny')
  config.diffusion.temporal_weight = 0.5
  config.data.num_frames = 2
  with pytest.raises(UserError, match='temporal_weight=0.5 needs clips of at least 3 frames'):
    train.check_config(config)
