"""The ControlNet through the shared trainer (config.task='controlnet'): depth in the data
pipeline, a frozen base restored from a checkpoint, the control scores, sampling with --control."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import REAL_VIDEOS, run_module
from configs import controlnet as controlnet_config
from configs import quickstart
from vidiff import train, video_io
from vidiff.data import depth, pipeline, synthetic, transforms, video_folder
from vidiff.errors import UserError
from vidiff.metrics import control as control_metrics


class Narrow:
  """The synthetic source with its frames cut to 32 x 24 (so a 24 x 24 clip is a crop)."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getattr__(self, name):
    return getattr(self.source, name)

  def frame_size(self, index):
    return 32, 24

  def read(self, index, frames, size=None):
    assert size is None
    out = self.source.read(index, frames)
    return {**out, 'video': out['video'][:, :, 4:28], 'depth': out['depth'][:, :, 4:28]}


def test_clips_keep_depth_aligned_through_crop_and_flip():
  source = synthetic.SyntheticVideos(12, 0, synthetic.SyntheticConfig(resolution=32))
  sampler = transforms.ClipSampler(Narrow(source), 4, 2, 8, 64, size=(24, 24), random_crop=True,
                                   flip=True, depth=True)
  for index in range(12):
    example = sampler(index, np.random.default_rng(index))
    assert example['video'].shape == (4, 24, 24, 3) and example['depth'].shape == (4, 24, 24)
    assert example['depth'].dtype == np.float32
    # objects are coloured on black: the object pixels are exactly where depth < 1
    np.testing.assert_array_equal(control_metrics.object_mask(example['video']),
                                  example['depth'] < 1)
  plain = transforms.ClipSampler(source, 4, 2, 8, 64, size=(32, 32))(0, np.random.default_rng(0))
  assert 'depth' not in plain


def test_resized_sources_resize_depth_nearest():
  for source in (synthetic.SyntheticVideos(2, 0, synthetic.SyntheticConfig(resolution=32)),):
    out = source.read(0, [0, 1], size=(16, 16))
    assert out['video'].shape == (2, 16, 16, 3) and out['depth'].shape == (2, 16, 16)
    native = np.unique(source.read(0, [0, 1])['depth'])
    assert set(np.unique(out['depth'])) <= set(native)  # nearest: no blended depths


def test_pipeline_batches_carry_depth_for_camera_and_synthetic():
  for source in ('synthetic', 'camera'):
    config = controlnet_config.get_config('unet3d,tiny')
    config.data.source = source
    batch = next(pipeline.train_iterator(config.data, config.model.text, 4))
    assert batch['depth'].shape == (4, 4, 16, 16) and batch['depth'].dtype == np.float32
    assert 0 <= batch['depth'].min() and batch['depth'].max() <= 1
    real, captions, maps = pipeline.held_out_clips(config.data, 2, with_depth=True)
    assert real.shape[:4] == maps.shape and len(captions) == 2


def test_depth_sources_and_their_errors(tmp_path):
  clip = os.path.join(REAL_VIDEOS, 'realshort.mp4')
  folder = tmp_path / 'videos'
  folder.mkdir()
  (folder / 'a.mp4').write_bytes(open(clip, 'rb').read())
  source = video_folder.VideoFolder(folder, depth=True)
  sampler = transforms.ClipSampler(source, 4, 1, 8, 64, size=(16, 16), depth=True)
  with pytest.raises(depth.DepthFileError, match='numpy.save'):
    sampler(0, np.random.default_rng(0))  # no a.depth.npy yet
  n = source.num_frames(0)
  np.save(folder / 'a.depth.npy', np.random.default_rng(0).random((n, 20, 30)).astype(np.float32))
  example = sampler(0, np.random.default_rng(0))
  assert example['depth'].shape == (4, 16, 16) and example['video'].shape == (4, 16, 16, 3)
  without = transforms.ClipSampler(video_folder.VideoFolder(folder), 4, 1, 8, 64,
                                   size=(16, 16), depth=True)
  with pytest.raises(UserError, match='NAME.depth.npy'):
    without(0, np.random.default_rng(0))
  config = controlnet_config.get_config('unet3d,tiny')
  config.data.source, config.data.tfds.name = 'tfds', 'anything'
  with pytest.raises(UserError, match='data.source=tfds'):
    pipeline.make_source(config.data, 'train')


def test_read_stream_rescales_units_and_reads_videos(tmp_path):
  maps = np.random.default_rng(0).uniform(2, 50, (5, 40, 60)).astype(np.float32)
  np.save(tmp_path / 'metres.npy', maps)
  stream = depth.read_stream(tmp_path / 'metres.npy', 16)
  assert stream.shape == (5, 16, 16) and stream.min() >= 0 and stream.max() <= 1
  grey = np.repeat(np.linspace(0, 255, 8, dtype=np.uint8)[:, None, None, None], 3, -1)
  video_io.write_video(tmp_path / 'depth.gif', np.broadcast_to(grey, (8, 24, 24, 3)), 8)
  stream = depth.read_stream(tmp_path / 'depth.gif', 16)
  assert stream.shape == (8, 16, 16)
  np.testing.assert_allclose(stream[:, 0, 0], np.linspace(0, 1, 8), atol=0.02)
  np.save(tmp_path / 'bad.npy', np.zeros((4, 4)))
  for bad in ('bad.npy', 'missing.npy'):
    with pytest.raises(depth.DepthFileError, match=r'\[T, H, W\]'):
      depth.read_stream(tmp_path / bad, 16)


def test_control_scores_rank_the_truth_above_blank_and_displaced_videos():
  source = synthetic.SyntheticVideos(4, 1, synthetic.SyntheticConfig(resolution=32))
  reads = [source.read(i, np.arange(6)) for i in range(4)]
  videos, maps = np.stack([r['video'] for r in reads]), np.stack([r['depth'] for r in reads])
  truth = control_metrics.scores(videos, maps, synthetic.BACKGROUND)
  assert truth == {'edge_recall': 1.0, 'foreground_iou': 1.0}
  blank = control_metrics.scores(np.zeros_like(videos), maps, synthetic.BACKGROUND)
  assert blank == {'edge_recall': 0.0, 'foreground_iou': 0.0}
  moved = control_metrics.scores(np.roll(videos, 12, axis=3), maps, synthetic.BACKGROUND)
  assert moved['foreground_iou'] < 0.3 and moved['edge_recall'] < 0.6
  assert control_metrics.scores(videos, maps) == {'edge_recall': 1.0}  # no background given


def _config(arg: str, steps: int):
  config = controlnet_config.get_config(arg)
  config.train.num_steps = steps
  return config


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """A tiny base denoiser (4 steps), then a ControlNet on it (4 steps) on a 2x2x2 mesh."""
  base_dir, control_dir = tmp_path_factory.mktemp('base'), tmp_path_factory.mktemp('control')
  base_config = quickstart.get_config('unet3d,tiny')
  base_config.sample.num_prompts = 0
  base = train.train_and_evaluate(base_config, str(base_dir))
  config = _config('unet3d,tiny', 4)
  config.controlnet.base_workdir = str(base_dir)
  config.mesh.update(data=2, fsdp=2, time=2)
  state = train.train_and_evaluate(config, str(control_dir))
  return base_dir, base, control_dir, state


@pytest.mark.slow
def test_controlnet_trains_only_the_branch_from_the_base_checkpoint(runs):
  _, base, _, state = runs
  same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                      base.ema_params, state.params['base'])
  assert all(jax.tree.leaves(same))  # the base received no update in 4 steps
  ema_same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                          base.ema_params, state.ema_params['base'])
  assert all(jax.tree.leaves(ema_same))
  zeros = [np.abs(np.asarray(v['kernel'])).max() for k, v in state.params['control'].items()
           if k.startswith('zero_')]
  assert zeros and all(z > 0 for z in zeros)  # the zero projections have learned


@pytest.mark.slow
def test_controlnet_run_writes_scored_side_by_side_samples(runs):
  _, _, control_dir, _ = runs
  samples = control_dir / 'samples' / 'step_4'
  videos = np.load(samples / 'samples.npz')['videos']
  assert videos.shape == (2, 4, 16, 64, 3)  # depth | real | base | ControlNet
  rows = [json.loads(l) for l in (control_dir / 'metrics.jsonl').read_text().splitlines()]
  scores = {k for r in rows for k in r if k.startswith('sample/')}
  assert {'sample/base_foreground_iou', 'sample/controlnet_foreground_iou',
          'sample/real_edge_recall'} <= scores
  real = [r['sample/real_foreground_iou'] for r in rows if 'sample/real_foreground_iou' in r]
  assert real == [1.0]


@pytest.mark.slow
def test_sample_with_a_depth_stream_and_clear_errors(runs, tmp_path):
  base_dir, _, control_dir, _ = runs
  maps = synthetic.SyntheticVideos(1, 3, synthetic.SyntheticConfig(resolution=16)).read(
      0, np.arange(6))['depth']
  np.save(tmp_path / 'depth.npy', maps)
  args = ['--steps=2', f'--control={tmp_path / "depth.npy"}', f'--output={tmp_path / "out.mp4"}']
  done = run_module('vidiff.sample', f'--workdir={control_dir}', *args, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert len(video_io.read_video(tmp_path / 'out.mp4')) == 6  # the stream's length
  done = run_module('vidiff.sample', f'--workdir={base_dir}', *args, timeout=300)
  assert done.returncode != 0 and 'without a ControlNet' in done.stderr


@pytest.mark.slow
def test_a_base_of_another_model_config_is_a_clear_error(runs, tmp_path):
  base_dir = runs[0]
  config = _config('st_transformer,tiny', 2)
  config.controlnet.base_workdir = str(base_dir)
  with pytest.raises(UserError, match='another model config'):
    train.train_and_evaluate(config, str(tmp_path / 'st'))
  config = _config('unet3d,tiny', 2)
  with pytest.raises(UserError, match='base_workdir'):
    train.train_and_evaluate(config, str(tmp_path / 'nobase'))
