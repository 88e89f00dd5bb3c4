"""Which shape (circle, square, triangle) one soft object is: nearest softened template.

Generated objects are soft (blurred edges, rounded corners), and a binary template fitted to
the object's thresholded mask calls most of them circles: on held-out clips blurred by
sigma = 1.25 px such a judge is at chance. So `shape_of` compares the object's intensity, not
its mask. The object's colour level (0 background, 1 full colour) is cropped to its blob's
bounding box plus PAD pixels, resized to CROP x CROP, centred and normalised; the templates are
the dataset's own shapes (`synthetic.shape_mask`) at box sides around the object's and at the
blurs of BLURS, put through the same steps. The shape whose best template correlates most wins.

It looks only at the video, never at the prompt, so a model that ignores the shape word scores
chance (1/3 on balanced prompts) with this judge as with any other.
"""

import functools

import numpy as np
from scipy import ndimage

from vidiff.data.synthetic import SHAPES, shape_mask

BLURS = (0., 0.5, 1., 1.5, 2.)  # Gaussian sigmas (pixels) of the templates
CROP = 16  # side of the resized crop
PAD = 2  # pixels of context around the blob's bounding box
MIN_LEVEL = 0.5  # the blob: pixels at least half way to the colour
_SUPERSAMPLE = 4  # blurred templates are rendered at 4x and averaged down, like a camera
_CONNECT = np.ones((3, 3), bool)


def largest_blob(mask: np.ndarray) -> np.ndarray | None:
  """bool [H,W]: the largest 8-connected component of bool [H,W] `mask` (None if empty)."""
  labels, count = ndimage.label(mask, _CONNECT)
  if count == 0:
    return None
  return labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])


def descriptor(level: np.ndarray, blob: np.ndarray) -> np.ndarray | None:
  """float [CROP*CROP], unit norm and zero mean: `blob` (bool [H,W], a blob of float [H,W]
  `level` >= MIN_LEVEL) with PAD pixels of its soft surround, cropped and resized. None for a
  flat crop."""
  near = ndimage.binary_dilation(blob, _CONNECT, iterations=PAD)
  soft = np.pad(np.where(near, level, 0.), PAD)  # objects at the frame's edge keep their PAD
  padded = np.pad(blob, PAD)
  rows, cols = np.flatnonzero(padded.any(axis=1)), np.flatnonzero(padded.any(axis=0))
  crop = soft[rows[0] - PAD:rows[-1] + PAD + 1, cols[0] - PAD:cols[-1] + PAD + 1]
  resized = ndimage.zoom(crop, (CROP / crop.shape[0], CROP / crop.shape[1]), order=1,
                         grid_mode=True, mode='grid-constant').ravel()
  resized = resized - resized.mean()
  norm = np.linalg.norm(resized)
  return resized / norm if norm > 0 else None


def rendered(shape: str, side: int, sigma: float) -> np.ndarray:
  """float [side + 12, side + 12] in [0, 1]: `shape` in a side x side box, centred, blurred by
  `sigma` pixels (0: the dataset's own binary rendering)."""
  margin = 6
  if sigma == 0:
    return np.pad(shape_mask(shape, side).astype(np.float32), margin)
  s = _SUPERSAMPLE
  fine = np.pad(shape_mask(shape, s * side).astype(np.float32), s * margin)
  fine = ndimage.gaussian_filter(fine, s * sigma, mode='constant')
  n = side + 2 * margin
  return fine.reshape(n, s, n, s).mean(axis=(1, 3))


@functools.lru_cache(maxsize=256)
def templates(side: int) -> tuple[np.ndarray, ...]:
  """Per shape of SHAPES, float [n, CROP*CROP]: descriptors of that shape rendered with box
  sides side - 1 .. side + 2 (blur shrinks the blob) at each sigma of BLURS."""
  out = []
  for shape in SHAPES:
    images = (rendered(shape, s, sigma) for s in range(max(side - 1, 3), side + 3)
              for sigma in BLURS)
    blobs = ((image, largest_blob(image >= MIN_LEVEL)) for image in images)
    found = (descriptor(image, blob) for image, blob in blobs if blob is not None)
    out.append(np.stack([d for d in found if d is not None]))
  return tuple(out)


def shape_of(level: np.ndarray) -> str:
  """The shape of SHAPES whose templates best match the largest blob of float [H,W] `level`
  (an object's colour level in [0, 1]; a bool mask works too). Raises on an empty frame."""
  return SHAPES[int(np.argmax(shape_scores(level)))]


def shape_scores(level: np.ndarray) -> np.ndarray:
  """float [len(SHAPES)]: the best template correlation of each shape with the largest blob of
  float [H,W] `level` (all equal for a uniform crop, which has no shape to tell). Raises on an
  empty frame."""
  level = np.asarray(level, np.float32)
  blob = largest_blob(level >= MIN_LEVEL)
  if blob is None:
    raise ValueError(f'shape_of needs a frame with at least one pixel at level >= {MIN_LEVEL}.')
  found = descriptor(level, blob)
  if found is None:  # a blob filling the whole frame
    return np.zeros(len(SHAPES))
  side = int(max(blob.any(axis=1).sum(), blob.any(axis=0).sum()))
  return np.array([float(np.max(t @ found)) for t in templates(side)])
