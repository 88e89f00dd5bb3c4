"""A procedurally generated text-to-video dataset: coloured shapes moving on a black background.

Every video is a pure function of `(seed, index)` and is rendered on demand, so a dataset of
any size costs no disk and an 8-frame clip of a long virtual video renders only those 8 frames.
Besides the frames, `read` returns the exact forward optical flow and a depth map.

Caption grammar (lower case, single spaces, no punctuation):

  caption := object | object ' and ' object
  object  := 'a ' COLOR ' ' SHAPE ' ' MOTION ' ' DIRECTION
  COLOR   := 'red' | 'green' | 'blue' | 'yellow' | 'cyan' | 'magenta'
  SHAPE   := 'circle' | 'square' | 'triangle'
  MOTION  := 'moving'      (config.motion == 'constant': constant velocity, stays in frame)
           | 'bouncing'    (config.motion == 'bounce': reflects off the walls, at the speed of
                            `bounce_travel`; DIRECTION is the direction at frame 0 of the
                            source video)
  (config.motion == 'mixed': each video is 'constant' or 'bounce' with probability 1/2.)
  DIRECTION := 'left' | 'right' | 'up' | 'down'

e.g. 'a red circle moving left', 'a red circle moving left and a blue square moving up'.
The two objects of a caption always have different colours.

Geometry: an object is a `size` x `size` pixel sprite (the shape inscribed in its bounding
box). Its bounding-box centre moves analytically with the frame index; when rendering, the
sprite's top-left corner is rounded to a whole pixel (to 1/k pixel with `supersample=k`, which
renders k x larger and averages k x k blocks: then flow is exact inside objects only). Hence, at
k = 1, every flow vector is an integer displacement and is exactly consistent with the frames:
for a pixel (x, y) showing object o at requested frame i, frame i+1 shows o at (x + dx, y + dy)
unless a nearer object covers it there.
Positions are (x, y) = (column, row) in pixel-index coordinates (pixel [r, c] sits at x=c, y=r).
"""

import dataclasses
import itertools
import re

import cv2
import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    'red': (230, 40, 40),
    'green': (40, 210, 40),
    'blue': (50, 70, 240),
    'yellow': (230, 220, 40),
    'cyan': (40, 220, 230),
    'magenta': (220, 40, 220),
}
BACKGROUND: tuple[int, int, int] = (0, 0, 0)
SHAPES = ('circle', 'square', 'triangle')
DIRECTIONS: dict[str, tuple[float, float]] = {
    'left': (-1.0, 0.0),
    'right': (1.0, 0.0),
    'up': (0.0, -1.0),
    'down': (0.0, 1.0),
}
MOTIONS = ('constant', 'bounce')  # of a scene; a config may also say 'mixed'
FPS = 8.  # nominal frame rate of the rendered videos
MOTION_WORDS = {'constant': 'moving', 'bounce': 'bouncing'}
MIN_OBJECT_PIXELS = 4  # smallest sprite side, so shapes stay recognisable
DEPTH_RANGE = (0.2, 0.8)
MIN_DEPTH_GAP = 0.1  # between two objects, so "nearer" is unambiguous
CONSTANT_TRAVEL = (0.5, 0.8)  # fraction of the free space traversed over the video
BOUNCE_TRAVEL = (1.5, 2.5)
BOUNCE_CLEAR_FRACTION = 0.25  # bouncing objects do not reach a wall in this first part


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """What the generated videos look like. Sizes are fractions of `resolution`."""
  resolution: int = 32  # H = W
  length: int = 32  # frames in each virtual source video
  max_objects: int = 1  # 1 or 2; with 2, a second object appears with probability 0.5
  motion: str = 'constant'  # 'constant' | 'bounce' | 'mixed' (each video either, 1/2 each)
  min_size: float = 0.25  # object bounding-box side as a fraction of resolution
  max_size: float = 0.35
  travel: tuple[float, float] = CONSTANT_TRAVEL  # range of the free space a constant motion
  # crosses over the video: the smaller, the less an object's position says where it goes
  supersample: int = 1  # k > 1: rendered at k x the resolution and area-averaged (see `render`)
  bounce_travel: tuple[float, float] = BOUNCE_TRAVEL  # the same for a bouncing motion (it may
  # exceed 1: the object reflects off the walls)

  def __post_init__(self):
    if not _is_int(self.resolution) or self.resolution < 16:
      raise ValueError(f'SyntheticConfig.resolution must be an integer >= 16, '
                       f'got {self.resolution!r}.')
    if not _is_int(self.length) or self.length < 2:
      raise ValueError(f'SyntheticConfig.length must be an integer >= 2, got {self.length!r}.')
    if self.max_objects not in (1, 2):
      raise ValueError(f'SyntheticConfig.max_objects must be 1 or 2, got {self.max_objects!r}.')
    if self.motion not in MOTIONS + ('mixed',):
      raise ValueError(f'SyntheticConfig.motion must be one of {MOTIONS + ("mixed",)}, got '
                       f'{self.motion!r}.')
    if not 0 < self.min_size <= self.max_size <= 0.5:
      raise ValueError(f'SyntheticConfig.min_size and max_size must satisfy '
                       f'0 < min_size <= max_size <= 0.5, got min_size={self.min_size!r}, '
                       f'max_size={self.max_size!r}.')
    if len(self.travel) != 2 or not 0 < self.travel[0] <= self.travel[1] <= 1:
      raise ValueError(f'SyntheticConfig.travel must be (low, high) with 0 < low <= high <= 1, '
                       f'got {self.travel!r}.')
    if len(self.bounce_travel) != 2 or not 0 < self.bounce_travel[0] <= self.bounce_travel[1]:
      raise ValueError(f'SyntheticConfig.bounce_travel must be (low, high) with 0 < low <= high, '
                       f'got {self.bounce_travel!r}.')
    if not _is_int(self.supersample) or self.supersample < 1:
      raise ValueError(f'SyntheticConfig.supersample must be an integer >= 1, '
                       f'got {self.supersample!r}.')
    if round(self.min_size * self.resolution) < MIN_OBJECT_PIXELS:
      raise ValueError(f'SyntheticConfig.min_size * resolution must be at least '
                       f'{MIN_OBJECT_PIXELS} pixels, got {self.min_size} * {self.resolution}; '
                       f'raise min_size or resolution.')


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class SceneObject:
  """One moving shape. `start` is its bounding-box centre (x, y) at frame 0, `velocity` its
  (dx, dy) in pixels per frame (the initial velocity when bouncing)."""
  color: str
  shape: str
  size: int  # bounding-box side in pixels
  depth: float  # in [0.2, 0.8]; smaller is nearer
  start: tuple[float, float]
  velocity: tuple[float, float]
  direction: str  # key of DIRECTIONS, the direction of `velocity`


@dataclasses.dataclass(frozen=True)
class Scene:
  """Everything needed to render any frame of one video."""
  objects: tuple[SceneObject, ...]
  resolution: int
  length: int
  motion: str  # 'constant' | 'bounce'
  supersample: int = 1


def shape_mask(shape: str, height: int, width: int | None = None) -> np.ndarray:
  """Returns bool [height, width]: `shape` inscribed in the box, by pixel-centre tests.

  The triangle is isosceles and points up (apex at the top-centre, base along the bottom).
  """
  width = height if width is None else width
  y = (np.arange(height) + 0.5)[:, None]
  x = (np.arange(width) + 0.5)[None, :]
  if shape == 'square':
    return np.ones((height, width), bool)
  if shape == 'circle':
    return ((x - width / 2) / (width / 2)) ** 2 + ((y - height / 2) / (height / 2)) ** 2 <= 1
  if shape == 'triangle':
    # Half-width grows linearly from 0 at the top edge to width/2 at the bottom edge; each row
    # is tested at its lower edge so that the apex row is not empty.
    return np.abs(x - width / 2) <= (y + 0.5) / height * (width / 2)
  raise ValueError(f'shape must be one of {SHAPES}, got {shape!r}.')


def sample_scene(rng: np.random.Generator, config: SyntheticConfig) -> Scene:
  """Draws the objects of one video from `rng` (see the module docstring for the rules)."""
  motion = config.motion
  if motion == 'mixed':
    motion = 'bounce' if rng.random() < 0.5 else 'constant'
  num_objects = 1 if config.max_objects == 1 else 1 + int(rng.random() < 0.5)
  colors = rng.choice(len(COLORS), size=num_objects, replace=False)
  depths = _sample_depths(rng, num_objects)
  objects = tuple(
      _sample_object(rng, config, list(COLORS)[c], d, motion) for c, d in zip(colors, depths))
  return Scene(objects, config.resolution, config.length, motion, config.supersample)


def _sample_depths(rng: np.random.Generator, num_objects: int) -> np.ndarray:
  while True:
    depths = rng.uniform(*DEPTH_RANGE, size=num_objects)
    if num_objects == 1 or abs(depths[0] - depths[1]) >= MIN_DEPTH_GAP:
      return depths


def _sample_object(rng: np.random.Generator, config: SyntheticConfig, color: str,
                   depth: float, motion: str) -> SceneObject:
  res, steps = config.resolution, config.length - 1
  shape = SHAPES[rng.integers(len(SHAPES))]
  size = int(round(rng.uniform(config.min_size, config.max_size) * res))
  direction = list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
  free = res - size  # the sprite's top-left corner ranges over [0, free] on each axis
  if motion == 'constant':
    travel = rng.uniform(*config.travel) * free
    room = free - travel  # start so that the whole path stays in [0, free]
  else:
    travel = rng.uniform(*config.bounce_travel) * free
    room = free - travel * BOUNCE_CLEAR_FRACTION
  ahead = rng.uniform(0, room)  # corner coordinate along the motion, for a positive direction
  across = rng.uniform(0, free)
  dx, dy = DIRECTIONS[direction]
  along_x = ahead if dx > 0 else free - ahead
  along_y = ahead if dy > 0 else free - ahead
  corner = (along_x if dx else across, along_y if dy else across)
  half = (size - 1) / 2
  return SceneObject(
      color=color, shape=shape, size=size, depth=float(depth),
      start=(corner[0] + half, corner[1] + half),
      velocity=(dx * travel / steps, dy * travel / steps), direction=direction)


def max_speed(config: SyntheticConfig, frame_stride: int = 1) -> float:
  """The fastest an object of `config` moves, in pixels per sampled frame at `frame_stride`."""
  travel = {'constant': config.travel[1], 'bounce': config.bounce_travel[1],
            'mixed': max(config.travel[1], config.bounce_travel[1])}[config.motion]
  free = config.resolution - round(config.min_size * config.resolution)
  return travel * free / (config.length - 1) * frame_stride


def caption_of(scene: Scene) -> str:
  """Returns the caption of `scene` in the module's grammar."""
  word = MOTION_WORDS[scene.motion]
  return ' and '.join(f'a {o.color} {o.shape} {word} {o.direction}' for o in scene.objects)


def still_caption(caption: str) -> str:
  """A caption of this grammar without its motion phrases, what a still frame shows:
  'a red circle moving left and a blue square moving up' -> 'a red circle and a blue square'."""
  motion = '|'.join(MOTION_WORDS.values())
  return re.sub(rf' ({motion}) ({"|".join(DIRECTIONS)})\b', '', caption)


def centers(scene: Scene, frame_indices) -> np.ndarray:
  """Returns float [num_objects, N, 2]: the analytic bounding-box centres (x, y) at the frames."""
  t = np.asarray(frame_indices, np.float64)[None, :, None]
  half = np.array([(o.size - 1) / 2 for o in scene.objects])[:, None, None]
  free = np.array([scene.resolution - o.size for o in scene.objects], np.float64)[:, None, None]
  start = np.array([o.start for o in scene.objects])[:, None, :]
  velocity = np.array([o.velocity for o in scene.objects])[:, None, :]
  corner = start - half + velocity * t
  if scene.motion == 'bounce':  # reflect off the walls: a triangle wave on [0, free]
    corner = free - np.abs(np.mod(corner, 2 * free) - free)
  return corner + half


def corners(scene: Scene, frame_indices) -> np.ndarray:
  """Returns int [num_objects, N, 2]: each sprite's top-left pixel (x, y) as rendered."""
  half = np.array([(o.size - 1) / 2 for o in scene.objects])[:, None, None]
  return np.floor(centers(scene, frame_indices) - half + 0.5).astype(np.int64)


def render(scene: Scene, frame_indices) -> dict[str, np.ndarray]:
  """Renders the requested frames of `scene`.

  Returns {'video': uint8 [N,H,W,3], 'flow': float32 [N-1,H,W,2] forward (dx, dy) from requested
  frame i to i+1 (the visible object's displacement; 0 on background), 'depth': float32 [N,H,W]
  (the visible object's depth; 1.0 on background)}.

  With `scene.supersample` = k > 1 the same scene is rendered at k x the resolution and each
  k x k block averaged, as a camera's pixels integrate light: edges are anti-aliased and an
  object moves in steps of 1/k pixel, where at k = 1 a slow one jumps a whole pixel on some
  frames and stands still on others. Flow is then the block mean of the fine flow / k (exact
  inside objects, blended at their edges) and depth the block's nearest.
  """
  k = scene.supersample
  if k > 1:
    fine = render(scaled(scene, k), frame_indices)
    blocks = lambda a: a.reshape(a.shape[0], scene.resolution, k, scene.resolution, k,
                                 *a.shape[3:])
    video = np.round(blocks(fine['video'].astype(np.float32)).mean((2, 4))).astype(np.uint8)
    return {'video': video,
            'flow': blocks(fine['flow']).mean((2, 4)) / k,
            'depth': blocks(fine['depth']).min((2, 4))}
  frames = np.asarray(frame_indices)
  n = len(frames)
  label = _label_map(scene, frames)  # 0 = background, k = scene.objects[k - 1]
  palette = np.array([BACKGROUND] + [COLORS[o.color] for o in scene.objects], np.uint8)
  depths = np.array([1.0] + [o.depth for o in scene.objects], np.float32)
  steps = np.diff(corners(scene, frames), axis=1).astype(np.float32)  # [O, N-1, 2]
  motion = np.concatenate([np.zeros((1, n - 1, 2), np.float32), steps]).transpose(1, 0, 2)
  flow = motion[np.arange(n - 1)[:, None, None], label[:-1]]
  return {'video': palette[label], 'flow': flow, 'depth': depths[label]}


def scaled(scene: Scene, k: int) -> Scene:
  """`scene` drawn k x larger (rendered with supersample 1): every position, size and velocity
  times k, so the fine rendering's k x k blocks show the original scene."""
  objects = tuple(dataclasses.replace(
      o, size=o.size * k, start=tuple((c + 0.5) * k - 0.5 for c in o.start),
      velocity=tuple(v * k for v in o.velocity)) for o in scene.objects)
  return Scene(objects, scene.resolution * k, scene.length, scene.motion, 1)


def _label_map(scene: Scene, frames: np.ndarray) -> np.ndarray:
  """Returns uint8 [N,H,W]: 1 + index of the visible object, 0 for background."""
  label = np.zeros((len(frames), scene.resolution, scene.resolution), np.uint8)
  pos = corners(scene, frames)
  for k in sorted(range(len(scene.objects)), key=lambda k: -scene.objects[k].depth):
    obj = scene.objects[k]  # painted far to near, so nearer objects occlude
    sprite = shape_mask(obj.shape, obj.size)
    for i, (x, y) in enumerate(pos[k]):
      label[i, y:y + obj.size, x:x + obj.size][sprite] = k + 1
  return label


def checked_frames(frame_indices, length: int) -> np.ndarray:
  """frame_indices as an int array [N], N >= 1, each in [0, length); else a ValueError."""
  frames = np.asarray(frame_indices)
  if frames.ndim != 1 or len(frames) == 0 or not np.issubdtype(frames.dtype, np.integer):
    raise ValueError(f'frame_indices must be a non-empty 1-D integer array, got {frame_indices!r}.')
  if frames.min() < 0 or frames.max() >= length:
    raise ValueError(f'frame_indices must lie in [0, {length}), got {frames.min()}..{frames.max()}.')
  return frames


class GeneratedVideos:
  """Random-access source of `num_videos` procedurally generated videos (picklable;
  deterministic from seed): video `index` is `sample(np.random.default_rng([seed, index]),
  config)`. Subclasses set the static methods `sample` (rng, config -> scene), `render`
  (scene, frame indices -> {'video', 'depth', ...}) and `describe` (scene -> caption).
  """

  def __init__(self, num_videos: int, seed: int, config):
    if not _is_int(num_videos) or num_videos < 0:
      raise ValueError(f'num_videos must be a non-negative integer, got {num_videos!r}.')
    if not _is_int(seed) or seed < 0:
      raise ValueError(f'seed must be a non-negative integer, got {seed!r}.')
    self.num_videos, self.seed, self.config = int(num_videos), int(seed), config

  def __len__(self) -> int:
    return self.num_videos

  def __repr__(self) -> str:
    return f'{type(self).__name__}({self.num_videos}, seed={self.seed}, config={self.config})'

  def num_frames(self, index: int) -> int:
    """The length of source video `index` (= config.length)."""
    self._check_index(index)
    return self.config.length

  def scene(self, index: int):
    """What video `index` shows (its objects, or boxes and camera path)."""
    self._check_index(index)
    return self.sample(np.random.default_rng([self.seed, int(index)]), self.config)

  def caption(self, index: int) -> str:
    return self.describe(self.scene(index))

  def fps(self, index: int) -> float:
    """The nominal frame rate (the renderer has no clock; sample videos are written at 8)."""
    self._check_index(index)
    return FPS

  def frame_size(self, index: int) -> tuple[int, int]:
    """(height, width) of the rendered frames."""
    self._check_index(index)
    return self.config.resolution, self.config.resolution

  def read(self, index: int, frame_indices, size: tuple[int, int] | None = None) -> dict:
    """Renders source frames `frame_indices` (int [N], N >= 1, each in [0, length)) of video
    `index`: {'video': uint8 [N,H,W,3], 'caption': str, 'depth': float32 [N,H,W], ...} (see the
    module's `render`). `size` = (H, W) other than the rendered one resizes the video (area
    interpolation) and the depth (nearest: an object's edge never blends into the background),
    and leaves out what cannot be resized (flow)."""
    frames = checked_frames(frame_indices, self.config.length)
    scene = self.scene(index)
    out = {'caption': self.describe(scene), **self.render(scene, frames)}
    if size is None or tuple(size) == self.frame_size(index):
      return out
    resize = lambda f, how: cv2.resize(f, tuple(size[::-1]), interpolation=how)
    return {'caption': out['caption'],
            'video': np.stack([resize(f, cv2.INTER_AREA) for f in out['video']]),
            'depth': np.stack([resize(f, cv2.INTER_NEAREST) for f in out['depth']])}

  def _check_index(self, index: int) -> None:
    if not 0 <= index < self.num_videos:
      raise IndexError(f'video index {index} out of range [0, {self.num_videos}).')


class SyntheticVideos(GeneratedVideos):
  """The moving-shapes videos of `SyntheticConfig`, with exact flow and depth."""
  sample, render, describe = (staticmethod(sample_scene), staticmethod(render),
                              staticmethod(caption_of))

  def __init__(self, num_videos: int, seed: int, config: SyntheticConfig = SyntheticConfig()):
    super().__init__(num_videos, seed, config)


def example_prompts(n: int, seed: int = 0, max_objects: int = 1,
                    motion: str = 'constant') -> list[str]:
  """Returns `n` distinct captions from the grammar, deterministic in `seed`.

  With max_objects=2, half of them (n // 2) describe two objects of different colours. With
  motion='mixed', every second one is 'bouncing' (from the prompts of motion='bounce').
  """
  if max_objects not in (1, 2):
    raise ValueError(f'max_objects must be 1 or 2, got {max_objects!r}.')
  if motion == 'mixed':
    moving = example_prompts(n - n // 2, seed, max_objects, 'constant')
    bouncing = example_prompts(n // 2, seed, max_objects, 'bounce')
    return [p for pair in itertools.zip_longest(moving, bouncing) for p in pair if p]
  if motion not in MOTIONS:
    raise ValueError(f'motion must be one of {MOTIONS + ("mixed",)}, got {motion!r}.')
  word = MOTION_WORDS[motion]
  singles = [(c, f'a {c} {s} {word} {d}')
             for c, s, d in itertools.product(COLORS, SHAPES, DIRECTIONS)]
  num_pairs = n // 2 if max_objects == 2 else 0
  if n - num_pairs > len(singles):
    raise ValueError(f'at most {len(singles)} distinct single-object prompts exist, '
                     f'asked for {n - num_pairs}.')
  rng = np.random.default_rng(seed)
  prompts = [singles[i][1] for i in rng.permutation(len(singles))[:n - num_pairs]]
  pairs = [f'{a} and {b}' for (ca, a), (cb, b) in itertools.permutations(singles, 2) if ca != cb]
  prompts += [pairs[i] for i in rng.permutation(len(pairs))[:num_pairs]]
  return [prompts[i] for i in rng.permutation(len(prompts))]
