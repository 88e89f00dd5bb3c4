"""Does a video follow its depth control stream? Two scores, each in [0, 1], higher is better:

  foreground_iou   IoU between the pixels where the video shows an object and where the depth
                   map has one (depth < 1). For sources with a known flat background (the
                   synthetic shapes: black), so "shows an object" is a colour test.
  edge_recall      the fraction of depth edges (discontinuities of the depth map: object
                   outlines) that have an image edge within `tolerance` pixels in the video
                   (a Sobel gradient of the grey frame above `image_threshold`). For any source
                   (the camera scenes' box outlines); texture edges where depth is smooth do
                   not count against it.

Both are computed per frame and pooled over all frames of all videos (intersections and unions,
hits and edges summed), so small objects weigh what their pixels weigh.
"""

import cv2
import numpy as np

DEPTH_EDGE = 0.05  # a jump of this much unit depth between neighbouring pixels is an outline
IMAGE_EDGE = 0.15  # Sobel magnitude (grey in [0, 1], 3x3 kernel / 8) of an image edge


def object_mask(videos: np.ndarray, background=(0, 0, 0), threshold: int = 80) -> np.ndarray:
  """uint8 [..., H, W, 3] -> bool [..., H, W]: pixels at least `threshold` (in one channel)
  away from the `background` colour."""
  distance = np.abs(videos.astype(np.int16) - np.asarray(background, np.int16)).max(-1)
  return distance >= threshold


def foreground_iou(videos: np.ndarray, depth: np.ndarray, background=(0, 0, 0)) -> float:
  """IoU of the videos' object pixels (uint8 [N, T, H, W, 3]) and the depth maps' foreground
  (float [N, T, H, W], 1 = background), pooled over all frames."""
  shown, wanted = object_mask(videos, background), np.asarray(depth) < 1.0
  union = np.logical_or(shown, wanted).sum()
  return float(np.logical_and(shown, wanted).sum() / union) if union else 1.0


def _gradient(frames: np.ndarray) -> np.ndarray:
  """float [N, H, W] -> Sobel gradient magnitude [N, H, W] (edge-replicated borders)."""
  out = np.empty(frames.shape, np.float32)
  for i, f in enumerate(np.asarray(frames, np.float32)):
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE) / 8
    out[i] = np.hypot(gx, gy)
  return out


def depth_edges(depth: np.ndarray) -> np.ndarray:
  """float [N, H, W] unit depth -> bool [N, H, W]: pixels on a depth discontinuity."""
  return _gradient(depth) >= DEPTH_EDGE


def image_edges(frames: np.ndarray, tolerance: int = 1) -> np.ndarray:
  """uint8 [N, H, W, 3] -> bool [N, H, W]: pixels within `tolerance` of an image edge."""
  grey = frames.astype(np.float32).mean(-1) / 255.
  edges = (_gradient(grey) >= IMAGE_EDGE).astype(np.uint8)
  kernel = np.ones((2 * tolerance + 1,) * 2, np.uint8)
  return np.stack([cv2.dilate(e, kernel) for e in edges]).astype(bool)


def edge_recall(videos: np.ndarray, depth: np.ndarray, tolerance: int = 1) -> float:
  """Fraction of depth-edge pixels (depth float [N, T, H, W]) with an image edge within
  `tolerance` pixels in the videos (uint8 [N, T, H, W, 3]); 1.0 when the depth has no edge."""
  h, w = depth.shape[-2:]
  wanted = depth_edges(np.asarray(depth).reshape(-1, h, w))
  found = image_edges(np.asarray(videos).reshape(-1, h, w, 3), tolerance)
  total = wanted.sum()
  return float((wanted & found).sum() / total) if total else 1.0


def scores(videos: np.ndarray, depth: np.ndarray, background=None) -> dict[str, float]:
  """{'edge_recall'[, 'foreground_iou' when the source's `background` colour is given]}."""
  out = {'edge_recall': edge_recall(videos, depth)}
  if background is not None:
    out['foreground_iou'] = foreground_iou(videos, depth, background)
  return out
