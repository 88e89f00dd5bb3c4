"""Preemption: SIGTERM asks the train loop to checkpoint at the next step boundary and stop.

Multi-process runs (after `jax.distributed.initialize`) use JAX's preemption sync service:
it catches SIGTERM on any host, and `reached_preemption_sync_point(step)` turns true on every
host at the same step, so all processes write the same checkpoint. A single process catches
SIGTERM itself. Call `reached(step)` once per step, from the first step on.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils


class Preempted(Exception):
  """Raised after the preemption checkpoint is written; exit code 143 (128 + SIGTERM)."""


class Watcher:
  """Context manager; `reached(step)` is True once a SIGTERM has arrived (on any host)."""

  def __init__(self):
    self._signalled = False
    self._previous = None

  def __enter__(self) -> 'Watcher':
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    self._signalled = True

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._signalled
