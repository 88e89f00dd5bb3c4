"""The commands as a user runs them: end to end, resume, sample, and one-line errors."""

import json
import re
import subprocess
import sys

import imageio.v3 as iio
import jax
import numpy as np
import pytest

from conftest import REPO, cli_env
from conftest import run_module as run
from vidiff import cli

TINY = 'configs/quickstart.py:unet3d,tiny'


def assert_one_line_error(result, *fragments):
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if l.startswith('vidiff: error:')]
  assert len(lines) == 1, result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_train_sharded_resume_and_sample(tmp_path):
  workdir = tmp_path / 'run'
  mesh = ['--config.mesh.data=2', '--config.mesh.fsdp=2', '--config.mesh.time=2']
  result = run('vidiff.main', f'--config={TINY}', f'--workdir={workdir}', *mesh)
  assert result.returncode == 0, result.stderr[-5000:]
  assert "'data': 2, 'fsdp': 2, 'time': 2" in result.stdout
  assert not re.search(r'^I\d{4} ', result.stderr, re.M), result.stderr[:2000]  # absl INFO is off
  samples = workdir / 'samples' / 'step_4'
  assert len(list(samples.glob('*.mp4'))) == 2 and len(list(samples.glob('*.gif'))) == 2
  assert (samples / 'grid.png').stat().st_size > 0
  videos = np.load(samples / 'samples.npz')['videos']
  assert videos.shape == (2, 4, 16, 16, 3) and videos.dtype == np.uint8
  rows = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert {'train/loss', 'eval/loss', 'sample/color', 'perf/steps_per_sec', 'perf/tflops_per_sec',
          'perf/mfu', 'train/nonfinite_steps'} <= {k for r in rows for k in r}
  assert re.search(r'step 4: eval loss [\d.]+ \| [\d.]+ s/step, [\d.]+ clips/s, [\d.]+ TFLOP/s, '
                   r'MFU [\d.]+% \(measured f32 matmul on this host\)', result.stdout), result.stdout
  assert list(workdir.glob('events.out.tfevents.*'))
  assert (workdir / 'loss.png').stat().st_size > 0
  assert (workdir / 'checkpoints' / '4').is_dir()

  result = run('vidiff.main', f'--config={TINY}', f'--workdir={workdir}', *mesh,
               '--config.train.num_steps=6', '--config.sample.num_prompts=0')
  assert result.returncode == 0, result.stderr[-5000:]
  assert 'resuming at step 4' in result.stdout
  assert (workdir / 'checkpoints' / '6').is_dir()

  out = tmp_path / 'out.gif'
  result = run('vidiff.sample', f'--workdir={workdir}', '--prompt=a blue square moving up',
               '--num_frames=6', f'--output={out}', '--steps=3')
  assert result.returncode == 0, result.stderr[-5000:]
  assert out.stat().st_size > 0 and (tmp_path / 'out_grid.png').exists()
  assert re.search(r"'a blue square moving up' -> \S+out\.gif  object.*; adherence color",
                   result.stdout), result.stdout  # what the colour tracker sees

  image = np.zeros((40, 60, 3), np.uint8)
  image[:, :, 0] = 255
  iio.imwrite(tmp_path / 'red.png', image)
  out = tmp_path / 'i2v.mp4'
  result = run('vidiff.sample', f'--workdir={workdir}', '--num_frames=10', f'--output={out}',
               '--steps=2', '--sampler=heun', '--long_mode=window', f'--init_image={tmp_path}/red.png',
               '--nogrid')
  assert result.returncode == 0, result.stderr[-5000:]
  frames = iio.imread(out)
  assert len(frames) == 10 and not (tmp_path / 'i2v_grid.png').exists()
  assert frames[0, ..., 0].mean() > 200 and frames[0, ..., 1:].mean() < 60  # red, as given

  result = run('vidiff.motion_probe', f'--workdir={workdir}', '--num_videos=4', '--levels=0.5,1')
  assert result.returncode == 0, result.stderr[-5000:]
  assert re.search(r'^\| 1 \| 0\.000 \| -?[\d.]+ \| -?[\d.]+ \| [\d.]+ \|$', result.stdout,
                   re.M), result.stdout
  probe = json.loads((workdir / 'motion_probe.json').read_text())
  assert probe['step'] == 6 and [r['t'] for r in probe['rows']] == [0.5, 1.0]
  assert_one_line_error(run('vidiff.motion_probe', f'--workdir={workdir}', '--levels=2'),
                        '--levels', '[0, 1]')

  (tmp_path / 'bad.png').write_bytes(b'not an image')
  for args, fragments in [
      (['--num_frames=3', '--chunk_frames=4'], ['num_frames=3', 'smaller than one chunk']),
      (['--num_frames=12', '--overlap=4'], ['overlap=4', 'chunk_frames=4']),
      ([f'--init_image={tmp_path}/bad.png'], ['bad.png', 'not a readable image']),
      ([f'--init_image={tmp_path}/missing.png'], ['missing.png', 'does not exist']),
      (['--sampler=plms'], ['plms', 'ddim']),
  ]:
    assert_one_line_error(run('vidiff.sample', f'--workdir={workdir}', *args), *fragments)


def test_unknown_config_field():
  result = run('vidiff.main', f'--config={TINY}', '--workdir=/tmp/x', '--config.train.num_stepz=3')
  assert_one_line_error(result, 'num_stepz', 'num_steps')


def test_missing_config_file():
  result = run('vidiff.main', '--config=configs/nope.py', '--workdir=/tmp/x')
  assert_one_line_error(result, 'configs/nope.py')


def test_workdir_parent_must_exist():
  result = run('vidiff.main', f'--config={TINY}', '--workdir=/nonexistent/parent/run')
  assert_one_line_error(result, '/nonexistent/parent', 'does not exist')


@pytest.mark.parametrize('args,fragments', [
    (['--config.mesh.data=8', '--config.train.batch_size=6'], ['train.batch_size', 'divisible by 8']),
    (['--config.mesh.data=3'], ['8 are available']),
    (['--config.mesh.data=4', '--config.mesh.time=2', '--config.data.num_frames=3'],
     ['data.num_frames=3', 'time (2 ways)']),
    (['--config.model.temporal_downsample=(True,False)', '--config.data.num_frames=5'],
     ['data.num_frames=5', 'multiples of 2']),
    (['--config.data.resolution=15'], ['data.resolution=15', 'multiples of 2']),
])
def test_shapes_and_meshes_that_do_not_fit(tmp_path, args, fragments):
  result = run('vidiff.main', f'--config={TINY}', f'--workdir={tmp_path}', *args)
  assert_one_line_error(result, *fragments)


def test_sample_without_checkpoint(tmp_path):
  result = run('vidiff.sample', f'--workdir={tmp_path}')
  assert_one_line_error(result, 'no checkpoint')


def test_sample_bench_names_its_rows(tmp_path):
  result = run('vidiff.sample_bench', f'--workdir={tmp_path}', '--rows=splice,windows')
  assert_one_line_error(result, 'windows', 'splice, trim, reconstruction, window, unanchored')


@pytest.mark.slow
def test_st_transformer_trains_through_main_on_a_time_space_mesh(tmp_path):
  """Also: the temporal coherence loss on a time/space-sharded batch, video metrics during
  training, and `vidiff.evaluate` in both forms."""
  metrics = ['--config.metrics.every=4', '--config.metrics.num_videos=4',
             '--config.metrics.resolution=64']
  result = run('vidiff.main', '--config=configs/quickstart.py:st_transformer,tiny',
               f'--workdir={tmp_path}', '--config.mesh.data=2', '--config.mesh.time=2',
               '--config.mesh.space=2', '--config.diffusion.temporal_weight=0.1', *metrics)
  assert result.returncode == 0, result.stderr[-5000:]
  assert 'st_transformer:' in result.stdout, result.stdout[:500]
  assert "'time': 2, 'space': 2" in result.stdout
  assert re.search(r'step 4: fvd [\d.e+]+, blank_fvd [\d.e+]+, frame_fid [\d.e+]+, '
                   r'temporal_fid [\d.e+]+, '
                   r'warping_error [\d.e+-]+, flow_consistency', result.stdout), result.stdout
  samples = tmp_path / 'samples' / 'step_4'
  assert np.load(samples / 'samples.npz')['videos'].shape == (2, 4, 16, 16, 3)
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  losses = [r['train/loss'] for r in rows if 'train/loss' in r]
  assert losses and all(np.isfinite(losses))
  scored = [r for r in rows if 'eval/fvd' in r]
  assert len(scored) == 1 and scored[0]['step'] == 4
  assert all(np.isfinite(scored[0][f'eval/{k}']) and scored[0][f'eval/{k}'] >= 0 for k in
             ('fvd', 'blank_fvd', 'frame_fid', 'temporal_fid', 'warping_error',
              'flow_consistency'))

  result = run('vidiff.evaluate', f'--workdir={tmp_path}', '--num_videos=4', '--resolution=64',
               '--steps=2')
  assert result.returncode == 0, result.stderr[-5000:]
  assert json.loads((tmp_path / 'eval' / 'metrics.json').read_text())['step'] == 4
  out = tmp_path / 'folders.json'
  result = run('vidiff.evaluate', f'--real={samples}', f'--generated={samples}',
               '--resolution=64', f'--out={out}')
  assert result.returncode == 0, result.stderr[-5000:]
  scores = json.loads(out.read_text())
  assert scores['real_videos'] == scores['generated_videos'] == 2  # one of each .gif/.mp4 pair
  assert scores['fvd'] < 1e-3 and scores['temporal_fid'] < 1e-3  # the same videos
  assert_one_line_error(run('vidiff.evaluate', f'--real={tmp_path}/none', f'--generated={samples}'),
                        'none', 'does not exist')


def test_model_info_prints_params_and_flops():
  result = run('vidiff.model_info', '--config=configs/quickstart.py:st_transformer,tiny',
               '--train_steps=2', '--attention_impls=xla,auto', devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  for impl in ('xla', 'auto'):  # one line each, from one initialised state
    assert re.search(rf'train step \(8 clips, cpu, model.dtype=float32, remat=none, '
                     rf'attention={impl}\): [\d.]+ ms, [\d.]+ clips/s, [\d.]+ TFLOP/s, MFU [\d.]+% '
                     rf'\(measured f32 matmul on this host\), [\d.]+ GiB per device',
                     result.stdout), result.stdout
  numbers = {m[0]: float(m[1]) for m in re.findall(r'(params total|forward_backward|forward)\s+([\d.]+)',
                                                   result.stdout)}
  assert numbers['params total'] > 0.1, result.stdout  # millions
  assert numbers['forward_backward'] > 2 * numbers['forward'] > 0, result.stdout


@pytest.mark.parametrize('env, expected', [
    ({'XLA_FLAGS': '--xla_backend_optimization_level=0'}, 'True 2'),
    ({}, 'False 8'),  # the session's --xla_force_host_platform_device_count=8 wins
    ({'XLA_FLAGS': '', 'JAX_NUM_CPU_DEVICES': '3'}, 'False 3')])
def test_split_cpu_unless_the_user_chose_a_count(env, expected):
  code = 'import jax; from vidiff import cli; print(cli.split_cpu(2), jax.device_count())'
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=cli_env(8, **env),
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split('\n')[-2] == expected


def test_split_cpu_keeps_a_started_backend():
  assert jax.device_count() == 8
  assert not cli.split_cpu(2) and not cli.split_cpu(0)
  assert jax.device_count() == 8
