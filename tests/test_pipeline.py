"""The Grain pipeline: clip shapes, frame stride, determinism, iterator checkpointing."""

import grain
import numpy as np
import pytest

from vidiff import train
from vidiff.data import pipeline, transforms
from vidiff.errors import UserError
from vidiff.models import text


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_batches_have_clip_shapes(tiny_config):
  d = tiny_config.data
  batch = next(pipeline.train_iterator(d, tiny_config.model.text, 4))
  assert batch['video'].shape == (4, d.num_frames, d.resolution, d.resolution, 3)
  assert batch['video'].dtype == np.uint8
  assert batch['tokens'].shape == (4, tiny_config.model.text.max_len)
  assert (batch['tokens'][:, 0] == text.BOS).all()


@pytest.mark.parametrize('stride', [1, 3])
def test_clip_takes_every_kth_frame(tiny_config, stride):
  d = tiny_config.data
  source = pipeline.make_source(d, 'train')
  sampler = transforms.ClipSampler(source, num_frames=4, frame_stride=stride, max_prompt_tokens=16,
                                   vocab_size=4096)
  clip = sampler(5, np.random.default_rng(0))
  start_rng = np.random.default_rng(0)
  start = int(start_rng.integers(0, source.num_frames(5) - transforms.clip_span(4, stride) + 1))
  expected = source.read(5, start + stride * np.arange(4))['video']
  np.testing.assert_array_equal(clip['video'], expected)
  full = source.read(5, np.arange(source.num_frames(5)))['video']
  np.testing.assert_array_equal(clip['video'], full[start:start + 3 * stride + 1:stride])


def test_same_seed_same_batches_other_seed_differs(tiny_config):
  d, t = tiny_config.data, tiny_config.model.text
  first = _take(pipeline.train_iterator(d, t, 4), 3)
  again = _take(pipeline.train_iterator(d, t, 4), 3)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a['video'], b['video'])
  d.seed = 1
  other = _take(pipeline.train_iterator(d, t, 4), 3)
  assert not np.array_equal(first[0]['video'], other[0]['video'])


def test_iterator_state_resumes_exactly(tiny_config):
  d, t = tiny_config.data, tiny_config.model.text
  it = pipeline.train_iterator(d, t, 2)
  _take(it, 3)
  state = it.get_state()
  expected = _take(it, 2)
  resumed = pipeline.train_iterator(d, t, 2)
  resumed.set_state(state)
  for a, b in zip(expected, _take(resumed, 2)):
    np.testing.assert_array_equal(a['video'], b['video'])
    np.testing.assert_array_equal(a['tokens'], b['tokens'])


def test_processes_read_disjoint_shards(tiny_config, monkeypatch):
  d, t = tiny_config.data, tiny_config.model.text
  d.synthetic.eval_videos = 8
  seen = []
  for index in range(2):
    monkeypatch.setattr(pipeline.jax, 'process_index', lambda i=index: i)
    monkeypatch.setattr(pipeline.jax, 'process_count', lambda: 2)
    batches = pipeline.eval_batches(d, t, 2)
    seen.append(np.concatenate([b['video'] for b in batches]))
  assert len(seen[0]) == len(seen[1]) == 4
  for a in seen[0]:
    assert not any(np.array_equal(a, b) for b in seen[1])


def test_eval_batches_are_fixed(tiny_config):
  d, t = tiny_config.data, tiny_config.model.text
  a = pipeline.eval_batches(d, t, 4)
  b = pipeline.eval_batches(d, t, 4)
  assert len(a) == d.synthetic.eval_videos // 4
  np.testing.assert_array_equal(a[0]['video'], b[0]['video'])


def test_clip_longer_than_video_is_a_user_error(tiny_config):
  source = pipeline.make_source(tiny_config.data, 'train')
  sampler = transforms.ClipSampler(source, num_frames=source.num_frames(0) + 1, frame_stride=1,
                                   max_prompt_tokens=16, vocab_size=4096)
  with pytest.raises(UserError, match='num_frames'):
    sampler(0, np.random.default_rng(0))


def test_as_float_range():
  video = np.array([0, 255], np.uint8)
  np.testing.assert_allclose(np.asarray(pipeline.as_float(video)), [-1., 1.])


def test_grain_is_the_engine(tiny_config):
  ds = pipeline.clips(tiny_config.data, tiny_config.model.text, 'eval')
  assert isinstance(ds, grain.MapDataset)


def test_synthetic_object_size_comes_from_the_config(tiny_config):
  tiny_config.data.resolution = 32
  for size in ((0.25, 0.25), (0.5, 0.5)):
    tiny_config.data.synthetic.size = size
    source = pipeline.make_source(tiny_config.data, 'train')
    assert {source.scene(i).objects[0].size for i in range(4)} == {round(size[0] * 32)}
  tiny_config.data.synthetic.size = (0.6, 0.7)
  with pytest.raises(UserError, match=r'data.synthetic.size=\(0.6, 0.7\) must be'):
    train.check_config(tiny_config)
