"""Runs concurrent predict calls on the same model function as batched calls, on every core.

TF Serving's batching, in small: up to `threads` batches run side by side (each runs its ops
in its own thread on one core, see versions.load), each of at most max_batch_size rows.
A call that finds the model idle runs at once, so a lone request waits for nothing. While a
batch runs, new calls wait for a free thread and for company: they start when max_batch_size
rows are queued or the oldest has waited batch_timeout (TF Serving's batch_timeout_micros).
Without that wait, concurrent requests would start one by one on the free thread; for this
model a call costs ~1.4 ms plus ~0.4 ms a row, so one call of 4 rows does the work of three
single calls.

Its parameters are production's: deploy/batching-config.yaml, the ConfigMap that the
tensorflow/serving image reads as its --batching_parameters_file (parameters()). A request of
more rows than max_batch_size gets the batch scheduler's error, as it does there.
"""
import asyncio
from concurrent import futures
import dataclasses
import os
import re
from typing import Any, Callable, Dict, Hashable, List, Optional

import numpy as np
import yaml

# The ConfigMap that production mounts, and its key holding the BatchingParameters text.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(_REPO_ROOT, 'deploy', 'batching-config.yaml')
_CONFIG_KEY = 'batching_parameters.txt'
_PARAMETER = re.compile(r'(\w+)\s*\{\s*value:\s*(\d+)\s*\}')

Arrays = Dict[str, np.ndarray]


def parameters(path: str = CONFIG) -> Dict[str, int]:
  """The BatchingParameters of a ConfigMap like deploy/batching-config.yaml, by name
  (max_batch_size, batch_timeout_micros, num_batch_threads, max_enqueued_batches)."""
  with open(path) as f:
    text = yaml.safe_load(f)['data'][_CONFIG_KEY]
  return {name: int(value) for name, value in _PARAMETER.findall(text)}


@dataclasses.dataclass
class _Call:
  function: Callable[..., Any]
  inputs: Arrays
  key: Hashable  # calls with equal keys can be concatenated
  rows: int
  future: asyncio.Future
  queued_at: float  # loop time


class Batcher:

  def __init__(self, max_batch_size: int = 64, threads: int = 2, batch_timeout: float = 0.0005):
    self._max_rows = max_batch_size
    self._threads = threads
    self._timeout = batch_timeout
    self._executor = futures.ThreadPoolExecutor(threads, thread_name_prefix='model')
    self._queue: List[_Call] = []
    self._queued_rows = 0
    self._running = 0
    self._timer: Optional[asyncio.TimerHandle] = None

  def check_size(self, rows: int) -> None:
    """TF Serving's refusal of a request larger than one batch (shared_batch_scheduler.h)."""
    if rows > self._max_rows:
      raise ValueError(f'Task size {rows} is larger than maximum input batch size '
                       f'{self._max_rows}')

  async def run(self, function: Callable[..., Arrays], inputs: Arrays) -> Arrays:
    """function(**inputs), possibly run together with other calls."""
    rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
    batchable = len(rows) == 1 and min(rows) > 0
    key = ((id(function),) + tuple((n, a.dtype, a.shape[1:]) for n, a in sorted(inputs.items()))
           if batchable else object())
    loop = asyncio.get_running_loop()
    call = _Call(function, inputs, key, rows.pop() if batchable else 0, loop.create_future(),
                 loop.time())
    self._queue.append(call)
    self._queued_rows += call.rows
    self._dispatch()
    try:
      return await call.future
    finally:  # a failed call's exception holds this frame: it must not hold the future too,
      del call  # or the cycle keeps the inputs until the next full garbage collection

  def _dispatch(self):
    loop = asyncio.get_running_loop()
    while self._queue and self._running < self._threads:
      if self._running and self._queued_rows < self._max_rows:
        wait = self._queue[0].queued_at + self._timeout - loop.time()
        if wait > 0:  # a batch is running: wait a little for more rows
          if self._timer is None:
            self._timer = loop.call_later(wait, self._on_timer)
          return
      self._start_batch()

  def _on_timer(self):
    self._timer = None
    self._dispatch()

  def _start_batch(self):
    first = self._queue[0]
    batch, rest, rows = [], [], 0
    for call in self._queue:
      if not batch or (call.key == first.key and rows + call.rows <= self._max_rows):
        batch.append(call)
        rows += call.rows
      else:
        rest.append(call)
    self._queue = rest
    self._queued_rows -= rows
    self._running += 1
    done = asyncio.get_running_loop().run_in_executor(self._executor, _execute, batch)
    done.add_done_callback(lambda outcome: self._finish(batch, outcome))

  def _finish(self, batch: List[_Call], outcome: asyncio.Future):
    self._running -= 1
    try:
      results = outcome.result()
    except BaseException as e:  # pylint: disable=broad-except  (the executor shut down)
      results = [e] * len(batch)
    for call, result in zip(batch, results):
      if call.future.cancelled():
        continue
      if isinstance(result, BaseException):
        call.future.set_exception(result)
      else:
        call.future.set_result(result)
    self._dispatch()

  def close(self):
    if self._timer is not None:
      self._timer.cancel()
    self._executor.shutdown(wait=False, cancel_futures=True)


def _execute(batch: List[_Call]) -> List[Any]:
  """Each call's outputs or exception; a failed batch is retried call by call, so one bad
  request (say an undecodable image) fails alone."""
  if len(batch) > 1:
    try:
      inputs = {name: np.concatenate([c.inputs[name] for c in batch])
                for name in batch[0].inputs}
      outputs = batch[0].function(**inputs)
      total = sum(c.rows for c in batch)
      if all(a.ndim and a.shape[0] == total for a in outputs.values()):
        bounds = np.cumsum([0] + [c.rows for c in batch])
        return [{n: a[lo:hi] for n, a in outputs.items()} for lo, hi in zip(bounds, bounds[1:])]
    except Exception:  # pylint: disable=broad-except  (retried one by one below)
      pass
  results = []
  for one in batch:
    try:
      results.append(one.function(**one.inputs))
    except Exception as e:  # pylint: disable=broad-except
      # Without its traceback: that holds this frame, whose `results` holds the exception,
      # a cycle that would keep the inputs in memory until the next full garbage collection.
      results.append(e.with_traceback(None))
  return results

