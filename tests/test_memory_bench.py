"""vidiff.memory_bench: compiled train-step memory falls with time shards and remat."""

import pytest

from configs import quickstart
from vidiff import memory_bench

FRAMES, POLICIES, SHARDS = (4, 8), ('none', 'full'), (1, 2)


@pytest.fixture(scope='module')
def rows():
  """The tiny ST-Transformer's memory at T x k = FRAMES x SHARDS without remat, and at T=8, k=1
  with full remat (5 compiles, ~8 s each)."""
  base = quickstart.get_config('st_transformer,tiny')
  measure = lambda frames, policies, shards: memory_bench.measure(
      base, frames, policies, shards, batch_size=1, resolution=32, progress=False)
  return measure(FRAMES, ('none',), SHARDS) + measure((8,), ('full',), (1,))


def test_peak_falls_with_time_shards_and_grows_with_frames(rows):
  at = {(r['frames'], r['remat'], r['time_shards']): r for r in rows}
  assert at[8, 'none', 2]['peak'] < at[8, 'none', 1]['peak']
  assert at[4, 'none', 2]['peak'] < at[4, 'none', 1]['peak']
  for k in SHARDS:
    assert at[4, 'none', k]['peak'] < at[8, 'none', k]['peak']
  assert at[8, 'full', 1]['temp'] < at[8, 'none', 1]['temp']  # remat keeps only block inputs
  for r in rows:
    assert r['peak'] == pytest.approx(r['arguments'] + r['outputs'] + r['temp'] - r['aliased'])


def test_tables_have_a_row_per_frames_and_policy(rows):
  table = memory_bench.memory_table(rows).splitlines()
  assert len(table) == 2 + len(FRAMES) * len(POLICIES)
  assert {tuple(line.split(' | ')[:2]) for line in table[2:]} == {
      (f'| {t}', p) for t in FRAMES for p in POLICIES}
  fits = memory_bench.largest_fitting(rows, memory_bench.default_budget_mib(rows))
  assert set(fits) == {(p, k) for p in POLICIES for k in SHARDS}
  assert fits['none', 1] == 8 and fits['none', 2] == 8 and fits['full', 2] is None  # not measured
