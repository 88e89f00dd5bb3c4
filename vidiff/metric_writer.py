"""Scalars and images for TensorBoard (tensorboardX event files) plus a JSONL log.

Only process 0 writes; the others get a writer that does nothing.
"""

import json

import jax
import numpy as np
from etils import epath
from tqdm import tqdm


def say(message: str) -> None:
  """A status line on the console (process 0 only) that does not break progress bars."""
  if jax.process_index() == 0:
    tqdm.write(message)


class MetricWriter:
  """Writes `DIR/events.out.tfevents.*` (TensorBoard) and `DIR/metrics.jsonl`.

  Object stores (gs://) cannot append: there the rows are kept and the file is rewritten.
  """

  def __init__(self, logdir, enabled: bool = True):
    self.enabled = enabled
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(str(logdir), flush_secs=10)
      self._jsonl = epath.Path(logdir) / 'metrics.jsonl'
      self._rows = None
      if '://' in str(logdir):  # a resumed run keeps the rows written before it
        self._rows = self._jsonl.read_text().splitlines() if self._jsonl.exists() else []

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if not self.enabled:
      return
    values = {k: float(v) for k, v in values.items()}
    for key, value in values.items():
      self._tb.add_scalar(key, value, step)
    row = json.dumps({'step': int(step), **values})
    if self._rows is None:
      with self._jsonl.open('a') as f:
        f.write(row + '\n')
    else:
      self._rows.append(row)
      self._jsonl.write_text('\n'.join(self._rows) + '\n')

  def image(self, step: int, name: str, image: np.ndarray) -> None:
    """image: uint8 [H, W, 3]."""
    if self.enabled:
      self._tb.add_image(name, image, step, dataformats='HWC')

  def flush(self) -> None:
    if self.enabled:
      self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._tb.close()


def read_jsonl(logdir) -> list[dict]:
  """All rows written to `logdir/metrics.jsonl`."""
  path = epath.Path(logdir) / 'metrics.jsonl'
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(logdir, keys=('train/loss', 'eval/loss'), name: str = 'loss.png'):
  """Draws the `keys` logged in `logdir/metrics.jsonl` against step into `logdir/name`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = read_jsonl(logdir)
  fig, ax = plt.subplots(figsize=(6, 3.5))
  for key in keys:
    points = [(r['step'], r[key]) for r in rows if key in r]
    if points:
      ax.plot(*zip(*points), marker='.' if len(points) < 30 else None, label=key)
  ax.set_xlabel('step')
  ax.set_yscale('log')
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  with (epath.Path(logdir) / name).open('wb') as f:
    fig.savefig(f, format='png', dpi=100)
  plt.close(fig)
