"""Grain input pipelines: source -> shuffle -> clip sampling -> per-process shard -> batches.

Each JAX process reads a disjoint 1/process_count of every epoch and yields numpy batches of
`train.batch_size / process_count` clips; `sharding.global_batch` turns them into global
arrays on the mesh. The iterator state goes into every checkpoint, so a resumed run sees
exactly the batches it would have seen.
"""

import grain
import jax
import numpy as np

from vidiff.data import synthetic
from vidiff.data.transforms import ClipSampler, clip_indices, clip_span
from vidiff.errors import check

EVAL_SEED_OFFSET = 1_000_003


def make_source(data_config, split: str):
  """The random-access video source of `data.source` for split 'train' or 'eval'."""
  check(data_config.source == 'synthetic',
        f"data.source={data_config.source!r}; available sources: 'synthetic'.")
  cfg = data_config.synthetic
  length = max(cfg.length, clip_span(data_config.num_frames, data_config.frame_stride))
  spec = synthetic.SyntheticConfig(resolution=data_config.resolution, length=length,
                                   max_objects=cfg.max_objects, motion=cfg.motion)
  count = cfg.num_videos if split == 'train' else cfg.eval_videos
  seed = data_config.seed + (0 if split == 'train' else EVAL_SEED_OFFSET)
  return synthetic.SyntheticVideos(count, seed, spec)


def clips(data_config, model_text_config, split: str) -> grain.MapDataset:
  """An (infinite for 'train') MapDataset of clip examples for this process."""
  source = make_source(data_config, split)
  sampler = ClipSampler(source, data_config.num_frames, data_config.frame_stride,
                        model_text_config.max_len, model_text_config.vocab_size,
                        random_start=split == 'train')
  ds = grain.MapDataset.range(len(source)).seed(data_config.seed)
  if split == 'train':
    ds = ds.shuffle().repeat()
  ds = ds.random_map(sampler)
  return ds[jax.process_index()::jax.process_count()]


def held_out_clips(data_config, count: int) -> tuple[np.ndarray, list[str]]:
  """The first `count` held-out clips (from their first frame, as in eval) and their captions:
  (uint8 [count, T, H, W, 3], [count] str). The same on every process."""
  source = make_source(data_config, 'eval')
  check(0 < count <= len(source),
        f'{count} held-out videos asked for, the eval split has {len(source)}; raise '
        f'data.synthetic.eval_videos or lower metrics.num_videos.')
  frames = clip_indices(data_config.num_frames, data_config.frame_stride, 0)
  examples = [source.read(i, frames) for i in range(count)]
  return np.stack([e['video'] for e in examples]), [e['caption'] for e in examples]


def train_iterator(data_config, model_text_config, process_batch_size: int):
  """A checkpointable Grain iterator of numpy batches {'video': uint8 [b,T,H,W,3], 'tokens'}."""
  ds = clips(data_config, model_text_config, 'train').to_iter_dataset(
      grain.ReadOptions(num_threads=data_config.num_threads,
                        prefetch_buffer_size=data_config.prefetch))
  ds = ds.batch(process_batch_size, drop_remainder=True)
  if data_config.workers > 0:
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_config.workers))
  return iter(ds)


def eval_batches(data_config, model_text_config, process_batch_size: int) -> list[dict]:
  """The fixed held-out batches (same every eval) as numpy arrays."""
  ds = clips(data_config, model_text_config, 'eval').batch(process_batch_size, drop_remainder=True)
  check(len(ds) > 0, f'data.synthetic.eval_videos={data_config.synthetic.eval_videos} gives no full '
                     f'eval batch of {process_batch_size} per process; raise it.')
  return [ds[i] for i in range(len(ds))]


def as_float(video: jax.Array) -> jax.Array:
  """uint8 [..] in [0, 255] -> float32 in [-1, 1] (on device, inside the step)."""
  return video.astype(np.float32) / 127.5 - 1.
