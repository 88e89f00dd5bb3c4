"""Does the prompted object stay one object through a long video? Persistence and whole-video
adherence, judged on the object's track.

A frame-difference seam ratio rewards the worst long-video failure: an object that fades out and
back in, or is drawn anew somewhere else, changes little from one frame to the next. These
scores look at the object instead. `judge` tracks the first object of a caption in the grammar
of `vidiff.data.synthetic` with the adherence tracker's colour levels (`adherence`) and flags:

- 'vanish': the object is absent (or faint) for some frames and present after them, including
  an object that only appears after the first frame;
- 'teleport': its centroid moves farther between two consecutive frames than its motion allows
  (`max_speed`, plus some slack);
- 'fade': it is gone at the end and did not leave the frame (an object that leaves touches an
  edge in its last frame, and what is left of it after is not dimmed); a video without it fades
  from the start;
- 'recolor': another palette colour's object, at least half the prompted one's size, holds most
  frames of a `segment` (a chunk's worth of frames);
- 'reshape': one segment's shape is clear and another's is clearly not it (`_reshaped`).

A frame shows the object when its main blobs (`adherence.main_blobs`) cover MIN_AREA_FRACTION of
the frame, their colour mass (the colour level summed over the blobs and a pixel around them)
is at least FAINT of the video's median, and its peak level at least DIM of the median peak: a
dimming object is fading.
'persists' is 1 when no flag is raised.

Whole-video adherence ('color', 'direction', 'shape', 'all'): 'color' is the prompted colour in
at least half of the frames; 'direction' needs 'color' and a full track that moves the prompted
way: for 'moving', from the first to the last frame that shows the object (as `adherence.score`)
and with no `segment` of it moving back; for 'bouncing', first the prompted way, and turning
back only at a wall (`adherence.bounces`). 'shape' needs 'color' and the majority shape of the
whole video. So a video that fades to black scores 0 on every key.
"""

import dataclasses

import numpy as np
from scipy import ndimage

from vidiff.data.synthetic import COLORS, DIRECTIONS, MOTION_WORDS, SHAPES
from vidiff.metrics import adherence
from vidiff.metrics.shapes import shape_of, shape_scores

FAINT = 0.5  # of the median colour mass: below it a frame's object is too faint to count
DIM = 0.75  # of the median peak colour level: below it a frame's object is dimming
EDGE_PX = 1  # a blob within this many pixels of the border touches the frame's edge
TELEPORT_SLACK = 0.06  # of the resolution: centroid jitter allowed on top of the motion's speed
# A segment's shape is clear when its template score beats the others' by this much: soft
# generated squares and circles score within 0.01 of each other, true ones 0.02 apart.
RESHAPE_MARGIN = 0.01
FLAGS = ('vanish', 'teleport', 'fade', 'recolor', 'reshape')


@dataclasses.dataclass(frozen=True)
class Track:
  """The prompted object through a video of T frames: `present` bool [T]; `centroids` float
  [T, 2] (x, y), nan where absent; `boxes` float [T, 4] (x0, y0, x1, y1) of its blobs' pixels,
  nan where absent; `other_area` int [T], the largest other palette colour's main-blob area;
  `area` int [T]; `peak` float [T], the highest level of the prompted colour in the frame;
  `bright` float, the median peak of present frames; `level` float [T, H, W], the prompted
  colour's levels."""
  present: np.ndarray
  centroids: np.ndarray
  boxes: np.ndarray
  area: np.ndarray
  peak: np.ndarray
  bright: float
  other_area: np.ndarray
  level: np.ndarray


def track_object(video: np.ndarray, caption: str) -> Track:
  """The `Track` of the first object of `caption` in uint8 `video` [T, H, W, 3]."""
  objects = adherence.parse_caption(caption)
  levels = adherence.palette_levels(video)  # [K, T, H, W]
  k = list(COLORS).index(objects[0]['color'])
  blobs = adherence.main_blobs(adherence.level_mask(levels[k]))
  centroids, area = adherence.centroids_and_areas(blobs)
  t, h, w = blobs.shape
  near = ndimage.binary_dilation(blobs, np.ones((1, 3, 3), bool))
  mass = (levels[k] * near).sum(axis=(1, 2))
  peak = levels[k].max(axis=(1, 2))
  visible = area >= max(1.0, adherence.MIN_AREA_FRACTION * h * w)
  median = lambda a: float(np.median(a[visible])) if visible.any() else 0.
  present = visible & (mass >= FAINT * median(mass)) & (peak >= DIM * median(peak))
  prompted = {list(COLORS).index(o['color']) for o in objects}
  others = [adherence.main_blobs(adherence.level_mask(levels[j])).sum(axis=(1, 2))
            for j in range(len(COLORS)) if j not in prompted]
  other_area = np.max(others, axis=0) if others else np.zeros(t, np.int64)
  return Track(present, np.where(present[:, None], centroids, np.nan),
               np.where(present[:, None], adherence.boxes(blobs), np.nan), area, peak, median(peak),
               other_area, levels[k])


def flags(track: Track, segment: int, max_speed: float | None = None) -> dict[str, bool]:
  """{flag: raised} for FLAGS (module docstring). max_speed: the fastest the object may move,
  in pixels per frame (default: twice its median move); a move beyond it plus TELEPORT_SLACK of
  the resolution is a teleport."""
  present = track.present
  resolution = max(track.level.shape[1:])
  shown = np.flatnonzero(present)
  vanish = bool(len(shown)) and (shown[0] > 0 or not present[shown[0]:shown[-1] + 1].all())
  steps = np.linalg.norm(np.diff(track.centroids, axis=0), axis=-1)
  steps = steps[present[:-1] & present[1:]]
  if max_speed is None:
    max_speed = 2 * (np.median(steps) if len(steps) else 0.)
  teleport = bool(len(steps)) and steps.max() > max_speed + TELEPORT_SLACK * resolution
  fade = not present[-1] and not (len(shown) and _leaves(track, shown[-1], resolution))
  return dict(vanish=bool(vanish), teleport=bool(teleport), fade=bool(fade),
              recolor=_recolored(track, segment), reshape=_reshaped(track, segment))


def _leaves(track: Track, last: int, resolution: int) -> bool:
  """Whether the object, last shown in frame `last`, left the frame: it touched an edge (within
  EDGE_PX) there, and what is left of it in the next frame is not dimmed (a fade is)."""
  box = track.boxes[last]
  at_edge = min(box[0], box[1]) <= EDGE_PX or max(box[2], box[3]) >= resolution - 1 - EDGE_PX
  rest = track.peak[last + 1]
  return bool(at_edge and (rest == 0 or rest >= DIM * track.bright))


def _segments(t: int, segment: int) -> list[slice]:
  return [slice(s, min(s + segment, t)) for s in range(0, t, segment)]


def _recolored(track: Track, segment: int) -> bool:
  """Whether another colour's object (at least half the prompted object's median area) is in
  most frames of some segment."""
  size = np.median(track.area[track.present]) if track.present.any() else 0.
  big = track.other_area >= max(1., size / 2)
  return any(2 * big[s].sum() > len(big[s]) for s in _segments(len(big), segment))


def _reshaped(track: Track, segment: int) -> bool:
  """Whether one segment's shape is clear and another segment's is clearly not it. Clear: its
  template score (`shapes.shape_scores`, averaged over the segment's frames) beats every other
  shape's by RESHAPE_MARGIN; clearly not: it scores RESHAPE_MARGIN below that segment's best."""
  scores = [np.mean([shape_scores(track.level[i]) for i in np.flatnonzero(track.present[s]) +
                     s.start], axis=0)
            for s in _segments(len(track.present), segment) if track.present[s].any()]
  for clear in scores:
    second, best = np.sort(clear)[-2:]
    shape = int(np.argmax(clear))
    if best - second >= RESHAPE_MARGIN and any(
        other.max() - other[shape] >= RESHAPE_MARGIN for other in scores):
      return True
  return False


def whole_video_adherence(track: Track, caption: str, segment: int) -> dict[str, float]:
  """{'color', 'direction', 'shape', 'all'} in {0., 1.} for the whole video (module docstring)."""
  target = adherence.parse_caption(caption)[0]
  present = track.present
  resolution = max(track.level.shape[1:])
  color = bool(present.any()) and 2 * present.sum() >= len(present)
  direction = shape = False
  if color:
    min_distance = adherence.MIN_DISPLACEMENT_FRACTION * resolution
    if target['motion'] == MOTION_WORDS['bounce']:
      shown = np.flatnonzero(present)
      direction = adherence.bounces(track.centroids[shown], track.boxes[shown],
                                    target['direction'], min_distance, resolution)
    else:
      direction = _keeps_moving(track, target['direction'], min_distance, segment)
    votes = [shape_of(track.level[i]) for i in np.flatnonzero(present)]
    shape = max(SHAPES, key=votes.count) == target['shape']
  return {'color': float(color), 'direction': float(direction), 'shape': float(shape),
          'all': float(color and direction and shape)}


def _keeps_moving(track: Track, direction: str, min_distance: float, segment: int) -> bool:
  """First to last present frame along `direction`, and no segment moving back."""
  shown = np.flatnonzero(track.present)
  if not adherence.moves_along(track.centroids[shown[-1]] - track.centroids[shown[0]], direction,
                               min_distance):
    return False
  unit = np.array(DIRECTIONS[direction])
  for s in _segments(len(track.present), segment):
    inside = np.flatnonzero(track.present[s]) + s.start
    if len(inside) >= 2 and (track.centroids[inside[-1]] - track.centroids[inside[0]]) @ unit \
        <= -min_distance:
      return False
  return True


def judge(video: np.ndarray, caption: str, segment: int = 8,
          max_speed: float | None = None) -> dict[str, float]:
  """Persistence and whole-video adherence of uint8 `video` [T, H, W, 3] for the first object of
  `caption`: {'persists', each of FLAGS, 'color', 'direction', 'shape', 'all'}, each 0. or 1.
  segment: frames per chunk (the model's training clip length); max_speed: see `flags`."""
  track = track_object(video, caption)
  raised = flags(track, segment, max_speed)
  return {'persists': float(not any(raised.values())),
          **{k: float(v) for k, v in raised.items()},
          **whole_video_adherence(track, caption, segment)}


def judge_batch(videos, captions, segment: int = 8,
                max_speed: float | None = None) -> dict[str, float]:
  """The mean of each `judge` key over videos [N, T, H, W, 3] and their captions."""
  if len(videos) != len(captions) or not len(captions):
    raise ValueError(f'judge_batch needs as many videos as captions (> 0), got {len(videos)} '
                     f'videos and {len(captions)} captions.')
  scores = [judge(v, c, segment, max_speed) for v, c in zip(videos, captions)]
  return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
