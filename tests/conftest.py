"""Test setup: 8 host CPU devices, so sharding is exercised for real on any machine."""

import os
import re
import subprocess
import sys
import tempfile

# Tests compile many small programs and run each a few times: trade runtime for compile time.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8'
                           ' --xla_backend_optimization_level=0').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Many tests (and the CLI subprocesses, which inherit these) build the same programs: share
# compiled executables through JAX's persistent compilation cache, kept per session so that
# nothing goes stale. Every program: XLA takes ~50 ms even for an eager slice on CPU, a cache
# hit a third of that, and a sharded checkpoint save alone runs hundreds of them.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='vidiff_jit_'))
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs import quickstart  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Two short real clips (imageio's standard test media; see SOURCE.md there), copied from
# ../shared/data/real_videos so the tests run wherever the repository is cloned.
REAL_VIDEOS = os.path.join(REPO, 'tests', 'data', 'real_videos')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: end-to-end tests (run in CI; skip with -m "not slow")')
  assert jax.device_count() == 8, 'tests need 8 host devices; was jax imported before conftest?'
  assert jax.config.jax_compilation_cache_dir, 'JAX_COMPILATION_CACHE_DIR was not read'


def cli_env(devices: int = 8, **extra) -> dict:
  """Environment for a command run as a subprocess: this session's XLA flags (fast compiles, and
  cache keys that match the in-process tests') with `devices` host devices, plus `extra`."""
  flags = re.sub(r'--xla_force_host_platform_device_count=\d+',
                 f'--xla_force_host_platform_device_count={devices}', os.environ['XLA_FLAGS'])
  return {**os.environ, 'XLA_FLAGS': flags, 'JAX_PLATFORMS': 'cpu', **extra}


def run_module(module: str, *args: str, devices: int = 8, env: dict | None = None,
               timeout: int = 900) -> subprocess.CompletedProcess:
  """`python -m module *args` from the repository root as a user runs it, in `cli_env(devices,
  **env)`; stdout and stderr captured, a failure returned rather than raised."""
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                        env=cli_env(devices, **(env or {})), capture_output=True, text=True,
                        timeout=timeout, check=False)


@pytest.fixture
def tiny_config():
  """The quickstart config at its tiny size: seconds per step on CPU."""
  return quickstart.get_config('unet3d,tiny')
