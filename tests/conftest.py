"""Test setup: 8 host CPU devices, so sharding is exercised for real on any machine."""

import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs import quickstart  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_VIDEOS = os.path.join(os.path.dirname(REPO), 'shared', 'data', 'real_videos')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: end-to-end tests (run in CI; skip with -m "not slow")')
  assert jax.device_count() == 8, 'tests need 8 host devices; was jax imported before conftest?'


@pytest.fixture
def tiny_config():
  """The quickstart config at its tiny size: seconds per step on CPU."""
  return quickstart.get_config('unet3d,tiny')
