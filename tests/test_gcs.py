"""gs:// workdirs and data, end to end, against a local GCS emulator (no network, no account)."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from gcsfs.core import GCSFileSystem  # not gcsfs.GCSFileSystem: its layout probe needs the real service

from conftest import REAL_VIDEOS, REPO, run_module
import gcs_emulator

TINY = 'configs/quickstart.py:unet3d,tiny'
BUCKET = 'vidiff-test'


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def gcs():
  """A running emulator: yields (the env pointing clients at it, a gcsfs filesystem on it)."""
  port = free_port()
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'tests', 'gcs_emulator.py'),
                           f'--port={port}', f'--bucket={BUCKET}'],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
      with socket.socket() as s:
        if s.connect_ex(('127.0.0.1', port)) == 0:
          break
      time.sleep(0.2)
    else:
      pytest.fail('the GCS emulator did not start')
    env = gcs_emulator.client_env(port)
    fs = GCSFileSystem(endpoint_url=env['STORAGE_EMULATOR_HOST'], token='anon')
    yield env, fs
  finally:
    proc.kill()
    proc.wait()


@pytest.mark.slow
def test_train_and_resume_with_a_gs_workdir(gcs):
  env, fs = gcs
  workdir = f'gs://{BUCKET}/runs/tiny'
  # test_cli's commands and mesh (params sharded on save and restore), so CI's compilation
  # cache serves both
  mesh = ['--config.mesh.data=2', '--config.mesh.fsdp=2', '--config.mesh.time=2']
  result = run_module('vidiff.main', f'--config={TINY}', f'--workdir={workdir}', *mesh, env=env)
  assert result.returncode == 0, result.stderr[-5000:]
  root = f'{BUCKET}/runs/tiny'
  assert fs.exists(f'{root}/checkpoints/4/state/manifest.ocdbt')
  assert fs.exists(f'{root}/checkpoints/4/data/process_0-of-1.json')  # the iterator position
  assert fs.glob(f'{root}/events.out.tfevents.*')
  assert fs.exists(f'{root}/metrics.jsonl') and fs.exists(f'{root}/samples/step_4/grid.png')

  result = run_module('vidiff.main', f'--config={TINY}', f'--workdir={workdir}', *mesh,
                      '--config.train.num_steps=6', '--config.sample.num_prompts=0', env=env)
  assert result.returncode == 0, result.stderr[-5000:]
  assert 'resuming at step 4' in result.stdout, result.stdout
  fs.invalidate_cache()
  assert fs.exists(f'{root}/checkpoints/6/state/manifest.ocdbt')

  # gs:// cannot append: the metrics log must still hold both runs' rows
  rows = [json.loads(l) for l in fs.cat(f'{root}/metrics.jsonl').decode().splitlines()]
  assert {4, 6} <= {r['step'] for r in rows if 'train/loss' in r}, rows


@pytest.mark.slow
def test_video_folder_on_gcs(gcs):
  env, fs = gcs
  fs.put(os.path.join(REAL_VIDEOS, 'realshort.mp4'), f'{BUCKET}/videos/realshort.mp4')
  fs.pipe(f'{BUCKET}/videos/realshort.txt', b'a pendulum swinging')
  code = ('from vidiff.data import video_folder\n'
          f'f = video_folder.VideoFolder("gs://{BUCKET}/videos", min_frames=8)\n'
          'print(len(f), f.caption(0))\n')
  env = dict(os.environ, **env)
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split('\n')[0] == '1 a pendulum swinging', result.stdout
