"""The VAE through the shared trainer (config.task='vae'): sharded training with checkpoints and
resume, reconstructions, vae_eval's table and the flat memory of chunked decoding."""

import json

import numpy as np
import pytest

from conftest import REAL_VIDEOS, run_module
from configs import vae_quickstart
from vidiff import train, vae_eval, vae_task
from vidiff.errors import UserError

TINY = 'configs/vae_quickstart.py:tiny'


def _config(steps: int, arg: str = 'tiny'):
  config = vae_quickstart.get_config(arg)
  config.train.num_steps = steps
  config.mesh.update(data=2, fsdp=2, space=2)
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A tiny VAE trained 2 steps on a data x fsdp x space = 2x2x2 mesh, then resumed to 4."""
  workdir = tmp_path_factory.mktemp('vae')
  config = _config(2)
  config.vae.num_reconstructions = 0
  first = train.train_and_evaluate(config, str(workdir))
  state = train.train_and_evaluate(_config(4), str(workdir))
  return workdir, first, state


def test_vae_trains_sharded_checkpoints_and_resumes(trained):
  workdir, first, state = trained
  assert int(first.step) == 2 and int(state.step) == 4
  assert {p.name for p in (workdir / 'checkpoints').iterdir()} >= {'2', '4'}
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  keys = {k for r in rows for k in r}
  assert {'train/loss', 'eval/loss', 'eval/psnr', 'eval/ssim', 'sample/psnr'} <= keys
  assert all(np.isfinite(r['train/loss']) for r in rows if 'train/loss' in r)
  kernel = state.params['encoder']['down_1_res_0']['conv1_space']['conv']['kernel']
  assert 'fsdp' in str(kernel.sharding.spec)


def test_reconstructions_are_original_beside_reconstruction(trained):
  workdir, _, _ = trained
  samples = workdir / 'samples' / 'step_4'
  assert len(list(samples.glob('*.mp4'))) == 2 and len(list(samples.glob('*.gif'))) == 2
  assert (samples / 'grid.png').stat().st_size > 0
  videos = np.load(samples / 'samples.npz')['videos']
  assert videos.shape == (2, 5, 16, 32, 3) and videos.dtype == np.uint8


def test_vae_eval_scores_synthetic_and_real_clips(trained):
  workdir, _, _ = trained
  rows = vae_eval.score_workdir(str(workdir), REAL_VIDEOS, 4, 'dis')
  assert [r['data'] for r in rows] == ['synthetic (held out)', 'newtonscradle.gif', 'realshort.mp4']
  assert rows[1]['clips'] == 36 // 5
  for r in rows:
    assert 0 < r['psnr'] < 60 and -1 <= r['ssim'] <= 1 and r['flicker'] >= 0
    assert np.isfinite(r['warp']) and np.isfinite(r['warp_original'])
    assert np.isfinite(r['warp_true_motion'])
  table = vae_eval.score_table(rows)
  assert '| causal_vae |' in table and 'realshort.mp4' in table and 'PSNR dB' in table


def test_vae_eval_scores_other_generated_data(trained):
  """--sources: a VAE trained on the shapes is scored on camera clips of the same size too,
  and a source that cannot be generated gets one clear error."""
  workdir, _, _ = trained
  rows = vae_eval.score_workdir(str(workdir), '', 2, 'dis', ('camera', 'synthetic'))
  assert [r['data'] for r in rows] == ['synthetic (held out)', 'camera (held out)']
  assert rows[0]['psnr'] != rows[1]['psnr'] and rows[1]['clips'] == 2
  with pytest.raises(UserError, match='--videos=DIR'):
    vae_eval.score_workdir(str(workdir), '', 2, 'dis', ('folder',))


def test_image_variant_is_the_per_frame_vae():
  image, video = (vae_task.get_model(vae_quickstart.get_config(a).model)
                  for a in ('image', 'video'))
  assert (image.temporal_kernel, image.temporal_downsample) == (1, 1)
  assert (video.temporal_kernel, video.temporal_downsample) == (3, 4)
  assert image.channels > video.channels  # widened towards the video VAE's parameter count


def test_chunked_decode_memory_is_flat_and_full_decode_grows():
  config = vae_quickstart.get_config('tiny')
  model = vae_task.get_model(config.model)
  params = vae_eval.abstract_params(model, 16)
  rows = vae_eval.decode_memory(model, params, [17, 257], 16, chunk=1)
  at = {(r['frames'], r['decode']): r for r in rows}
  working = lambda r: r['peak'] - r['outputs']  # the 257 frames themselves must exist
  assert working(at[257, 'chunked']) < 1.5 * working(at[17, 'chunked'])
  assert at[257, 'chunked']['temp'] < 1.5 * at[17, 'chunked']['temp']
  assert at[257, 'full']['peak'] > 5 * at[17, 'full']['peak']
  assert at[257, 'chunked']['peak'] < 0.2 * at[257, 'full']['peak']
  assert 'chunked (1 latent/call)' in vae_eval.memory_table(rows, 1)


@pytest.mark.parametrize('override, fragment', [
    (dict(num_frames=8), 'trim the clip to 5 frames or pad it to 9'),
    (dict(resolution=18), 'not divisible by the VAE spatial factor 4'),
])
def test_clip_shapes_the_vae_cannot_take_are_user_errors(override, fragment):
  config = vae_quickstart.get_config('tiny')
  config.data.update(override)
  with pytest.raises(UserError, match=fragment):
    train.make_setup(config)


def test_video_metrics_are_refused_for_the_vae():
  config = vae_quickstart.get_config('tiny')
  config.metrics.every = 2
  with pytest.raises(UserError, match='metrics.every=0'):
    train.make_setup(config)


@pytest.mark.slow
def test_cli_trains_and_vae_eval_prints_tables(tmp_path):
  # resume and the memory table are tested in-process above
  workdir = tmp_path / 'run'
  mesh = ['--config.mesh.data=4', '--config.mesh.space=2']
  result = run_module('vidiff.main', f'--config={TINY}', f'--workdir={workdir}', *mesh)
  assert result.returncode == 0, result.stderr[-5000:]
  assert "'data': 4, 'fsdp': 1, 'time': 1, 'space': 2" in result.stdout
  assert 'step 4: eval loss' in result.stdout and 'psnr' in result.stdout
  result = run_module('vidiff.vae_eval', f'--workdir={workdir}', f'--videos={REAL_VIDEOS}',
                      '--num_videos=4')
  assert result.returncode == 0, result.stderr[-5000:]
  assert '| causal_vae |' in result.stdout and '| 4 | newtonscradle.gif |' in result.stdout
  assert (workdir / 'eval' / 'vae_metrics.json').exists()
