"""vidiff.bench: the tiny preset writes bench.json (schema, positive finite numbers), bench.md
and the plots; presets and variants are well formed."""

import json
import math

import pytest

from configs import bench as bench_configs
from configs.bench import variants
from vidiff import bench, bench_peer
from vidiff.errors import UserError

STEP_KEYS = ('frames', 'resolution', 'batch_size', 'compile_s', 'step_ms', 'clips_per_s',
             'flops_per_step', 'tflops_per_s', 'mfu', 'peak_mib', 'temp_mib')


@pytest.fixture(scope='module')
def out(tmp_path_factory):
  """The directory of one in-process run of the tiny preset (4 variants, 3 shapes each)."""
  path = tmp_path_factory.mktemp('bench')
  bench.run(bench_configs.get_config('tiny'), path, progress=False)
  return path


def positive_finite(value) -> bool:
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_writes_json_markdown_and_plots(out):
  for name in ('bench.json', 'bench.md', 'scaling_frames.png', 'scaling_resolution.png'):
    assert (out / name).stat().st_size > 0, name
  assert (out / 'bench.md').read_text().count('| st-factorized |') == 4  # 2 variant tables, 2 sweeps


def test_json_schema_and_numbers(out):
  record = json.loads((out / 'bench.json').read_text())
  assert record['schema_version'] == bench.SCHEMA_VERSION and record['preset'] == 'tiny'
  assert len(record['config_hash']) == 12
  assert {'platform', 'device_kind', 'jax_version', 'jaxlib_version'} <= set(record['device'])
  assert positive_finite(record['peak_flops']) and positive_finite(record['wall_s'])
  assert [v['variant'] for v in record['variants']] == ['unet3d-2plus1d', 'st-factorized']
  for v in record['variants']:
    assert positive_finite(v['params'])
    for key in STEP_KEYS:
      assert positive_finite(v['train_step'][key]), (v['variant'], key)
    for key in ('s_per_video', 's_per_video_at_50', 'steps', 'videos'):
      assert positive_finite(v['sampling'][key]), (v['variant'], key)
  config = record['bench_config']
  assert len(record['sweeps']) == 2 * (
      len(config['frames_sweep']) + len(config['resolution_sweep']))
  for row in record['sweeps']:
    assert 'error' not in row
    for key in STEP_KEYS:
      assert positive_finite(row[key]), (row['variant'], row['sweep'], key)
  assert len(record['scaling']) == 2 * 2
  for g in record['scaling']:
    for key in ('step_ms_ratio', 'peak_mib_ratio'):
      assert positive_finite(g[key]), (g['variant'], g['sweep'], key)
    for key in ('step_ms_exponent', 'peak_mib_exponent'):
      assert math.isfinite(g[key])
  assert record['quality'] == []  # the tiny preset trains nothing
  peer = record['peer']
  if bench_peer.missing():  # CI installs [dev] only: the peer is skipped with the install line
    assert peer == {'skipped': bench_peer.missing()} and 'pip install' in peer['skipped']
  else:
    for row in (peer['vidiff'], peer['peer']):
      for key in ('params', 'step_ms', 'clips_per_s', 'flops_per_step', 'tflops_per_s', 'mfu'):
        assert positive_finite(row[key]), key
    assert peer['vidiff']['model_patch'] == [1, 1, 1]
  assert '## Peer: the same U-Net in video-diffusion-pytorch' in (out / 'bench.md').read_text()


def test_peer_level_widths():
  assert bench_peer.dim_mults((32, 64, 96)) == (1, 2, 3)
  with pytest.raises(ValueError, match='multiples of the first'):
    bench_peer.dim_mults((32, 48))


def test_unknown_preset_is_a_user_error():
  with pytest.raises(UserError, match='unknown bench preset'):
    bench_configs.get_config('huge')


@pytest.mark.parametrize('preset', bench_configs.PRESETS)
def test_presets_name_known_variants(preset):
  config = bench_configs.get_config(f'preset={preset}')
  assert config.preset == preset
  assert set(config.quality.variants) <= set(variants.VARIANTS)
  for size in config.sizes:
    for variant in config.variants:
      model = bench_configs.train_config(config, variant, size).model
      assert model.name == variants.backbone(variant)


def test_growth_exponent_of_linear_and_quadratic_rows():
  rows = [{'frames': t, 'resolution': 8, 'step_ms': t * 1.0, 'peak_mib': t * t * 1.0}
          for t in (8, 16, 32)]
  g = bench.growth(rows, 'frames')
  assert g['step_ms_ratio'] == pytest.approx(4) and g['step_ms_exponent'] == pytest.approx(1)
  assert g['peak_mib_ratio'] == pytest.approx(16) and g['peak_mib_exponent'] == pytest.approx(2)


@pytest.mark.slow
def test_quality_run_of_one_variant(tmp_path):
  config = bench_configs.get_config('tiny')
  config.variants = ('st-factorized',)
  config.resolution = 16  # the synthetic data's smallest
  config.quality.update(seconds=0.5, variants=('st-factorized',), eval_videos=2)
  record = bench.run(config, tmp_path, progress=False)
  (row,) = record['quality']
  assert row['steps'] == len(row['curve']) >= 1 and row['train_s'] >= 0.5
  for key in ('train_loss', 'eval_loss', 'flops'):
    assert positive_finite(row[key]), key
  assert row['flops'] == pytest.approx(row['steps'] * record['variants'][0]['train_step'][
      'flops_per_step'])
  assert {'sample/color', 'sample/all'} <= set(row['scores'])
  assert (tmp_path / 'loss_vs_flops.png').stat().st_size > 0
  assert '## Quality at equal wall-clock' in (tmp_path / 'bench.md').read_text()


def test_out_of_memory_variant_is_a_row_and_partial_outputs_are_written(tmp_path, monkeypatch):
  """A variant whose train step runs out of device memory becomes a row that says so; the
  outputs are rewritten after every variant, so a run cut short keeps what it measured."""
  real = bench.step_measurement
  written = []

  def oom_for_st(config, *args, **kw):
    if config.model.name == 'st_transformer':
      raise RuntimeError('RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9 GiB')
    return real(config, *args, **kw)

  def snapshot(path, record):
    written.append([v['variant'] for v in record['variants']])
    write(path, record)

  write = bench.write_outputs
  monkeypatch.setattr(bench, 'step_measurement', oom_for_st)
  monkeypatch.setattr(bench, 'write_outputs', snapshot)
  config = bench_configs.get_config('tiny')
  config.update(frames_sweep=(), resolution_sweep=(), width_sweep=(), peer=False)
  record = bench.run(config, tmp_path, progress=False)
  st = record['variants'][1]
  assert st['train_step'] == {'error': 'out of memory'} and st['sampling'] is None
  assert written[:2] == [['unet3d-2plus1d'], ['unet3d-2plus1d', 'st-factorized']]
  assert '| st-factorized | out of memory |' in (tmp_path / 'bench.md').read_text()
