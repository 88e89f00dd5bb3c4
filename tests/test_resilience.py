"""Runs as a cluster sees them: killed, preempted, resumed, and spread over two processes."""

import json
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import quickstart
from conftest import REPO, cli_env
from vidiff import checkpointing, train

TINY = 'configs/quickstart.py:unet3d,tiny'
# Long enough to interrupt mid-run; no eval or samples, so the runs differ only in stopping.
STEPS, EVERY = 30, 10
FLAGS = [f'--config={TINY}', f'--config.train.num_steps={STEPS}', '--config.train.log_every=1',
         '--config.train.eval_every=1000', f'--config.train.checkpoint_every={EVERY}',
         '--config.sample.num_prompts=0', '--config.mesh.data=4', '--config.mesh.time=2']


def start(workdir, *extra, devices: int = 8) -> subprocess.Popen:
  return subprocess.Popen([sys.executable, '-m', 'vidiff.main', *FLAGS, f'--workdir={workdir}',
                           *extra], cwd=REPO, env=cli_env(devices), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, expect: int = 0) -> str:
  out, err = proc.communicate(timeout=900)
  assert proc.returncode == expect, err[-5000:]
  return out + err


def wait_for(predicate, proc: subprocess.Popen, what: str) -> None:
  while not predicate():
    assert proc.poll() is None, f'the run ended before {what}: {proc.stderr.read()[-3000:]}'
    time.sleep(0.02)


def committed_steps(workdir) -> list[int]:
  """Checkpoint steps orbax has finalised (a step directory appears only on commit)."""
  ckpt = workdir / 'checkpoints'
  return sorted(int(p.name) for p in ckpt.iterdir() if p.name.isdigit()) if ckpt.exists() else []


def logged_steps(workdir) -> int:
  path = workdir / 'metrics.jsonl'
  return len(path.read_text().splitlines()) if path.exists() else 0


def final_params(workdir):
  config = quickstart.get_config('unet3d,tiny')
  config.train.num_steps = STEPS
  config.mesh.update(data=4, time=2)
  setup = train.make_setup(config)
  state = checkpointing.restore(checkpointing.manager(workdir), train.abstract_state(setup))
  assert int(state.step) == STEPS
  return jax.device_get({'params': state.params, 'ema': state.ema_params,
                         'opt': state.opt_state})


def assert_bitwise_equal(a, b):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y, err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  finish(start(workdir))
  return final_params(workdir)


@pytest.mark.slow
def test_killed_run_resumes_bitwise(tmp_path, uninterrupted):
  proc = start(tmp_path)
  wait_for(lambda: EVERY in committed_steps(tmp_path), proc, 'the first checkpoint')
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert max(committed_steps(tmp_path)) < STEPS
  output = finish(start(tmp_path))
  assert any(f'resuming at step {s}' in output for s in range(EVERY, STEPS, EVERY)), output[-3000:]
  assert_bitwise_equal(final_params(tmp_path), uninterrupted)


@pytest.mark.slow
def test_sigterm_checkpoints_exits_143_and_resumes_bitwise(tmp_path, uninterrupted):
  proc = start(tmp_path)
  wait_for(lambda: logged_steps(tmp_path) >= 3, proc, 'three logged steps')
  proc.send_signal(signal.SIGTERM)
  output = finish(proc, expect=143)
  saved = committed_steps(tmp_path)
  assert saved and max(saved) < STEPS and 'preempted (SIGTERM)' in output, (saved, output[-2000:])
  assert f'saved a checkpoint at step {max(saved)}' in output
  output = finish(start(tmp_path))
  assert f'resuming at step {max(saved)}' in output, output[-3000:]
  assert_bitwise_equal(final_params(tmp_path), uninterrupted)


def start_processes(workdir, *extra) -> subprocess.Popen:
  """2 processes x 4 CPU devices through the local multi-process launcher."""
  return subprocess.Popen([sys.executable, 'launch/local_multiprocess.py', '--num_processes=2',
                           '--devices_per_process=4', '--', *FLAGS, f'--workdir={workdir}',
                           *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


@pytest.mark.slow
def test_two_processes_train_and_checkpoint(tmp_path):
  # The data axis goes 2 ways over the processes (DCN) and 2 within each (4 devices: data x time).
  output = finish(start_processes(tmp_path, '--config.train.num_steps=6',
                                  '--config.train.checkpoint_every=3', '--config.mesh.dcn.data=2'))
  mesh = "mesh {'data': 4, 'fsdp': 1, 'time': 2, 'space': 1, 'tensor': 1}"
  assert '[0] unet3d' in output and mesh in output and '[1] unet3d' not in output, output[-3000:]
  assert committed_steps(tmp_path) == [3, 6]
  rows = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows if 'train/loss' in r] == list(range(1, 7))  # process 0 only
  assert all(np.isfinite(r['train/loss']) for r in rows if 'train/loss' in r)


@pytest.mark.slow
def test_frames_split_across_processes_is_a_user_error(tmp_path):
  output = finish(start_processes(tmp_path, '--config.mesh.dcn.time=2'), expect=2)
  errors = [l for l in output.splitlines() if 'vidiff: error: the mesh splits the frames' in l]
  assert len(errors) == 2 and 'mesh.dcn.time = 1' in errors[0], output[-3000:]
