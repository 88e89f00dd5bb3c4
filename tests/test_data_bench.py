"""vidiff.data.bench end to end in its quick mode (its values are timings: only their form is
tested)."""

import json
import math

import pytest

from vidiff.data import bench
from vidiff.errors import UserError

SETTINGS = ((0, 2), (2, 1))  # in-process threads, and Grain worker processes
VIDEOS = ('as given', 'prepared')  # the generated mp4s, and re-encoded copies


@pytest.fixture(scope='module')
def report():
  """The quick bench: 4 tiny mp4s, 2 clip shapes x 2 settings, the tiny ST-Transformer's step."""
  plan = bench.quick_plan(settings=SETTINGS, progress=False)
  return bench.run(plan)


def test_rows_cover_every_clip_shape_and_setting(report):
  big, tiny = '4x32x32 /4', '4x16x16 /2'
  assert [(p['videos'], p['clip'], p['workers'], p['threads']) for p in report['pipeline']] == [
      (v, clip, w, t) for v in VIDEOS for clip in (big, tiny) for w, t in SETTINGS]
  assert [(s['name'], s['clip'], s['estimate']) for s in report['steps']] == [
      ('st_transformer,tiny step', tiny, None)]
  assert [(c['videos'], c['clip']) for c in report['costs']] == [
      (v, clip) for v in VIDEOS for clip in (big, tiny)]
  assert {(r['pipeline'], r['step']) for r in report['ratios']} == {
      (i, 'st_transformer,tiny step') for i in range(8)}  # every pipeline clip fits its clip
  assert report['videos']['videos'] == 4 and report['videos']['size'] == '48x64'


def test_rates_are_positive_and_finite(report):
  rates = [p['clips_per_s'] for p in report['pipeline']] + [s['clips_per_s'] for s in
                                                            report['steps']]
  assert all(math.isfinite(r) and r > 0 for r in rates), rates
  for r in report['ratios']:
    assert math.isfinite(r['ratio']) and r['ratio'] > 0
  for c in report['costs']:
    assert c['sampler'] > 0 and c['frames_decoded'] >= c['frames_used'] == 4
  (verdict,) = report['verdicts']
  assert verdict['ok'] == (verdict['best_ratio'] >= bench.TARGET)


def test_markdown_and_json_files(report, tmp_path):
  table = bench.markdown(report)
  lines = table.splitlines()
  assert sum(l.startswith('| pipeline, ') for l in lines) == 8
  assert sum(l.startswith('| st_transformer,tiny step (') for l in lines) == 1
  assert sum(l.startswith(('| as given | 4x', '| prepared | 4x')) for l in lines) == 4  # costs
  assert '| / st_transformer,tiny step |' in table
  assert sum('st_transformer,tiny step: best' in l for l in lines) == 1
  bench.write_report(str(tmp_path), report, table)
  saved = json.loads((tmp_path / 'bench.json').read_text())
  assert saved['pipeline'] == report['pipeline'] and saved['plan']['settings'] == [[0, 2], [2, 1]]
  assert (tmp_path / 'bench.md').read_text() == table + '\n'


def test_videos_are_cached_and_user_folders_are_checked(report, tmp_path):
  plan = bench.quick_plan(progress=False)
  assert bench.videos_folder(plan) == report['videos']['path']  # the cached folder
  with pytest.raises(UserError, match='no video files'):
    bench.folder_summary(str(tmp_path))


def test_ratio_only_against_steps_whose_clips_fit():
  big, small = bench.Clip(16, 128, 4), bench.Clip(8, 32, 2)
  assert small.fits_in(big) and not big.fits_in(small)
  assert not bench.Clip(16, 32, 1).fits_in(bench.Clip(8, 128, 4))
  pipelines = [{'clip': str(small), 'clips_per_s': 50.}, {'clip': str(big), 'clips_per_s': 20.}]
  steps = [{'name': 'q', 'clip': str(small), 'clips_per_s': 10.},
           {'name': 'b', 'clip': str(big), 'clips_per_s': 0.01}]
  table = bench.ratios(pipelines, steps, {str(small): small, str(big): big})
  assert [(r['pipeline'], r['step'], r['ratio']) for r in table] == [
      (0, 'q', 5.), (1, 'q', 2.), (1, 'b', pytest.approx(2000.))]


def test_setting_and_size_flags_are_checked():
  assert bench.setting_flag('2:1') == (2, 1)
  assert bench.size_flag('240x320') == (240, 320)
  with pytest.raises(UserError, match='WORKERS:THREADS'):
    bench.setting_flag('2')
  with pytest.raises(UserError, match='HEIGHTxWIDTH'):
    bench.size_flag('240')
