"""Writing videos (mp4, gif) and grids of frames (png) for people to look at."""

import os
import warnings

import imageio.v3 as iio
import numpy as np
from etils import epath
from PIL import Image

from vidiff.errors import UserError, check


def upscale(video: np.ndarray, min_size: int = 128) -> np.ndarray:
  """Nearest-neighbour upscaling of [..., H, W, C] by an integer factor so that H >= min_size."""
  factor = max(1, -(-min_size // video.shape[-3]))
  return np.repeat(np.repeat(video, factor, axis=-3), factor, axis=-2)


def write_video(path, video: np.ndarray, fps: int = 8) -> None:
  """Writes uint8 [T, H, W, 3] as .mp4 or .gif (by extension), atomically."""
  path = epath.Path(path)
  suffix = path.suffix.lower()
  check(suffix in ('.mp4', '.gif'), f'cannot write {path}: use a .mp4 or .gif file name.')
  check(video.dtype == np.uint8 and video.ndim == 4, f'expected uint8 [T,H,W,3], got {video.dtype} {video.shape}.')
  if suffix == '.mp4':
    _allow_ffmpeg_fork()
    data = iio.imwrite('<bytes>', video, extension='.mp4', fps=fps)
  else:
    data = iio.imwrite('<bytes>', video, extension='.gif', duration=1000 / fps, loop=0)
  write_bytes(path, data)


def _allow_ffmpeg_fork() -> None:
  """imageio-ffmpeg starts ffmpeg with fork+exec, which JAX warns about; exec follows at once."""
  warnings.filterwarnings('ignore', message='os.fork', category=RuntimeWarning)


def write_bytes(path, data: bytes) -> None:
  """Writes `data` to a temporary name and renames, so readers never see half a file."""
  path = epath.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f'.{path.name}.tmp{os.getpid()}'
  tmp.write_bytes(data)
  tmp.replace(path)  # atomic, and overwrites (rename refuses an existing file)


def grid(videos: np.ndarray) -> np.ndarray:
  """uint8 [N, T, H, W, C] -> one image [N*H, T*W, C]: a row of frames per video."""
  n, t, h, w, c = videos.shape
  return videos.transpose(0, 2, 1, 3, 4).reshape(n * h, t * w, c)


def write_image(path, image: np.ndarray) -> None:
  """Writes uint8 [H, W, 3] as png, atomically."""
  write_bytes(path, iio.imwrite('<bytes>', image, extension='.png'))


def to_uint8(video) -> np.ndarray:
  """float in [-1, 1] -> uint8 in [0, 255]."""
  return np.asarray(np.clip(np.round((np.asarray(video, np.float32) + 1.) * 127.5), 0, 255), np.uint8)


def read_image(path, size: int) -> np.ndarray:
  """An image file (png, jpg, ...) as float [size, size, 3] in [-1, 1]: centre-cropped to a
  square and resized. A missing or unreadable file is a UserError."""
  path = epath.Path(path)
  check(path.exists(), f'--init_image={path} does not exist.')
  try:
    image = iio.imread(path.read_bytes(), extension=path.suffix or None)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'--init_image={path} is not a readable image ({type(e).__name__}: '
                    f'{" ".join(str(e).split())[:200]}); pass a PNG or JPEG file.') from e
  image = np.asarray(image)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  check(image.ndim == 3 and image.shape[-1] in (3, 4) and min(image.shape[:2]) > 0,
        f'--init_image={path} has shape {image.shape}; pass an RGB image.')
  square = Image.fromarray(np.asarray(square_crop(image)[..., :3], np.uint8))
  resized = np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), np.float32)
  return resized / 127.5 - 1.


def square_crop(x: np.ndarray) -> np.ndarray:
  """The centred square of an image [H, W, C] or video [T, H, W, C] (side min(H, W))."""
  h, w = x.shape[-3:-1]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  return x[..., top:top + side, left:left + side, :]


VIDEO_SUFFIXES = ('.gif', '.mp4', '.avi', '.mov', '.webm', '.mkv')  # by preference: gif is lossless


def read_video(path) -> np.ndarray:
  """A video file (mp4, gif, avi, ...) as uint8 [T, H, W, 3]. A missing, unreadable or
  corrupt file is a UserError naming it."""
  path = epath.Path(path)
  check(path.exists(), f'{path} does not exist.')
  _allow_ffmpeg_fork()
  try:
    video = np.asarray(iio.imread(path.read_bytes(), extension=path.suffix or None, index=None))
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f'{path} is not a readable video ({type(e).__name__}: '
                    f'{" ".join(str(e).split())[:200]}); re-encode it as mp4 or remove it.') from e
  if video.ndim == 3:  # grey frames
    video = np.repeat(video[..., None], 3, axis=-1)
  check(video.ndim == 4 and video.shape[-1] in (3, 4) and video.shape[0] >= 1,
        f'{path} decodes to shape {video.shape}; expected RGB frames [T, H, W, 3].')
  return np.ascontiguousarray(video[..., :3]).astype(np.uint8)


def resize_video(video: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [T, H, W, 3] -> [T, height, width, 3] (bilinear per frame; unchanged if equal)."""
  if video.shape[1:3] == (height, width):
    return video
  return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BILINEAR))
                   for f in video])
