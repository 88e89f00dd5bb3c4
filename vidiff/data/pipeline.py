"""Grain input pipelines: source -> shuffle -> clip sampling -> per-process shard -> batches.

Each JAX process reads a disjoint 1/process_count of every epoch and yields numpy batches of
`train.batch_size / process_count` clips; `sharding.global_batch` turns them into global
arrays on the mesh. The iterator state goes into every checkpoint, so a resumed run sees
exactly the batches it would have seen.
"""

import dataclasses

import grain
from absl import flags
import jax
import numpy as np

from vidiff.data import camera_scene, synthetic, video_folder
from vidiff.data.transforms import ClipSampler, clip_span
from vidiff.errors import check

GENERATED = ('synthetic', 'camera')  # rendered on demand from (seed, index): no files
SOURCES = GENERATED + ('folder', 'tfds')

EVAL_SEED_OFFSET = 1_000_003
IMAGE_STREAM = 7  # seeds the per-batch draw of image batches apart from the bucket draw


def make_source(data_config, split: str):
  """The random-access video source of `data.source` for split 'train' or 'eval'."""
  kind = data_config.source
  check(kind in SOURCES, f'data.source={kind!r}; available sources: {", ".join(SOURCES)}.')
  if kind == 'folder':
    cfg = data_config.folder
    check(cfg.path, 'data.source=folder needs data.folder.path (a folder of videos).')
    path = cfg.eval_path if split == 'eval' and cfg.eval_path else cfg.path
    return video_folder.VideoFolder(path, min_frames=min_source_frames(data_config),
                                    depth=data_config.get('depth', False))
  check(not data_config.get('depth', False) or kind != 'tfds',
        'data.depth=True needs per-frame depth, which data.source=tfds does not provide; use '
        "data.source='synthetic' or 'camera', or a folder with NAME.depth.npy beside each video.")
  if kind == 'tfds':
    cfg = data_config.tfds
    check(cfg.name, 'data.source=tfds needs data.tfds.name (a dataset name, or the directory '
                    'that python -m vidiff.data.build_tfds wrote).')
    from vidiff.data import tfds_source  # tensorflow_datasets is slow to import
    split_name = cfg.eval_split if split == 'eval' and cfg.eval_split else cfg.split
    return tfds_source.TfdsVideos(cfg.name, split_name, cfg.data_dir or None)
  cfg = data_config[kind]
  length = max(cfg.length, clip_span(max(t for t, _, _ in shapes(data_config)),
                                     max(data_config.frame_stride, data_config.max_frame_stride)))
  count = cfg.num_videos if split == 'train' else cfg.eval_videos
  seed = data_config.seed + (0 if split == 'train' else EVAL_SEED_OFFSET)
  if kind == 'camera':
    spec = camera_scene.CameraConfig(resolution=data_config.resolution, length=length,
                                     min_boxes=cfg.min_boxes, max_boxes=cfg.max_boxes,
                                     travel=cfg.travel)
    return camera_scene.CameraVideos(count, seed, spec)
  spec = synthetic.SyntheticConfig(resolution=data_config.resolution, length=length,
                                   max_objects=cfg.max_objects, motion=cfg.motion,
                                   travel=tuple(cfg.travel), min_size=cfg.size[0],
                                   max_size=cfg.size[1], supersample=cfg.get('supersample', 1),
                                   bounce_travel=tuple(cfg.bounce_travel))
  return synthetic.SyntheticVideos(count, seed, spec)


def shapes(data_config) -> list[tuple[int, int, int]]:
  """The (frames, height, width) of train batches: `data.buckets`, else the one config shape."""
  if data_config.buckets:
    return [tuple(int(n) for n in b) for b in data_config.buckets]
  return [(data_config.num_frames, data_config.resolution, data_config.resolution)]


def min_source_frames(data_config) -> int:
  """Videos shorter than this cannot give any clip (others may still be too short for some)."""
  stride = 1 if data_config.target_fps > 0 else data_config.frame_stride
  return clip_span(min(t for t, _, _ in shapes(data_config)), stride)


def make_sampler(data_config, text_config, source, split: str, shape,
                 still_captions: bool = False) -> ClipSampler:
  """The clip sampler of `split` for batches of (frames, height, width) = `shape` (text_config
  None: one that is only used for `usable_clip`, which does not tokenize); `still_captions`:
  without their motion phrases."""
  d, train = data_config, split == 'train'
  frames, height, width = shape
  tokens, vocab = (text_config.max_len, text_config.vocab_size) if text_config else (1, 1)
  return ClipSampler(source, frames, d.frame_stride, tokens, vocab,
                     random_start=train and d.clip_start == 'random', size=(height, width),
                     max_frame_stride=d.max_frame_stride if train else 0,
                     target_fps=d.target_fps, random_crop=train and d.crop == 'random',
                     flip=train and d.flip, depth=d.get('depth', False),
                     still_captions=still_captions)


def still_image_captions(data_config) -> bool:
  """Whether image batches are captioned without their motion phrases (data.image_captions
  'still'; 'full' for configs saved before it)."""
  return data_config.get('image_captions', 'full') == 'still'


@dataclasses.dataclass(frozen=True)
class Images:
  """`frames` single frames, each a random frame of a random video of the source with its own
  caption, stacked like a clip: {'video': [frames, 1, H, W, 3], 'tokens': [frames, L], ...}
  (`flatten_images` turns a batch of them into a batch of 1-frame clips). `sampler`: a
  ClipSampler of 1-frame clips."""
  sampler: ClipSampler
  frames: int

  def __call__(self, index: int, rng: np.random.Generator) -> dict:
    del index  # every frame comes from a video of its own
    picks = [self.sampler(int(i), rng) for i in rng.integers(len(self.sampler.source),
                                                             size=self.frames)]
    return {k: np.stack([p[k] for p in picks]) for k in picks[0]}


def flatten_images(batch: dict) -> dict:
  """A batch of `Images` examples (tokens [b, frames, L]) -> 1-frame clips: 'video'
  [b * frames, 1, H, W, 3], 'tokens' [b * frames, L], ...; a batch of clips is returned as is."""
  if batch['tokens'].ndim == 2:
    return batch
  return {k: v.reshape(v.shape[0] * v.shape[1], *v.shape[2:]) for k, v in batch.items()}


@dataclasses.dataclass(frozen=True)
class Examples:
  """Grain map with index: (position in this process's stream, source index) -> example.

  All clips of a batch (positions b*batch_size .. (b+1)*batch_size - 1) use the same sampler,
  drawn per batch from `samplers` by (seed, b): the same on every process, so global batches are
  shape-homogeneous buckets. With `images` (an `Images`), a batch is one of images instead with
  probability `image_prob` (also drawn by (seed, b)).
  """
  samplers: tuple
  seed: int
  batch_size: int
  process: int
  images: Images | None = None
  image_prob: float = 0.

  def __call__(self, position: int, index: int) -> dict:
    batch = position // self.batch_size
    bucket = np.random.default_rng([self.seed, batch]).integers(len(self.samplers))
    rng = np.random.default_rng([self.seed, self.process, position])
    if self.images is not None and self.image_prob > 0:
      if np.random.default_rng([self.seed, batch, IMAGE_STREAM]).random() < self.image_prob:
        return self.images(int(index), rng)
    return self.samplers[bucket](int(index), rng)


def clips(data_config, model_text_config, split: str, batch_size: int = 1) -> grain.MapDataset:
  """An (infinite for 'train') MapDataset of clip examples for this process; eval clips all have
  the config's shape, train clips the bucket of their batch (of `batch_size` per process)."""
  source = make_source(data_config, split)
  buckets = shapes(data_config) if split == 'train' else shapes(data_config)[:1]
  samplers = tuple(make_sampler(data_config, model_text_config, source, split, b) for b in buckets)
  image_prob = data_config.get('image_batches', 0.) if split == 'train' else 0.
  images = None
  if image_prob > 0:
    frames, height, width = buckets[0]
    images = Images(make_sampler(data_config, model_text_config, source, split,
                                 (1, height, width), still_image_captions(data_config)), frames)
  ds = grain.MapDataset.range(len(source)).seed(data_config.seed)
  if split == 'train':
    ds = ds.shuffle().repeat()
  else:  # an eval set smaller than one global batch is repeated to fill it
    ds = ds.repeat(-(-batch_size * jax.process_count() // len(source)))
  ds = ds[jax.process_index()::jax.process_count()]
  return ds.map_with_index(Examples(samplers, data_config.seed, batch_size, jax.process_index(),
                                    images, image_prob))


def held_out_clips(data_config, count: int, with_depth: bool = False):
  """The first `count` held-out clips (from their first frame, centre crop, as in eval) and their
  captions: (uint8 [count, T, H, W, 3], [count] str), and with `with_depth` (data.depth=True)
  their depth maps, float32 [count, T, H, W]. The same on every process."""
  source = make_source(data_config, 'eval')
  check(0 < count <= len(source),
        f'{count} held-out videos asked for, the eval split has {len(source)}; add eval videos '
        f'(data.synthetic.eval_videos, data.folder.eval_path) or lower metrics.num_videos.')
  sampler = make_sampler(data_config, None, source, 'eval', shapes(data_config)[0])
  examples = [sampler.usable_clip(i, np.random.default_rng(i)) for i in range(count)]
  out = np.stack([e['video'] for e in examples]), [e['caption'] for e in examples]
  return (*out, np.stack([e['depth'] for e in examples])) if with_depth else out


def train_iterator(data_config, model_text_config, process_batch_size: int):
  """A checkpointable Grain iterator of numpy batches {'video': uint8 [b,T,H,W,3], 'tokens'}."""
  ds = clips(data_config, model_text_config, 'train', process_batch_size).to_iter_dataset(
      grain.ReadOptions(num_threads=data_config.num_threads,
                        prefetch_buffer_size=data_config.prefetch))
  ds = ds.batch(process_batch_size, drop_remainder=True).map(flatten_images)
  if data_config.workers > 0:
    if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags (outside vidiff.main too)
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_config.workers))
  return iter(ds)


def eval_batches(data_config, model_text_config, process_batch_size: int) -> list[dict]:
  """The fixed held-out batches (same every eval) as numpy arrays."""
  ds = clips(data_config, model_text_config, 'eval', process_batch_size)
  ds = ds.batch(process_batch_size, drop_remainder=True)
  return [ds[i] for i in range(len(ds))]


def as_float(video: jax.Array) -> jax.Array:
  """uint8 [..] in [0, 255] -> float32 in [-1, 1] (on device, inside the step)."""
  return video.astype(np.float32) / 127.5 - 1.
