"""FVD, per-frame FID and temporal FID, all from the Kinetics-400 I3D weights.

- `fvd`: Fréchet Video Distance (Unterthiner et al., 2018, arXiv:1812.01717): the Fréchet
  distance between Gaussians fitted to I3D's 400-d logits of real and generated clips,
  resized to 224x224 in [-1, 1].
- `frame_fid`: the Fréchet distance between the 1024-d pooled features of all frames, from
  the 2D network hidden in I3D (kernels summed over time; see `vidiff.metrics.i3d`). It sees
  frames as a bag: shuffling the frames of a clip does not change it. These are not
  Inception-v3 features, so the numbers are not comparable with published image FIDs.
- `temporal_fid`: the same per-frame Fréchet distance computed on frame differences (see
  its docstring), so it measures the distribution of frame-to-frame changes.

Sample sizes: FVD/FID estimates are biased for small sets (they shrink as N grows), so
compare only numbers computed with the same number of samples. The literature reports FVD
with 2048 generated clips (at least several hundred; 16 frames each), FID with 10k-50k
frames. With fewer samples than feature dimensions the covariances are rank-deficient; the
distance is still well defined (`vidiff.metrics.frechet`) but only good for comparisons.

Inputs are uint8 [N, T, H, W, 3] (or float in [-1, 1], or lists of equal-shape clips); real
and generated sets may have different sizes and lengths, since each is resized to 224x224.
"""

from typing import Sequence, Union

import numpy as np

from vidiff.errors import check
from vidiff.metrics import frechet, i3d

Videos = Union[np.ndarray, Sequence[np.ndarray]]


def fvd(real_videos: Videos, generated_videos: Videos, params: dict = None,
        batch_size: int = 8, resolution: int = i3d.RESOLUTION) -> float:
  """Fréchet Video Distance between two sets of clips (lower is better, 0 = same stats).

  Args:
    real_videos: [N, T, H, W, 3] uint8 (or [-1, 1] float); clips shorter than 9 frames are
      stretched to 16 by repeating frames (see `i3d.features`).
    generated_videos: [M, T', H', W', 3], likewise.
    params: `i3d.load_params()`, loaded when None.
    batch_size: clips per jitted I3D call.
    resolution: frame size fed to I3D; 224 is standard, smaller is faster (quick checks).

  Returns:
    FVD as a float. Use hundreds of clips per set (2048 in the literature) for a number
    worth reporting; small sets only support comparisons at equal sizes.
  """
  params = i3d.load_params() if params is None else params
  embed = lambda v: i3d.features(v, params, batch_size=batch_size, resolution=resolution)
  return frechet.distance(embed(real_videos), embed(generated_videos))


def frame_features(videos: Videos, params: dict, batch_size: int = 64,
                   resolution: int = i3d.RESOLUTION) -> np.ndarray:
  """Per-frame pooled I3D-2D features of all frames: [N, T, H, W, 3] -> [N * T, 1024]."""
  feats = i3d.features(videos, params, batch_size=batch_size, per_frame=True,
                       resolution=resolution)
  return feats.reshape(-1, feats.shape[-1])


def frame_fid(real_videos: Videos, generated_videos: Videos, params: dict = None,
              batch_size: int = 64, resolution: int = i3d.RESOLUTION) -> float:
  """Fréchet distance between the per-frame features of all frames of the two sets.

  Args:
    real_videos: [N, T, H, W, 3] uint8 or [-1, 1] float (any T >= 1).
    generated_videos: [M, T', H', W', 3], likewise.
    params: `i3d.load_params()`, loaded when None.
    batch_size: frames per jitted call.
    resolution: frame size fed to the network; 224 is standard, smaller is faster.

  Returns:
    The distance as a float; blind to the order of frames.
  """
  params = i3d.load_params() if params is None else params
  embed = lambda v: frame_features(v, params, batch_size, resolution)
  return frechet.distance(embed(real_videos), embed(generated_videos))


def frame_differences(videos: Videos) -> np.ndarray:
  """[N, T, H, W, 3] uint8 or [-1, 1] float -> float32 [N, T - 1, H, W, 3] in [-1, 1].

  d_t = (x_{t+1} - x_t) / 2 with x in [-1, 1] (for uint8: (u_{t+1} - u_t) / 255), so 0 means
  no change and +-1 a full black/white swing.
  """
  videos = _stack_clips(videos)
  x = i3d.to_unit_range(videos)
  return (x[:, 1:] - x[:, :-1]) / 2


def _stack_clips(videos: Videos) -> np.ndarray:
  """Checked [N, T, H, W, 3] videos with T >= 2."""
  videos = i3d.stack_videos(videos)
  i3d.check_range(videos)
  check(videos.shape[1] >= 2, f'temporal FID needs clips of at least 2 frames, got '
        f'{videos.shape[1]}.')
  return videos


def difference_features(videos: Videos, params: dict, batch_size: int = 64,
                        resolution: int = i3d.RESOLUTION) -> np.ndarray:
  """Per-frame features of all difference images: [N, T, H, W, 3] -> [N * (T - 1), 1024].

  Differences are made a few clips at a time: as float32 for a whole evaluation set they
  would take 4x the memory of the uint8 videos.
  """
  videos = _stack_clips(videos)
  clips = max(1, batch_size // (videos.shape[1] - 1))
  return np.concatenate([
      frame_features(frame_differences(videos[i:i + clips]), params, batch_size, resolution)
      for i in range(0, len(videos), clips)])


def temporal_fid(real_videos: Videos, generated_videos: Videos, params: dict = None,
                 batch_size: int = 64, resolution: int = i3d.RESOLUTION) -> float:
  """Fréchet distance between the distributions of frame-to-frame changes.

  Definition (vidiff's): every clip becomes its T - 1 difference images
  d_t = (x_{t+1} - x_t) / 2 in [-1, 1] (`frame_differences`); each difference image is
  embedded like a frame for `frame_fid` (1024-d pooled features of the time-collapsed I3D,
  224x224), and the distance is the Fréchet distance between the real and generated sets of
  all difference embeddings. A clip and its frame-shuffled copy have the same `frame_fid`
  statistics but different changes, which this metric sees.

  This is not a published metric. It follows the idea of comparing the statistics of motion
  rather than of appearance, as in FVMD (Liu et al., 2024, arXiv:2407.16124: Fréchet
  distance of key-point velocity/acceleration histograms), motivated by the finding that FVD
  is biased toward per-frame quality (Ge et al., 2024, "On the Content Bias in Fréchet Video
  Distance", arXiv:2404.12391). Static backgrounds cancel in differences, so it scores
  motion and flicker and little of appearance: report it next to FVD.

  Args:
    real_videos: [N, T, H, W, 3] uint8 or [-1, 1] float, T >= 2.
    generated_videos: [M, T', H', W', 3], likewise.
    params: `i3d.load_params()`, loaded when None.
    batch_size: frames per jitted call.
    resolution: frame size fed to the network; 224 is standard, smaller is faster.

  Returns:
    The distance as a float.
  """
  params = i3d.load_params() if params is None else params
  embed = lambda v: difference_features(v, params, batch_size, resolution)
  return frechet.distance(embed(real_videos), embed(generated_videos))
