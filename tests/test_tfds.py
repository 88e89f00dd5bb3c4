"""TFDS array_record datasets of encoded videos: build_tfds writes them, TfdsVideos reads them
frame-exactly like the folder they came from."""

import io
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REAL_VIDEOS, REPO
from vidiff.data import build_tfds, tfds_source
from vidiff.data.tfds_source import TfdsVideos
from vidiff.data.video_folder import VideoFolder
from vidiff.errors import UserError

CAPTIONS = {'realshort.mp4': 'a street, ünïcode', 'newtonscradle.gif': 'a newton cradle'}


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  """Two real videos with captions, an empty file and a corrupt one."""
  folder = tmp_path_factory.mktemp('videos')
  for name in CAPTIONS:
    shutil.copy(os.path.join(REAL_VIDEOS, name), folder / name)
  (folder / 'empty.mp4').write_bytes(b'')
  (folder / 'corrupt.mp4').write_bytes(np.random.default_rng(0).bytes(4000))
  (folder / 'captions.jsonl').write_text(
      ''.join(json.dumps({'file': f, 'caption': c}) + '\n' for f, c in CAPTIONS.items()))
  return folder


@pytest.fixture(scope='module')
def built(videos, tmp_path_factory):
  return build_tfds.build(videos, tmp_path_factory.mktemp('tfds') / 'clips')


def frame_sets(length: int) -> list[list[int]]:
  """From the start, a span needing a seek, strided, repeated/unordered, the last frame."""
  return [[0, 1, 2], [length // 2, length // 2 + 1], list(range(3, length, 7)), [5, 2, 5],
          [length - 1]]


def test_round_trip_matches_folder(videos, built):
  folder, source = VideoFolder(videos), TfdsVideos(str(built.out))
  assert len(source) == len(folder) == 2
  by_name = {os.path.basename(p): j for j, p in enumerate(folder.paths)}
  assert sorted(source.file_name(i) for i in range(len(source))) == sorted(CAPTIONS)
  for i in range(len(source)):
    j = by_name[source.file_name(i)]
    assert source.num_frames(i) == folder.num_frames(j)
    assert source.fps(i) == folder.fps(j)
    assert source.frame_size(i) == folder.frame_size(j)
    for indices in frame_sets(source.num_frames(i)):
      got, want = source.read(i, indices), folder.read(j, indices)
      assert got['caption'] == want['caption'] == CAPTIONS[source.file_name(i)]
      assert got['video'].dtype == np.uint8
      np.testing.assert_array_equal(got['video'], want['video'])
    resized = source.read(i, [0, 3], size=(16, 24))['video']
    assert resized.shape == (2, 16, 24, 3)
    np.testing.assert_array_equal(resized, folder.read(j, [0, 3], size=(16, 24))['video'])


def test_summary_reports_skipped_and_how_to_train(built):
  assert sorted(os.path.basename(p) for p, _ in built.skipped) == ['corrupt.mp4', 'empty.mp4']
  assert built.splits == {'train': 2}
  line = built.summary()
  assert '\n' not in line
  assert 'wrote 2 videos' in line and 'skipped 2' in line
  assert f'--config.data.source=tfds --config.data.tfds.name={built.out}' in line
  assert sorted(os.listdir(built.out)) == [
      'clips-train.array_record-00000-of-00001', 'dataset_info.json', 'features.json']
  assert os.listdir(built.out.parent) == ['clips']  # no temporary folder left


def test_record_read_once_per_index(built):
  source = TfdsVideos(str(built.out))
  reads = []

  class Counting:
    def __init__(self, records):
      self.records = records

    def __getitem__(self, index):
      reads.append(index)
      return self.records[index]

  source._records = Counting(source._records)  # pylint: disable=protected-access
  length = source.num_frames(1)
  source.fps(1)
  source.read(1, [0, length - 1])
  source.read(0, [0])
  assert reads == [1, 0]


def test_pickle_round_trip(built):
  source = TfdsVideos(str(built.out))
  want = source.read(0, [0, 4])  # fills the cache, which must not travel
  copy = pickle.loads(pickle.dumps(source))
  assert len(copy) == len(source) and copy.file_name(0) == source.file_name(0)
  got = copy.read(0, [0, 4])
  assert got['caption'] == want['caption']
  np.testing.assert_array_equal(got['video'], want['video'])


def test_eval_split(videos, tmp_path):
  built = build_tfds.build(videos, tmp_path / 'out', name='held_out', eval_videos=1)
  assert built.splits == {'train': 1, 'eval': 1}
  train, held = TfdsVideos(str(built.out)), TfdsVideos(str(built.out), 'eval')
  assert sorted([train.file_name(0), held.file_name(0)]) == sorted(CAPTIONS)
  assert TfdsVideos(str(built.out), 'train[:1]').file_name(0) == train.file_name(0)


def test_version_folder_and_data_dir(built, tmp_path):
  """The layout TFDS itself writes, DATA_DIR/NAME/VERSION, read by folder or by name."""
  shutil.copytree(built.out, tmp_path / 'clips' / '1.0.0')
  for source in (TfdsVideos(str(tmp_path / 'clips')),
                 TfdsVideos('clips', data_dir=str(tmp_path))):
    assert len(source) == 2 and source.num_frames(0) > 0


def test_errors(built, videos, tmp_path, monkeypatch):
  with pytest.raises(UserError, match='not found'):
    TfdsVideos(str(tmp_path / 'nothing_here'))
  with pytest.raises(UserError, match='not found'):
    TfdsVideos('no_such_dataset_xyz', data_dir=str(tmp_path))
  with pytest.raises(UserError, match="no split 'eval'.*--eval_fraction"):
    TfdsVideos(str(built.out), 'eval')
  with pytest.raises(UserError, match='already exists'):
    build_tfds.build(videos, built.out)
  with pytest.raises(UserError, match='not a folder'):
    build_tfds.build(tmp_path / 'missing', tmp_path / 'out')
  with pytest.raises(UserError, match='training needs at least one'):
    build_tfds.build(videos, tmp_path / 'out', eval_videos=2)
  with pytest.raises(UserError, match='lower_snake_case'):
    build_tfds.build(videos, tmp_path / 'out', name='Bad-Name')

  def broken(*args):
    raise RuntimeError('disk full')
  monkeypatch.setattr(tfds_source, 'example', broken)
  with pytest.raises(RuntimeError, match='disk full'):
    build_tfds.build(videos, tmp_path / 'out')
  assert os.listdir(tmp_path) == []  # neither the output nor its temporary folder


def test_default_name_and_eval_count():
  assert build_tfds.default_name('/data/My Clips-2') == 'my_clips_2'
  assert build_tfds.default_name('/data/2024') == 'videos_2024'
  assert build_tfds.eval_count(100, 0.05) == 5
  assert build_tfds.eval_count(10, 0.01) == 1
  assert build_tfds.eval_count(10, 0.) == 0
  np.testing.assert_array_equal(build_tfds.eval_indices(10, 3), [0, 4, 9])


def test_cli(videos, tmp_path):
  out = tmp_path / 'cli'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-m', 'vidiff.data.build_tfds', f'--videos={videos}',
                           f'--out={out}', '--eval_fraction=0.5'], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[-1].startswith('wrote 2 videos (1 train, 1 eval), skipped 2 unusable'), lines
  assert any('empty.mp4: empty file' in l for l in lines)
  assert 'Traceback' not in result.stderr
  assert len(TfdsVideos(str(out), 'eval')) == 1


def test_reencoded_build_is_small_with_frequent_keyframes(videos, tmp_path):
  import av
  from vidiff.data import reencode
  built = build_tfds.build(videos, tmp_path / 'small', short_side=64, keyframe_every=8)
  source, folder = TfdsVideos(str(built.out)), VideoFolder(videos)
  names = [os.path.basename(p) for p in folder.paths]
  for i in range(len(source)):
    j = names.index(source.file_name(i))
    assert source.num_frames(i) == folder.num_frames(j)
    assert source.frame_size(i) == reencode.target_size(folder.frame_size(j), 64)
    assert min(source.frame_size(i)) == 64
    assert source.fps(i) == pytest.approx(folder.fps(j), rel=1e-3)
    with av.open(io.BytesIO(source.record(i)['video'])) as container:
      stream = container.streams.video[0]
      keys = [p.pts for p in container.demux(stream) if p.size and p.is_keyframe]
    gaps = np.diff(np.searchsorted(np.sort(source.record(i)['pts']), sorted(keys)))
    assert len(keys) >= 4 and gaps.max() <= 8, gaps
    ours = source.read(i, [3, 30])['video'].astype(float)
    theirs = folder.read(j, [3, 30], size=source.frame_size(i))['video']
    assert np.abs(ours - theirs).mean() < 8  # CRF 18: close to the resized original
