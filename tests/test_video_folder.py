"""The video-folder source and clip sampling on real footage (mp4 + gif from ../shared/data)."""

import json
import logging
import os
import re
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

from conftest import REAL_VIDEOS
from vidiff import sharding
from vidiff.data import decode, pipeline, prefetch, transforms, video_folder
from vidiff.errors import UserError
from vidiff.models import text

MP4, GIF = 'realshort.mp4', 'newtonscradle.gif'


@pytest.fixture
def folder(tmp_path):
  """The two real videos, captions for one in captions.jsonl and the other in a .txt file."""
  for name in (MP4, GIF):
    shutil.copy(os.path.join(REAL_VIDEOS, name), tmp_path / name)
  (tmp_path / 'captions.jsonl').write_text(json.dumps({'file': MP4, 'caption': 'a street'}) + '\n')
  (tmp_path / 'newtonscradle.txt').write_text('a cradle swinging left\n')
  return tmp_path


@pytest.fixture
def broken(folder):
  """The folder plus a zero-byte file and a corrupt one."""
  (folder / 'empty.mp4').write_bytes(b'')
  (folder / 'corrupt.webm').write_bytes(np.random.default_rng(0).bytes(4096))
  return folder


def _folder_config(tiny_config, path, **data):
  d = tiny_config.data
  d.update(source='folder', num_frames=4, frame_stride=3, resolution=32, **data)
  d.folder.path = str(path)
  return tiny_config


def test_frames_equal_a_full_decode(folder):
  source = video_folder.VideoFolder(folder)
  for i, name in enumerate(sorted([GIF, MP4])):
    assert os.path.basename(source.paths[i]) == name
    full = iio.imread(folder / name, plugin='pyav')[..., :3]
    assert source.num_frames(i) == len(full) == 36
    assert source.frame_size(i) == full.shape[1:3]
    frames = np.array([30, 2, 17])  # any order, seeking backwards and forwards
    np.testing.assert_array_equal(source.read(i, frames)['video'], full[frames])
  assert source.captions == ['a cradle swinging left', 'a street']
  assert source.fps(1) == pytest.approx(30, abs=0.1)


def test_corrupt_and_empty_files_are_skipped_and_counted(broken, caplog):
  with caplog.at_level(logging.WARNING):
    source = video_folder.VideoFolder(broken)
  assert len(source) == 2
  assert sorted(os.path.basename(p) for p, _ in source.skipped) == ['corrupt.webm', 'empty.mp4']
  assert 'skipped 2 of 4 videos' in caplog.text


def test_too_short_videos_are_skipped(broken):
  assert len(video_folder.VideoFolder(broken, min_frames=36)) == 2  # both have 36 frames
  with pytest.raises(UserError, match='no usable video.*36 frames < 37'):
    video_folder.VideoFolder(broken, min_frames=37)


def test_empty_or_missing_folder_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match='data.folder.path'):
    video_folder.VideoFolder(tmp_path / 'missing')
  with pytest.raises(UserError, match='no video files'):
    video_folder.VideoFolder(tmp_path)


def test_bad_captions_line_is_a_user_error(folder):
  (folder / 'captions.jsonl').write_text('{"file": "a.mp4"}\n')
  with pytest.raises(UserError, match='line 1'):
    video_folder.VideoFolder(folder)


def test_batches_have_clip_shapes_stride_and_crop(tiny_config, folder):
  config = _folder_config(tiny_config, folder, clip_start='first', crop='center')
  batch = next(pipeline.train_iterator(config.data, config.model.text, 2))
  assert batch['video'].shape == (2, 4, 32, 32, 3) and batch['video'].dtype == np.uint8
  assert batch['fps'].shape == (2,) and set(batch['skipped']) == {0}
  source = video_folder.VideoFolder(folder)
  by_caption = {text.tokenize([c], config.model.text.max_len, config.model.text.vocab_size)[0]
                .tobytes(): i for i, c in enumerate(source.captions)}
  for video, tokens, fps in zip(batch['video'], batch['tokens'], batch['fps']):
    i = by_caption[tokens.tobytes()]
    h, w = source.frame_size(i)
    size = transforms.cover_size((h, w), (32, 32))  # shorter side to 32, then centre crop
    full = source.read(i, np.array([0, 3, 6, 9]), size=size)['video']
    y, x = (size[0] - 32) // 2, (size[1] - 32) // 2
    np.testing.assert_array_equal(video, full[:, y:y + 32, x:x + 32])
    assert fps == pytest.approx(source.fps(i) / 3, rel=1e-5)


def test_same_seed_same_batches_and_iterator_resumes(tiny_config, folder):
  config = _folder_config(tiny_config, folder, flip=True)
  d, t = config.data, config.model.text
  take = lambda it, n: [next(it) for _ in range(n)]
  a, b = take(pipeline.train_iterator(d, t, 2), 3), take(pipeline.train_iterator(d, t, 2), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['video'], y['video'])
  it = pipeline.train_iterator(d, t, 2)
  take(it, 2)
  state, expected = it.get_state(), take(it, 2)
  resumed = pipeline.train_iterator(d, t, 2)
  resumed.set_state(state)
  for x, y in zip(expected, take(resumed, 2)):
    np.testing.assert_array_equal(x['video'], y['video'])
    np.testing.assert_array_equal(x['tokens'], y['tokens'])


def test_unusable_video_at_read_time_is_replaced_and_counted(folder, monkeypatch):
  source = video_folder.VideoFolder(folder)
  real_read = decode.read_frames

  def fails_on_gif(file, info, indices, size=None):
    if str(file).endswith('.gif'):
      raise decode.VideoError('truncated')
    return real_read(file, info, indices, size)
  monkeypatch.setattr(decode, 'read_frames', fails_on_gif)
  sampler = transforms.ClipSampler(source, 4, 2, 8, 64, size=(32, 32))
  example = sampler(0, np.random.default_rng(0))  # index 0 is the gif
  assert example['skipped'] == 1 and example['video'].shape == (4, 32, 32, 3)
  with pytest.raises(UserError, match='could not give a clip'):
    transforms.ClipSampler(source, 40, 1, 8, 64)(0, np.random.default_rng(0))  # all too short


def test_stride_range_and_target_fps(folder):
  source = video_folder.VideoFolder(folder)
  rng = np.random.default_rng(0)
  ranged = transforms.ClipSampler(source, 4, 1, 8, 64, max_frame_stride=20)
  strides = {ranged.stride(36, 30., rng) for _ in range(200)}
  assert strides == set(range(1, 12))  # capped at (36 - 1) // 3 = 11 by the video's length
  by_fps = transforms.ClipSampler(source, 4, 1, 8, 64, target_fps=10.)
  assert by_fps.stride(36, 30., rng) == 3
  assert by_fps(1, rng)['fps'] == pytest.approx(source.fps(1) / 3, rel=1e-5)


def test_flip_mirrors_frames_and_caption(folder):
  source = video_folder.VideoFolder(folder)
  plain = transforms.ClipSampler(source, 2, 1, 8, 64, random_start=False, size=(32, 32))
  flips = transforms.ClipSampler(source, 2, 1, 8, 64, random_start=False, size=(32, 32), flip=True)
  seen = set()
  for seed in range(8):
    a = plain.usable_clip(0, np.random.default_rng(seed))
    b = flips.usable_clip(0, np.random.default_rng(seed))
    flipped = b['caption'] != a['caption']
    seen.add(flipped)
    np.testing.assert_array_equal(b['video'], a['video'][:, :, ::-1] if flipped else a['video'])
    assert b['caption'] == ('a cradle swinging right' if flipped else 'a cradle swinging left')
  assert seen == {True, False}


def test_buckets_give_shape_homogeneous_batches(tiny_config, folder):
  buckets = ((4, 16, 16), (2, 32, 16))
  config = _folder_config(tiny_config, folder, buckets=buckets)
  it = pipeline.train_iterator(config.data, config.model.text, 2)
  shapes = [next(it)['video'].shape[1:4] for _ in range(12)]
  assert set(shapes) == set(buckets)


def test_device_prefetch_resumes_at_the_next_unconsumed_batch(tiny_config, folder):
  config = _folder_config(tiny_config, folder)
  d, t = config.data, config.model.text
  mesh = sharding.make_mesh(config.mesh)
  shardings = sharding.batch_shardings(mesh, sharding.rules(config.mesh))
  batches = prefetch.DevicePrefetch(pipeline.train_iterator(d, t, 8), shardings, size=2)
  next(batches)
  state = batches.get_state()  # two more batches are already on the mesh
  expected = np.asarray(next(batches)['video'])
  again = prefetch.DevicePrefetch(pipeline.train_iterator(d, t, 8), shardings, size=2)
  again.set_state(state)
  np.testing.assert_array_equal(np.asarray(next(again)['video']), expected)


@pytest.mark.slow
def test_trains_on_tfds_built_from_a_folder_with_buckets(tiny_config, broken, tmp_path):
  """build_tfds on a folder with bad files -> a 4-step run over two buckets, checkpointed."""
  from vidiff import train
  from vidiff.data import build_tfds
  built = build_tfds.build(broken, tmp_path / 'tfds', eval_videos=1)
  config = _folder_config(tiny_config, broken, buckets=((4, 16, 16), (2, 16, 16)), flip=True)
  config.data.update(source='tfds', resolution=16)
  config.data.tfds.update(name=str(built.out),
                          eval_split='eval')
  config.train.update(num_steps=4, batch_size=8, eval_every=4, checkpoint_every=4, log_every=1)
  config.sample.num_prompts = 0
  state = train.train_and_evaluate(config, str(tmp_path / 'work'))
  assert int(state.step) == 4
  rows = [json.loads(l) for l in (tmp_path / 'work' / 'metrics.jsonl').read_text().splitlines()]
  assert [r['data/skipped_videos'] for r in rows if 'data/skipped_videos' in r] == [0.] * 4
  assert np.isfinite([r['eval/loss'] for r in rows if 'eval/loss' in r]).all()
  assert (tmp_path / 'work' / 'checkpoints' / '4').is_dir()


class _CountingContainer:
  """A PyAV container that counts the frames its decode() yields."""

  def __init__(self, container, counter):
    self._container, self._counter = container, counter

  def __enter__(self):
    self._container.__enter__()
    return self

  def __exit__(self, *exc):
    return self._container.__exit__(*exc)

  def __getattr__(self, name):
    return getattr(self._container, name)

  def decode(self, *args, **kwargs):
    for frame in self._container.decode(*args, **kwargs):
      self._counter.append(1)
      yield frame


def test_a_clip_decodes_about_one_gop_not_the_file(tmp_path, monkeypatch):
  import av
  path, rng = str(tmp_path / 'long.mp4'), np.random.default_rng(0)
  frames = rng.integers(0, 255, (240, 32, 32, 3), dtype=np.uint8)
  with av.open(path, 'w') as out:
    stream = out.add_stream('libx264', rate=24)
    stream.width, stream.height, stream.pix_fmt, stream.gop_size = 32, 32, 'yuv420p', 12
    for f in frames:
      out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format='rgb24')))
    out.mux(stream.encode())
  info = decode.probe(path)
  assert info.num_frames == 240
  counter, real_open = [], av.open
  monkeypatch.setattr(decode.av, 'open', lambda f: _CountingContainer(real_open(f), counter))
  clip = decode.read_frames(path, info, [200, 204, 208])
  assert len(counter) <= 12 + 9, len(counter)  # at most a GOP before frame 200, then its span
  counter.clear()
  monkeypatch.setattr(decode.av, 'open', real_open)
  full = iio.imread(path, plugin='pyav')
  np.testing.assert_array_equal(clip, full[[200, 204, 208]])


@pytest.mark.parametrize('field, value, fragment', [
    ('clip_start', 'middle', "data.clip_start='middle'"),
    ('crop', 'left', "data.crop='left'"),
    ('max_frame_stride', 1, 'data.max_frame_stride=1'),
    ('buckets', ((4, 15, 16),), 'data.buckets entry (4, 15, 16): data.resolution=15'),
    ('source', 'webdataset', "data.source='webdataset'"),
])
def test_bad_data_fields_are_one_clear_error(tiny_config, field, value, fragment):
  from vidiff import train
  tiny_config.data.frame_stride = 2
  tiny_config.data[field] = value
  with pytest.raises(UserError, match=re.escape(fragment)):
    train.check_config(tiny_config)
    pipeline.make_source(tiny_config.data, 'train')


def test_folder_source_without_a_path_is_a_user_error(tiny_config):
  tiny_config.data.source = 'folder'
  with pytest.raises(UserError, match='data.folder.path'):
    pipeline.make_source(tiny_config.data, 'train')
