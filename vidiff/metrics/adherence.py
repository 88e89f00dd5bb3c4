"""Prompt adherence of generated videos, judged by a simple colour tracker.

The prompts follow the grammar of `vidiff.data.synthetic` ('a red circle moving left and ...').
Only the FIRST object of a caption is judged:

- 'color': the prompted colour covers at least MIN_AREA_FRACTION (0.4%) of the frame in at
  least half of the frames (the "present" frames).
- 'direction': for 'moving', the tracked centroid's displacement from the first to the last
  present frame, projected on the prompted direction, is positive, at least 5% of the
  resolution, and larger than the perpendicular component. For 'bouncing' (which reflects off
  the walls; the caption's direction is the one at frame 0 of the source video, so judge clips
  that start there) the same holds from the first present frame to the first one 5% of the
  resolution away from it, and the object turns back only within WALL_FRACTION of a wall
  (`bounces`).
- 'shape': the majority vote of `shapes.shape_of` over the present frames is the prompted
  shape (ties go to the earlier of SHAPES).
- 'all': all three hold.

Pixels within `min_contrast` of the background are background; the others take the colour of
`COLORS` whose background-to-colour segment passes nearest in RGB, if they are at least half
way along it (see `color_mask`). The tracker keeps, per frame, the connected components of a
colour that are at least a quarter as large as its largest one, which ignores stray pixels of
blurry or noisy samples. Shapes are told apart by matching the object's soft colour level
(`color_level`) against the dataset's shapes rendered at several blurs (`metrics/shapes.py`).
"""

import re

import numpy as np
from scipy import ndimage

from vidiff.data.synthetic import BACKGROUND, COLORS, DIRECTIONS, MOTION_WORDS, SHAPES
# MIN_LEVEL: the fraction of the way from the background to a colour, to count as that colour
from vidiff.metrics.shapes import MIN_LEVEL, shape_of

_OBJECT = re.compile(rf'a ({"|".join(COLORS)}) ({"|".join(SHAPES)}) '
                     rf'({"|".join(MOTION_WORDS.values())}) ({"|".join(DIRECTIONS)})')
GRAMMAR = (f"'a COLOR SHAPE MOTION DIRECTION' optionally followed by "
           f"' and a COLOR SHAPE MOTION DIRECTION', with COLOR in {tuple(COLORS)}, SHAPE in "
           f"{SHAPES}, MOTION in {tuple(MOTION_WORDS.values())}, DIRECTION in {tuple(DIRECTIONS)}")
MIN_CONTRAST = 60.0  # RGB distance from the background below which a pixel is background
MIN_AREA_FRACTION = 0.004  # of H*W, for a colour to count as present in a frame
MIN_DISPLACEMENT_FRACTION = 0.05  # of the resolution, for 'direction'
KEEP_COMPONENT_FRACTION = 0.25  # of the largest component, for `track`
WALL_FRACTION = 0.1  # of the resolution: a bounce turns back this near a wall or nearer


def parse_caption(caption: str) -> list[dict]:
  """Returns [{'color', 'shape', 'motion', 'direction'}, ...], one dict per object phrase."""
  phrases = caption.strip().lower().rstrip('.').split(' and ')
  matches = [_OBJECT.fullmatch(' '.join(p.split())) for p in phrases]
  if len(phrases) > 2 or not all(matches):
    raise ValueError(f'caption {caption!r} does not parse; expected {GRAMMAR}.')
  return [dict(zip(('color', 'shape', 'motion', 'direction'), m.groups())) for m in matches]


def color_level(video: np.ndarray, color: str, min_contrast: float = MIN_CONTRAST) -> np.ndarray:
  """Returns float [T,H,W] (or [H,W] for one frame) in [0, 1]: how far each pixel classified as
  `color` is along the segment from the background to it (0 for every other pixel).

  A pixel within `min_contrast` (RGB distance) of the background is background; any other pixel
  takes the palette colour c (of COLORS) whose segment from the background to c passes nearest
  to it in RGB. Segments rather than points keep the hue of dimmed colours, as on blurred edges
  (a dark yellow is yellow, not red).
  """
  if color not in COLORS:
    raise ValueError(f'color must be one of {tuple(COLORS)}, got {color!r}.')
  return palette_levels(video, min_contrast)[list(COLORS).index(color)]


def palette_levels(video: np.ndarray, min_contrast: float = MIN_CONTRAST) -> np.ndarray:
  """Returns float [K, ...] for uint8 `video` [..., 3]: `color_level` of each colour of COLORS
  (in their order); every pixel is non-zero in at most one of them."""
  background = np.array(BACKGROUND, np.float32)
  axes = np.array(list(COLORS.values()), np.float32) - background  # [K, 3]
  pixels = np.asarray(video, np.float32) - background  # [..., 3]
  lengths = np.sum(axes ** 2, axis=-1)  # [K]
  dots = pixels @ axes.T  # [..., K]
  norms = np.sum(pixels ** 2, axis=-1, keepdims=True)  # [..., 1]
  along = np.clip(dots / lengths, 0, 1)  # position on each segment
  residual = norms - 2 * along * dots + along ** 2 * lengths  # squared distance to each segment
  nearest = np.argmin(residual, axis=-1)  # [...]
  kept = norms[..., 0] >= min_contrast ** 2
  levels = [np.where((nearest == k) & kept, along[..., k], 0.) for k in range(len(COLORS))]
  return np.stack(levels).astype(np.float32)


def color_mask(video: np.ndarray, color: str, min_contrast: float = MIN_CONTRAST,
               min_level: float = MIN_LEVEL) -> np.ndarray:
  """Returns bool [T,H,W] (or [H,W] for one frame): pixels classified as `color` (`color_level`)
  at least `min_level` of the way to it. `min_level` = 0.5 puts the mask's edge at the
  half-intensity contour of a blurred object, which preserves its shape."""
  return level_mask(color_level(video, color, min_contrast), min_level)


def level_mask(level: np.ndarray, min_level: float = MIN_LEVEL) -> np.ndarray:
  """bool: the pixels of a `color_level` map classified as the colour and >= `min_level`."""
  return (level >= min_level) & (level > 0)


def track(video: np.ndarray, color: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns the centroids float [T,2] (x, y) of `color` (nan where absent) and its areas int [T].

  Per frame, only the connected components at least a quarter the size of the largest count.
  """
  return centroids_and_areas(main_blobs(color_mask(video, color)))


def centroids_and_areas(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Returns float [T,2] (x, y) centroids (nan for empty frames) and int [T] areas of bool
  [T,H,W] `masks`."""
  areas = masks.sum(axis=(1, 2))
  xs, ys = np.arange(masks.shape[2]), np.arange(masks.shape[1])
  with np.errstate(invalid='ignore', divide='ignore'):
    cx = masks.sum(axis=1) @ xs / areas
    cy = masks.sum(axis=2) @ ys / areas
  return np.stack([cx, cy], axis=-1), areas.astype(np.int64)


def main_blobs(masks: np.ndarray) -> np.ndarray:
  """Returns bool [T,H,W]: per frame, the 8-connected components of `masks` that are at least
  KEEP_COMPONENT_FRACTION as large as the frame's largest one."""
  structure = np.zeros((3, 3, 3), bool)
  structure[1] = True  # connect within a frame only
  labels, count = ndimage.label(masks, structure)
  if count == 0:
    return masks
  sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
  frame_of = np.array([s[0].start for s in ndimage.find_objects(labels)])
  largest = np.zeros(masks.shape[0], np.int64)
  np.maximum.at(largest, frame_of, sizes)
  keep = np.concatenate([[False], sizes >= KEEP_COMPONENT_FRACTION * largest[frame_of]])
  return keep[labels]


def score(video: np.ndarray, caption: str) -> dict[str, float]:
  """Returns {'color', 'direction', 'shape', 'all'} in {0.0, 1.0} for the first object of
  `caption` in uint8 [T,H,W,3] `video` (see the module docstring)."""
  target = parse_caption(caption)[0]
  level = color_level(video, target['color'])
  masks = main_blobs(level_mask(level))
  centroids, areas = centroids_and_areas(masks)
  t, h, w = masks.shape
  present = np.flatnonzero(areas >= max(1.0, MIN_AREA_FRACTION * h * w))
  color = float(len(present) > 0 and 2 * len(present) >= t)
  direction = shape = 0.0
  if len(present) > 0:
    min_distance = MIN_DISPLACEMENT_FRACTION * max(h, w)
    if target['motion'] == MOTION_WORDS['bounce']:
      direction = float(bounces(centroids[present], boxes(masks[present]), target['direction'],
                                min_distance, max(h, w)))
    else:
      direction = float(moves_along(centroids[present[-1]] - centroids[present[0]],
                                    target['direction'], min_distance))
    votes = [shape_of(level[i]) for i in present]
    shape = float(max(SHAPES, key=votes.count) == target['shape'])
  return {'color': color, 'direction': direction, 'shape': shape,
          'all': float(color and direction and shape)}


def moves_along(displacement: np.ndarray, direction: str, min_distance: float) -> bool:
  unit = np.array(DIRECTIONS[direction])
  along = float(displacement @ unit)
  across = abs(float(displacement @ np.array([-unit[1], unit[0]])))
  return along > 0 and along >= min_distance and along > across


def boxes(masks: np.ndarray) -> np.ndarray:
  """float [T, 4] (x0, y0, x1, y1): the first and last pixel column and row of bool [T, H, W]
  masks (nan for empty frames)."""
  out = np.full((masks.shape[0], 4), np.nan)
  for i, frame in enumerate(masks):
    rows, cols = np.flatnonzero(frame.any(axis=1)), np.flatnonzero(frame.any(axis=0))
    if len(rows):
      out[i] = cols[0], rows[0], cols[-1], rows[-1]
  return out


def bounces(centroids: np.ndarray, extents: np.ndarray, direction: str, min_distance: float,
            resolution: int) -> bool:
  """Whether a track (centroids float [N, 2], boxes [N, 4] of `boxes`, frames where the object
  is present) moves `direction` first, by min_distance, and turns back only within
  WALL_FRACTION of the resolution of a wall (a turn: a retreat by min_distance from the
  furthest point since the last turn)."""
  unit = np.array(DIRECTIONS[direction])
  axis = int(unit[1] != 0)  # 0: x, 1: y
  position = centroids[:, axis]
  moved = np.flatnonzero(np.abs(position - position[0]) >= min_distance)
  if not len(moved) or not moves_along(centroids[moved[0]] - centroids[0], direction,
                                       min_distance):
    return False
  wall = WALL_FRACTION * resolution
  heading, furthest = np.sign(unit[axis]), 0
  for i in range(1, len(position)):
    if heading * (position[i] - position[furthest]) > 0:
      furthest = i
    elif heading * (position[furthest] - position[i]) >= min_distance:  # it turned there
      near = (extents[furthest, axis + 2] >= resolution - 1 - wall if heading > 0
              else extents[furthest, axis] <= wall)
      if not near:
        return False
      heading, furthest = -heading, i
  return True


def score_batch(videos, captions) -> dict[str, float]:
  """Returns the mean of each `score` key over the videos [B,T,H,W,3] and their captions."""
  if len(videos) != len(captions):
    raise ValueError(f'got {len(videos)} videos but {len(captions)} captions.')
  if len(captions) == 0:
    raise ValueError('score_batch needs at least one video.')
  scores = [score(v, c) for v, c in zip(videos, captions)]
  return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
