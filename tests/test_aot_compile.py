"""launch/aot_compile.py: the train step compiled for a named TPU slice, or a CPU mock of it."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

TINY = '--config=configs/quickstart.py:st_transformer,tiny'
LIBTPU = importlib.util.find_spec('libtpu') is not None


def aot(*args, timeout=300, mock=True):
  """The tool's run as a user types it from the repo root (the env has 8 CPU devices). With
  libtpu installed it would compile for the real topology: `mock` keeps it on the CPU path."""
  return subprocess.run([sys.executable, 'launch/aot_compile.py', *args,
                         *(['--mock'] if mock and LIBTPU else [])], cwd=REPO,
                        env=dict(os.environ), capture_output=True, text=True, timeout=timeout,
                        check=False)


def one_error_line(result) -> str:
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  lines = [l for l in result.stderr.splitlines() if l.startswith('vidiff: error:')]
  assert len(lines) == 1, result.stderr[-3000:]
  return lines[0]


def test_cpu_mock_reports_memory_and_flops():
  # 4 devices where the env has 8: the tool re-executes itself with a 4-device CPU mock.
  result = aot(TINY, '--topology=v5e-4', '--config.mesh.data=-1')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'compiling for a CPU mock of 4 devices' in result.stderr, result.stderr
  out = result.stdout
  assert re.search(r'^topology +v5e-4: 4 chips, v5e:2x2$', out, re.M), out
  assert re.search(r'^mesh +data=4 x fsdp=1 x time=1 x space=1 x tensor=1$', out, re.M), out
  peak = re.search(r'^peak per device +([\d.e-]+) GiB of 16 GiB HBM', out, re.M)
  assert peak and 0 < float(peak[1]) < 1, out
  total, per_device = re.search(r'^FLOPs per step +([\d.]+) (\w)FLOPs total, ([\d.]+) (\w)FLOPs '
                                r'per device$', out, re.M).group(1, 3)
  assert float(total) > 0 and float(per_device) > 0
  assert re.search(r'^step time +.* at 40% MFU of 197 TFLOP/s .*\(estimate\)$', out, re.M), out


def test_step_that_does_not_fit_is_one_line_error():
  result = aot(TINY, '--topology=v5e-8', '--hbm_gib=0.001')
  line = one_error_line(result)
  assert 'does not fit' in line and '> 0.001 GiB HBM of v5e' in line, line
  assert '--config.mesh.fsdp' in line and 'remat_policy=full' in line, line
  assert 'peak per device' in result.stdout  # the numbers are printed before the error


def test_unknown_topology_lists_known_ones():
  line = one_error_line(aot(TINY, '--topology=v5e-12', timeout=120))
  assert '--topology=v5e-12' in line and 'v5p-{8,16,32,64,128' in line, line
  assert 'v5e-{1,4,8,16,32,64,128,256}' in line and 'v4-{8,' in line, line


def test_slice_names_count_tensorcores_on_v4_and_v5p():
  code = ('import aot_compile as a; print([(s.chips, s.topology_name) for s in map(a.slice_for, '
          '["v5p-128", "v5e-256", "v4-32", "v5litepod-16", "v6e-8"])])')
  result = subprocess.run([sys.executable, '-c', code], cwd=os.path.join(REPO, 'launch'),
                          capture_output=True, text=True, timeout=120, check=True)
  assert result.stdout.strip() == str([(64, 'v5:4x4x4'), (256, 'v5e:16x16'), (16, 'v4:2x2x4'),
                                       (16, 'v5e:4x4'), (8, 'v6e:2x4')])


@pytest.mark.skipif(not LIBTPU, reason='libtpu (pip install -e .[tpu]) describes TPU topologies')
def test_libtpu_compiles_for_the_real_topology():
  result = aot(TINY, '--topology=v5p-16', mock=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'CPU mock' not in result.stderr
  assert re.search(r'^compiled for +8 x TPU v5 \(libtpu, compile only\)', result.stdout, re.M)
  assert re.search(r'^peak per device +[\d.e-]+ GiB of 95 GiB HBM \(\d+%\)$', result.stdout, re.M)
