"""Batches put on the mesh ahead of the step, with a checkpointable position."""

import collections
import json

import numpy as np

from vidiff import sharding


class DevicePrefetch:
  """Iterator of global batches (dicts of `jax.Array` on the mesh).

  Wraps a Grain iterator of per-process numpy batches and keeps `size` batches already
  transferred while the step runs. Its checkpointed position (`get_state`, saved by
  `grain.checkpoint.CheckpointSave`) is that of the next batch it yields, not of those in flight,
  so a resumed run sees exactly the batches it would have seen. `skipped` sums the batches'
  'skipped' counts: unusable videos the pipeline replaced so far.
  """

  def __init__(self, iterator, shardings: dict, size: int = 2):
    self.iterator, self.shardings, self.size = iterator, shardings, size
    self.buffer = collections.deque()  # (iterator state before the batch, batch, skipped)
    self.skipped = 0

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    self._fill(1)
    _, batch, skipped = self.buffer.popleft()
    self._fill(self.size)
    self.skipped += skipped
    return batch

  def _fill(self, size: int) -> None:
    while len(self.buffer) < size:
      state = self.iterator.get_state()
      local = next(self.iterator)
      skipped = int(np.sum(local['skipped'])) if 'skipped' in local else 0
      self.buffer.append((state, sharding.global_batch(local, self.shardings), skipped))

  def get_state(self) -> bytes:
    """The position of the next batch `__next__` returns, as JSON bytes."""
    state = self.buffer[0][0] if self.buffer else self.iterator.get_state()
    return json.dumps(state).encode()

  def set_state(self, state: bytes) -> None:
    self.buffer.clear()
    self.iterator.set_state(json.loads(state))

  def start_prefetch(self) -> None:
    """Called by Grain's checkpoint handler after a restore."""
    if hasattr(self.iterator, 'start_prefetch'):
      self.iterator.start_prefetch()
