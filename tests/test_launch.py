"""The TPU-pod and SLURM launchers print the commands they would run (--dry-run); the GPU
check's verdicts."""

import os
import shlex
import subprocess
import sys

import pytest

from conftest import REPO

TRAIN_ARGS = ['--config=configs/quickstart.py:st_transformer,large', '--workdir=gs://b/runs/x',
              '--config.mesh.fsdp=-1', '--config.mesh.dcn.data=2']


def dry_run(script, *args):
  result = subprocess.run(['bash', f'launch/{script}', *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
  return result.returncode, [shlex.split(l) for l in result.stdout.splitlines()], result.stderr


def test_tpu_create_single_and_multi_slice():
  rc, [cmd], _ = dry_run('tpu_pod.sh', 'create', '--name=vd', '--zone=us-east5-a',
                         '--type=v5p-128', '--dry-run')
  assert rc == 0 and cmd[:5] == ['gcloud', 'compute', 'tpus', 'queued-resources', 'create']
  assert {'vd', '--zone=us-east5-a', '--accelerator-type=v5p-128', '--node-id=vd',
          '--runtime-version=v2-alpha-tpuv5'} <= set(cmd)
  rc, [cmd], _ = dry_run('tpu_pod.sh', 'create', '--name=vd', '--zone=z', '--type=v5litepod-256',
                         '--slices=2', '--spot', '--dry-run')
  assert rc == 0 and {'--node-count=2', '--node-prefix=vd', '--spot',
                      '--runtime-version=v2-alpha-tpuv5-lite'} <= set(cmd)


def test_tpu_train_starts_main_on_every_worker_of_every_slice():
  rc, cmds, _ = dry_run('tpu_pod.sh', 'train', '--name=vd', '--zone=z', '--slices=2', '--dry-run',
                        '--', *TRAIN_ARGS)
  assert rc == 0 and [c[5] for c in cmds] == ['vd-0', 'vd-1']
  for cmd in cmds:
    assert cmd[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh'] and '--worker=all' in cmd
    remote = shlex.split(cmd[cmd.index('--command') + 1])
    start = remote.index('vidiff.main')
    assert remote[start - 2:start + 2] == ['python', '-m', 'vidiff.main', '--distributed']
    assert remote[start + 2:start + 2 + len(TRAIN_ARGS)] == TRAIN_ARGS


def test_tpu_install_copies_the_checkout_to_all_workers():
  rc, cmds, _ = dry_run('tpu_pod.sh', 'install', '--name=vd', '--zone=z', '--dry-run')
  assert rc == 0 and cmds[0][:3] == ['git', '-C', cmds[0][2]] and 'archive' in cmds[0]
  scp, ssh = cmds[1], cmds[2]
  assert scp[4] == 'scp' and '--worker=all' in scp and ssh[4] == 'ssh' and '--worker=all' in ssh
  assert 'pip install -q -e ".[tpu]"' in ssh[ssh.index('--command') + 1]


def test_slurm_runs_one_distributed_process_per_node():
  rc, [cmd], _ = dry_run('gpu_slurm.sh', '--dry-run', *TRAIN_ARGS)
  assert rc == 0 and cmd[:3] == ['srun', '--ntasks-per-node=1', '--kill-on-bad-exit=1']
  remote = shlex.split(cmd[-1])
  start = remote.index('vidiff.main')
  assert remote[start + 1:] == ['--distributed', *TRAIN_ARGS]


@pytest.mark.parametrize('script,args,message', [
    ('tpu_pod.sh', ['create', '--name=vd', '--zone=z', '--dry-run'], 'create needs --type'),
    ('tpu_pod.sh', ['train', '--zone=z', '--dry-run'], '--name and --zone are required'),
    ('tpu_pod.sh', ['train', '--name=vd', '--zone=z', '--dry-run'], 'train needs --'),
    ('tpu_pod.sh', ['create', '--name=vd', '--zone=z', '--type=v9-8', '--dry-run'], 'pass --version'),
    ('gpu_slurm.sh', ['--dry-run'], 'usage: sbatch'),
])
def test_missing_arguments_are_one_line_errors(script, args, message):
  rc, cmds, stderr = dry_run(script, *args)
  assert rc == 2 and not cmds and message in stderr, stderr


def test_gpu_check_flags_errors_over_tolerance_nan_and_failed_kernels():
  sys.path.insert(0, os.path.join(REPO, 'launch'))
  import gpu_check  # pylint: disable=g-import-not-at-top
  ok = {'case': 'a', 'impl': 'cudnn', 'dtype': 'bfloat16', 'tol': 3e-2, 'out': 4e-3, 'dq': 5e-3}
  assert gpu_check.failures([ok]) == []
  assert len(gpu_check.failures([ok, {**ok, 'dq': 0.2}, {**ok, 'out': float('nan')},
                                 {**ok, 'error': 'RuntimeError: cuDNN is not detected.'}])) == 3


def test_gpu_check_without_a_gpu_says_so():
  result = subprocess.run([sys.executable, 'launch/gpu_check.py'], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 1 and 'not a GPU; nothing to check' in result.stdout
