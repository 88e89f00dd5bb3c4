"""What the colabs/ notebooks share: the smoke switch and inline videos, images and figures.

Import it before jax: `smoke()` sets the XLA flags of a smoke run.
"""

import base64
import html
import io
import os
import tempfile

import numpy as np

from vidiff import video_io


def smoke() -> bool:
  """True when VIDIFF_SMOKE is set (CI): then run on CPU with XLA's fastest compile."""
  if os.environ.get('VIDIFF_SMOKE', '0') in ('', '0', 'false', 'False'):
    return False
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')
  if 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
    os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                               ' --xla_backend_optimization_level=0').strip()
  return True


def video_html(video: np.ndarray, caption: str, fps: int = 8) -> str:
  """uint8 [T, H, W, 3] -> an HTML <figure> playing it (mp4 embedded as base64), captioned."""
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'video.mp4')
    video_io.write_video(path, video_io.upscale(video, 128), fps)
    with open(path, 'rb') as f:
      data = base64.b64encode(f.read()).decode()
  return (f'<figure style="display:inline-block;margin:4px;width:160px">'
          f'<video src="data:video/mp4;base64,{data}" width="160" autoplay loop muted '
          f'playsinline controls></video><figcaption style="font-size:small">'
          f'{html.escape(caption)}</figcaption></figure>')


def show_videos(videos, captions, fps: int = 8) -> None:
  """Plays uint8 videos [N, T, H, W, 3] inline, side by side, each with its caption."""
  from IPython.display import HTML, display  # pylint: disable=g-import-not-at-top
  display(HTML(''.join(video_html(v, c, fps) for v, c in zip(videos, captions))))


def show_image(image: np.ndarray) -> None:
  """Displays a uint8 image [H, W, 3] inline as a PNG."""
  from IPython.display import Image, display  # pylint: disable=g-import-not-at-top
  from PIL import Image as PILImage  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  PILImage.fromarray(np.asarray(image, np.uint8)).save(buf, format='png')
  display(Image(data=buf.getvalue(), format='png'))


def show_figure(fig) -> None:
  """Displays a matplotlib figure inline as a PNG (any backend) and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from IPython.display import Image, display  # pylint: disable=g-import-not-at-top
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=100, bbox_inches='tight')
  plt.close(fig)
  display(Image(data=buf.getvalue(), format='png'))
