"""A procedurally generated moving-camera dataset: a pinhole camera flying forward over a
checkered ground plane past coloured axis-aligned boxes, with exact per-pixel depth.

The 3D counterpart of `synthetic.py` (whose shapes move in a plane): here the whole image moves
with the camera and depth changes over the clip, the case a depth ControlNet has to follow.
Every video is a pure function of `(seed, index)`, rendered on demand by ray casting in numpy
(slab tests against each box, one plane for the ground), at any resolution and length.

World coordinates: x right, y up, z forward; the ground is y = 0. The camera starts at
(x0, EYE_HEIGHT, 0), looks along +z pitched down by PITCH_DEGREES and moves `speed` along +z
per frame. Depth is the camera-space z of the visible surface divided by FAR, clipped to
[0, 1]: 1.0 is the sky (nothing hit), smaller is nearer, as in `synthetic.render`.

Caption: 'a camera moving forward past ' + the box colours ('red and blue', 'red green and
blue') + ' boxes', e.g. 'a camera moving forward past red and blue boxes' ('past a red box'
when there is one).
"""

import dataclasses
import numbers

import cv2
import numpy as np

from vidiff.data import synthetic
from vidiff.data.synthetic import COLORS, FPS

EYE_HEIGHT = 1.0
PITCH_DEGREES = 8.0  # downwards, so the ground fills the lower part of the frame
FIELD_OF_VIEW_DEGREES = 70.0  # horizontal
FAR = 30.0  # depth 1.0: this far or beyond (and the sky)
SKY = (150, 190, 235)
GROUND = ((90, 90, 90), (150, 150, 150))  # checker colours, one world unit squares
FACE_SHADE = (0.75, 1.0, 0.9)  # brightness of a box face whose normal is along x, y, z


@dataclasses.dataclass(frozen=True)
class CameraConfig:
  """What the generated videos look like."""
  resolution: int = 32  # H = W
  length: int = 32  # frames in each virtual source video
  min_boxes: int = 2
  max_boxes: int = 3
  travel: float = 8.0  # world units the camera moves over the whole video

  def __post_init__(self):
    if not _is_int(self.resolution) or self.resolution < 8:
      raise ValueError(f'CameraConfig.resolution must be an integer >= 8, got {self.resolution!r}.')
    if not _is_int(self.length) or self.length < 2:
      raise ValueError(f'CameraConfig.length must be an integer >= 2, got {self.length!r}.')
    if not 1 <= self.min_boxes <= self.max_boxes <= len(COLORS):
      raise ValueError(f'CameraConfig needs 1 <= min_boxes <= max_boxes <= {len(COLORS)}, got '
                       f'{self.min_boxes}, {self.max_boxes}.')
    if not 0 < self.travel < FAR:
      raise ValueError(f'CameraConfig.travel must lie in (0, {FAR}), got {self.travel!r}.')


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Box:
  """An axis-aligned box standing on the ground: lo = (x, 0, z) and hi = (x, y, z) corners."""
  color: str
  lo: tuple[float, float, float]
  hi: tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class CameraScene:
  """Everything needed to render any frame of one video."""
  boxes: tuple[Box, ...]
  start_x: float  # the camera's x (its y is EYE_HEIGHT, its z 0 at frame 0)
  speed: float  # world units along +z per frame
  resolution: int
  length: int


def sample_scene(rng: np.random.Generator, config: CameraConfig) -> CameraScene:
  """Boxes on alternating sides of the camera's path, spread along it; the last one stays
  ahead of the camera at the end of the video (so it grows nearer over the whole clip)."""
  n = int(rng.integers(config.min_boxes, config.max_boxes + 1))
  colors = [list(COLORS)[i] for i in rng.choice(len(COLORS), size=n, replace=False)]
  side = 1 if rng.random() < 0.5 else -1
  starts = np.sort(rng.uniform(2.0, config.travel + 2.0, size=n))
  starts[-1] = config.travel + rng.uniform(2.5, 5.0)
  boxes = []
  for k, (color, z) in enumerate(zip(colors, starts.tolist())):
    width, depth, height = (float(rng.uniform(*r)) for r in ((0.6, 1.2), (0.6, 1.5), (0.6, 2.0)))
    x = side * (-1) ** k * float(rng.uniform(0.8, 1.8))  # near edge's distance from the path
    x_lo = x if x > 0 else x - width
    boxes.append(Box(color, (x_lo, 0.0, z), (x_lo + width, height, z + depth)))
  speed = config.travel / (config.length - 1)
  return CameraScene(tuple(boxes), float(rng.uniform(-0.3, 0.3)), speed, config.resolution,
                     config.length)


def caption_of(scene: CameraScene) -> str:
  """'a camera moving forward past red and blue boxes' (colours in the scene's order; one box:
  'past a red box')."""
  colors = [b.color for b in scene.boxes]
  if len(colors) == 1:
    return f'a camera moving forward past a {colors[0]} box'
  return f'a camera moving forward past {" ".join(colors[:-1])} and {colors[-1]} boxes'


def rays(height: int, width: int) -> np.ndarray:
  """World-space ray directions [H*W, 3] with camera-space z = 1 (so a hit's ray parameter is
  its camera-space depth), pixel centres, row 0 at the top."""
  focal = (width / 2) / np.tan(np.radians(FIELD_OF_VIEW_DEGREES) / 2)
  v, u = np.meshgrid(np.arange(height) + 0.5 - height / 2, np.arange(width) + 0.5 - width / 2,
                     indexing='ij')
  cam = np.stack([u / focal, -v / focal, np.ones_like(u)], -1).reshape(-1, 3)
  pitch = np.radians(PITCH_DEGREES)
  rotate = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)],
                     [0, np.sin(pitch), np.cos(pitch)]])  # about x: +z tilts towards -y
  return cam @ rotate.T


def trace(scene: CameraScene, frame_indices, height: int, width: int):
  """Casts every pixel's ray at the requested frames.

  Returns (t float [N, H*W]: camera-space depth of the hit, inf for the sky; label int
  [N, H*W]: -1 sky, 0 ground, k + 1 box k; axis int [N, H*W]: the hit face's normal axis).
  """
  d = rays(height, width)  # [P, 3]
  frames = np.asarray(frame_indices, np.float64)
  origins = np.stack([np.full_like(frames, scene.start_x), np.full_like(frames, EYE_HEIGHT),
                      scene.speed * frames], -1)  # [N, 3]
  with np.errstate(divide='ignore', invalid='ignore'):
    ground = np.where(d[:, 1] < 0, -EYE_HEIGHT / d[:, 1], np.inf)  # [P]
    t_best = np.broadcast_to(ground, (len(frames), len(d))).copy()
    label = np.where(np.isfinite(t_best), 0, -1)
    axis = np.full(t_best.shape, 1)
    for k, box in enumerate(scene.boxes):
      t_box, box_axis = _slab(origins, d, np.array(box.lo), np.array(box.hi))
      nearer = t_box < t_best
      t_best = np.where(nearer, t_box, t_best)
      label = np.where(nearer, k + 1, label)
      axis = np.where(nearer, box_axis, axis)
  return t_best, label, axis


def _slab(origins, d, lo, hi):
  """Ray-box entry distance [N, P] (inf: missed, or the camera inside) and the entry face's
  axis [N, P], for rays origins [N, 3] + t * d [P, 3]."""
  inv = 1.0 / d  # inf where d is 0: the slab is then all or nothing, as it should be
  t1 = (lo[None, None] - origins[:, None]) * inv[None]  # [N, P, 3]
  t2 = (hi[None, None] - origins[:, None]) * inv[None]
  near = np.nan_to_num(np.minimum(t1, t2), nan=-np.inf)
  far = np.nan_to_num(np.maximum(t1, t2), nan=np.inf)
  t_near, t_far = near.max(-1), far.min(-1)
  hit = (t_near <= t_far) & (t_near > 0)
  return np.where(hit, t_near, np.inf), near.argmax(-1)


def render(scene: CameraScene, frame_indices) -> dict[str, np.ndarray]:
  """{'video': uint8 [N, H, W, 3], 'depth': float32 [N, H, W] in [0, 1] (1 = sky or >= FAR)}."""
  n, size = len(np.asarray(frame_indices)), scene.resolution
  t, label, axis = trace(scene, frame_indices, size, size)
  d = rays(size, size)
  origins_z = scene.speed * np.asarray(frame_indices, np.float64)[:, None]
  hit_t = np.where(np.isfinite(t), t, 0.)  # the sky's colour does not come from the checker
  ground_x = np.floor(scene.start_x + hit_t * d[None, :, 0])
  ground_z = np.floor(origins_z + hit_t * d[None, :, 2])
  checker = ((ground_x + ground_z) % 2).astype(int)
  palette = np.array([COLORS[b.color] for b in scene.boxes] or [(0, 0, 0)], np.float64)
  box_rgb = palette[np.maximum(label - 1, 0)] * np.array(FACE_SHADE)[axis][..., None]
  rgb = np.where((label > 0)[..., None], box_rgb, np.array(GROUND, np.float64)[checker])
  rgb = np.where((label < 0)[..., None], np.array(SKY, np.float64), rgb)
  depth = np.minimum(t / FAR, 1.0).astype(np.float32)
  return {'video': np.round(rgb).astype(np.uint8).reshape(n, size, size, 3),
          'depth': depth.reshape(n, size, size)}


class CameraVideos(synthetic.GeneratedVideos):
  """Random-access source of moving-camera videos (`synthetic.GeneratedVideos`): 'video',
  'depth' and 'caption' of any frames of video `index`, drawn from
  `np.random.default_rng([seed, index])`."""
  sample, render, describe = (staticmethod(sample_scene), staticmethod(render),
                              staticmethod(caption_of))

  def __init__(self, num_videos: int, seed: int, config: CameraConfig = CameraConfig()):
    super().__init__(num_videos, seed, config)
