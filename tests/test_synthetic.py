"""Tests for the procedurally generated text-to-video dataset."""

import dataclasses
import pickle

import numpy as np
import pytest

from vidiff.data.synthetic import (
    COLORS, DIRECTIONS, SHAPES, Scene, SceneObject, SyntheticConfig, SyntheticVideos, caption_of,
    corners, example_prompts, render, scaled, shape_mask)
from vidiff.metrics.adherence import parse_caption


def _labels(video: np.ndarray, scene: Scene) -> np.ndarray:
  """Returns int [N,H,W]: 1 + index of the object whose colour each pixel shows, 0 if black."""
  label = np.zeros(video.shape[:-1], np.int64)
  for k, obj in enumerate(scene.objects):
    label[np.all(video == COLORS[obj.color], axis=-1)] = k + 1
  return label


@pytest.mark.parametrize('resolution,length,frames', [
    (16, 2, [0, 1]),
    (32, 32, np.arange(8) * 4),
    (48, 10, [3]),
    (64, 100, 17 + 5 * np.arange(16)),
])
@pytest.mark.parametrize('max_objects', [1, 2])
def test_read_shapes_and_dtypes(resolution, length, frames, max_objects):
  config = SyntheticConfig(resolution=resolution, length=length, max_objects=max_objects)
  ds = SyntheticVideos(5, seed=0, config=config)
  n = len(frames)
  for i in range(len(ds)):
    out = ds.read(i, np.asarray(frames))
    assert out['video'].shape == (n, resolution, resolution, 3) and out['video'].dtype == np.uint8
    assert out['flow'].shape == (n - 1, resolution, resolution, 2)
    assert out['flow'].dtype == np.float32
    assert out['depth'].shape == (n, resolution, resolution) and out['depth'].dtype == np.float32
    assert out['caption'] == ds.caption(i)
    assert ds.num_frames(i) == length
  assert len(ds) == 5


def test_values_are_consistent_with_each_other():
  ds = SyntheticVideos(20, seed=1, config=SyntheticConfig(max_objects=2))
  palette = {(0, 0, 0), *COLORS.values()}
  for i in range(len(ds)):
    out = ds.read(i, np.arange(0, 32, 3))
    background = np.all(out['video'] == 0, axis=-1)
    assert {tuple(c) for c in out['video'].reshape(-1, 3)} <= palette
    assert np.all(out['depth'][background] == 1.0)
    assert np.all((out['depth'][~background] >= 0.2) & (out['depth'][~background] <= 0.8))
    assert np.all(out['flow'][background[:-1]] == 0)
    assert background.sum() < background.size  # something is visible


def test_deterministic_from_seed_and_index():
  config = SyntheticConfig(max_objects=2)
  a, b = SyntheticVideos(10, 7, config), SyntheticVideos(10, 7, config)
  frames = np.arange(0, 32, 2)
  for i in range(10):
    ra, rb = a.read(i, frames), b.read(i, frames)
    for key in ('video', 'flow', 'depth'):
      np.testing.assert_array_equal(ra[key], rb[key])
    assert ra['caption'] == rb['caption'] and a.scene(i) == b.scene(i)
  assert not np.array_equal(a.read(0, frames)['video'], a.read(1, frames)['video'])
  assert a.scene(0) != SyntheticVideos(10, 8, config).scene(0)


def test_pickle_round_trips():
  ds = SyntheticVideos(10, 3, SyntheticConfig(resolution=48, motion='bounce', max_objects=2))
  clone = pickle.loads(pickle.dumps(ds))
  assert len(clone) == len(ds) and clone.config == ds.config
  for i in range(len(ds)):
    np.testing.assert_array_equal(clone.read(i, np.arange(8))['video'],
                                  ds.read(i, np.arange(8))['video'])


@pytest.mark.parametrize('resolution,travel', [(16, (0.5, 0.8)), (32, (0.5, 0.8)),
                                               (64, (0.5, 0.8)), (32, (0.25, 0.35))])
def test_constant_objects_stay_inside_and_travel_the_specified_distance(resolution, travel):
  config = SyntheticConfig(resolution=resolution, max_objects=2, travel=travel)
  ds = SyntheticVideos(100, 0, config)
  frames = np.arange(config.length)
  for i in range(len(ds)):
    scene = ds.scene(i)
    pos = corners(scene, frames)  # [O, N, 2] top-left pixels as rendered
    for obj, p in zip(scene.objects, pos):
      assert np.all(p >= 0) and np.all(p + obj.size <= resolution)
      free = resolution - obj.size
      distance = np.abs(p[-1] - p[0]).max()
      assert config.travel[0] * free - 1 <= distance <= config.travel[1] * free + 1
      assert np.all(p == p[0], axis=0).sum() == 1  # moves along exactly one axis
      step = np.sign(np.diff(p, axis=0)).sum(axis=0)
      assert np.all(np.sign(step) == np.array(DIRECTIONS[obj.direction]))
    if len(scene.objects) == 1:  # nothing is clipped at the border
      obj = scene.objects[0]
      area = (ds.read(i, frames)['depth'] < 1).sum(axis=(1, 2))
      assert np.all(area == shape_mask(obj.shape, obj.size).sum())


def test_bouncing_objects_stay_inside_and_reflect():
  config = SyntheticConfig(motion='bounce')
  ds = SyntheticVideos(50, 0, config)
  frames = np.arange(config.length)
  reversals = 0
  for i in range(len(ds)):
    scene = ds.scene(i)
    obj, p = scene.objects[0], corners(scene, frames)[0]
    assert np.all(p >= 0) and np.all(p + obj.size <= config.resolution)
    along = p @ np.array(DIRECTIONS[obj.direction])
    quarter = (config.length - 1) // 4
    assert np.all(np.diff(along[:quarter + 1]) >= 0)  # no wall in the first quarter
    reversals += int(np.any(np.diff(along) < 0))
    assert caption_of(scene) == f'a {obj.color} {obj.shape} bouncing {obj.direction}'
  assert reversals == len(ds)  # 1.5-2.5 free-space widths always hit a wall


def _assert_flow_matches_frames(out):
  video, flow, depth = out['video'], out['flow'], out['depth']
  n, h, w, _ = video.shape
  assert np.all(flow == np.round(flow))
  for i in range(n - 1):
    ys, xs = np.nonzero(depth[i] < 1)
    dx, dy = flow[i, ys, xs].astype(np.int64).T
    tx, ty = xs + dx, ys + dy
    assert np.all((tx >= 0) & (tx < w) & (ty >= 0) & (ty < h))
    # Unless a nearer object covers it, the pixel's content reappears at the flow target.
    visible = depth[i + 1, ty, tx] >= depth[i, ys, xs]
    assert visible.mean() > 0.5
    np.testing.assert_array_equal(video[i + 1, ty, tx][visible], video[i, ys, xs][visible])
    np.testing.assert_array_equal(depth[i + 1, ty, tx][visible], depth[i, ys, xs][visible])


@pytest.mark.parametrize('motion', ['constant', 'bounce'])
def test_flow_is_consistent_with_rendering(motion):
  config = SyntheticConfig(resolution=40, max_objects=2, motion=motion)
  ds = SyntheticVideos(40, 5, config)
  rng = np.random.default_rng(0)
  for i in range(len(ds)):
    frames = np.sort(rng.choice(config.length, size=6, replace=False))
    _assert_flow_matches_frames(ds.read(i, frames))


def test_flow_is_the_objects_displacement():
  ds = SyntheticVideos(20, 2, SyntheticConfig(resolution=32))
  frames = np.array([0, 3, 4, 10, 31])
  for i in range(len(ds)):
    out, pos = ds.read(i, frames), corners(ds.scene(i), frames)[0]
    for j in range(len(frames) - 1):
      on = out['depth'][j] < 1
      np.testing.assert_array_equal(out['flow'][j][on], np.broadcast_to(pos[j + 1] - pos[j],
                                                                        (on.sum(), 2)))


@pytest.mark.parametrize('motion', ['constant', 'bounce'])
def test_supersampled_rendering_is_the_block_mean_and_moves_smoothly(motion):
  """supersample=k draws the same scene (same captions) as the k x finer rendering averaged over
  k x k blocks: a slow object's mass centre then moves every frame, where at k = 1 it jumps a
  whole pixel on some frames and stands still on others."""
  config = SyntheticConfig(resolution=16, length=12, motion=motion, travel=(0.3, 0.4))
  coarse, smooth = (SyntheticVideos(6, 5, dataclasses.replace(config, supersample=k))
                    for k in (1, 4))
  frames = np.arange(12)
  for i in range(6):
    assert coarse.caption(i) == smooth.caption(i)
    out = smooth.read(i, frames)
    assert out['video'].shape == (12, 16, 16, 3) and out['video'].dtype == np.uint8
    assert out['flow'].shape == (11, 16, 16, 2) and out['depth'].shape == (12, 16, 16)
    block_mean = render(scaled(smooth.scene(i), 4), frames)['video'].reshape(
        12, 16, 4, 16, 4, 3).mean((2, 4))
    np.testing.assert_allclose(out['video'], block_mean, atol=0.5)
    if motion == 'constant':  # flow in (coarse) pixels a frame: the velocity, on average
      on = np.broadcast_to((out['depth'][:-1] < 1)[..., None], out['flow'].shape)
      inside = out['flow'][on].reshape(-1, 2)
      np.testing.assert_allclose(inside.mean(0), smooth.scene(i).objects[0].velocity, atol=0.2)
  moving = lambda ds: np.mean([np.abs(np.diff(ds.read(i, frames)['video'].astype(float),
                                              axis=0)).mean((1, 2, 3)) > 0
                               for i in range(6)])
  assert moving(smooth) >= 0.95 and moving(coarse) < moving(smooth)


def _overlapping_scene(near_color: str, far_color: str) -> Scene:
  near = SceneObject(near_color, 'square', 10, 0.3, (15.5, 15.5), (1.0, 0.0), 'right')
  far = SceneObject(far_color, 'circle', 12, 0.7, (16.5, 16.5), (0.0, -1.0), 'up')
  return Scene((far, near), resolution=32, length=8, motion='constant')


def test_nearer_object_occludes_farther():
  scene = _overlapping_scene('red', 'blue')
  out = render(scene, np.arange(4))
  center = out['video'][0, 14:18, 14:18]
  assert np.all(center == COLORS['red']) and np.all(out['depth'][0, 14:18, 14:18] == 0.3)
  assert np.any(np.all(out['video'][0] == COLORS['blue'], axis=-1))  # the far one peeks out
  assert np.all(out['flow'][0, 14:18, 14:18] == [1, 0])  # the visible object's motion
  _assert_flow_matches_frames(out)
  # Swapping the depths swaps which one is visible.
  far, near = scene.objects
  swapped = Scene((SceneObject(**{**vars(far), 'depth': 0.3}),
                   SceneObject(**{**vars(near), 'depth': 0.7})), 32, 8, 'constant')
  out = render(swapped, np.arange(4))
  assert np.all(out['video'][0, 14:18, 14:18] == COLORS['blue'])
  assert np.all(out['flow'][0, 14:18, 14:18] == [0, -1])


def test_captions_parse_back_to_the_scene():
  ds = SyntheticVideos(200, 4, SyntheticConfig(max_objects=2))
  counts = []
  for i in range(len(ds)):
    scene = ds.scene(i)
    parsed = parse_caption(ds.caption(i))
    counts.append(len(parsed))
    assert [(p['color'], p['shape'], p['motion'], p['direction']) for p in parsed] == [
        (o.color, o.shape, 'moving', o.direction) for o in scene.objects]
    assert len({o.color for o in scene.objects}) == len(scene.objects)
    if len(scene.objects) == 2:
      assert abs(scene.objects[0].depth - scene.objects[1].depth) >= 0.1
  assert 0.35 < np.mean(np.array(counts) == 2) < 0.65
  single = SyntheticVideos(50, 4, SyntheticConfig())
  assert all(len(single.scene(i).objects) == 1 for i in range(len(single)))


def test_caption_grammar():
  ds = SyntheticVideos(100, 0, SyntheticConfig(max_objects=2))
  for i in range(len(ds)):
    for phrase in ds.caption(i).split(' and '):
      a, color, shape, motion, direction = phrase.split(' ')
      assert (a, motion) == ('a', 'moving')
      assert color in COLORS and shape in SHAPES and direction in DIRECTIONS


def test_shape_masks():
  for size in (4, 8, 9, 31):
    assert shape_mask('square', size).all()
    circle, triangle = shape_mask('circle', size), shape_mask('triangle', size)
    if size >= 8:  # tiny sprites are too coarse for these ratios
      assert 0.7 < circle.mean() < 0.9 and 0.45 < triangle.mean() < 0.7
    assert circle.any(axis=0).all() and circle.any(axis=1).all()  # fills its bounding box
    assert triangle.any(axis=0).all() and triangle.any(axis=1).all()
    assert triangle[0].sum() < triangle[-1].sum()  # points up
    np.testing.assert_array_equal(circle, circle[::-1])
    np.testing.assert_array_equal(triangle, triangle[:, ::-1])
  with pytest.raises(ValueError, match='shape'):
    shape_mask('hexagon', 8)


def test_example_prompts():
  prompts = example_prompts(20, seed=1)
  assert len(set(prompts)) == 20 and prompts == example_prompts(20, seed=1)
  assert prompts != example_prompts(20, seed=2)
  assert all(len(parse_caption(p)) == 1 for p in prompts)
  assert len(set(example_prompts(72))) == 72
  mixed = example_prompts(30, seed=0, max_objects=2)
  assert len(set(mixed)) == 30 and sum(len(parse_caption(p)) == 2 for p in mixed) == 15
  assert all(len({o['color'] for o in parse_caption(p)}) == len(parse_caption(p)) for p in mixed)
  assert all('bouncing' in p for p in example_prompts(5, motion='bounce'))
  with pytest.raises(ValueError, match='72'):
    example_prompts(73)


@pytest.mark.parametrize('field,value', [
    ('resolution', 8), ('resolution', 32.0), ('length', 1), ('max_objects', 3),
    ('motion', 'zigzag'), ('min_size', 0.0), ('max_size', 0.6), ('min_size', 0.4),
    ('travel', (0.5,)), ('travel', (0.8, 0.5)), ('travel', (0.0, 0.5)), ('travel', (0.5, 1.5)),
    ('supersample', 0), ('supersample', 2.0),
])
def test_bad_config_raises(field, value):
  with pytest.raises(ValueError, match=field):
    SyntheticConfig(**{field: value})


def test_bad_reads_raise():
  ds = SyntheticVideos(3, 0, SyntheticConfig(length=8))
  with pytest.raises(ValueError, match='frame_indices'):
    ds.read(0, [0, 8])
  with pytest.raises(ValueError, match='frame_indices'):
    ds.read(0, [])
  with pytest.raises(ValueError, match='frame_indices'):
    ds.read(0, np.array([0.0, 1.0]))
  with pytest.raises(IndexError):
    ds.read(3, [0])
  with pytest.raises(ValueError, match='num_videos'):
    SyntheticVideos(-1, 0)
