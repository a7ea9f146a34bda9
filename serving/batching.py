"""Runs concurrent predict calls on the same model function as one batched call.

A call that finds the model idle runs at once, so a lone request waits for nothing; calls
that arrive while a batch runs queue up and go together in the next one (up to
max_batch_size rows). For this model a call costs ~1.2 ms plus ~0.3 ms a row, so under load
batching multiplies throughput. The model runs in its own thread and TF releases the GIL while
it computes, so the event loop keeps reading and answering requests on the other core.
"""
import asyncio
from concurrent import futures
import dataclasses
from typing import Any, Callable, Dict, Hashable, List

import numpy as np

Arrays = Dict[str, np.ndarray]


@dataclasses.dataclass
class _Call:
  function: Callable[..., Any]
  inputs: Arrays
  key: Hashable  # calls with equal keys can be concatenated
  rows: int
  future: asyncio.Future


class Batcher:

  def __init__(self, max_batch_size: int = 64):
    self._max_rows = max_batch_size
    self._executor = futures.ThreadPoolExecutor(1, thread_name_prefix='model')
    self._queue: List[_Call] = []
    self._busy = False

  async def run(self, function: Callable[..., Arrays], inputs: Arrays) -> Arrays:
    """function(**inputs), possibly run together with other calls."""
    rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
    batchable = len(rows) == 1 and min(rows) > 0
    key = ((id(function),) + tuple((n, a.dtype, a.shape[1:]) for n, a in sorted(inputs.items()))
           if batchable else object())
    call = _Call(function, inputs, key, rows.pop() if batchable else 0,
                 asyncio.get_running_loop().create_future())
    self._queue.append(call)
    if not self._busy:
      self._start_batch()
    return await call.future

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
    self._busy = True
    done = asyncio.get_running_loop().run_in_executor(self._executor, _execute, batch)
    done.add_done_callback(lambda outcome: self._finish(batch, outcome))

  def _finish(self, batch: List[_Call], outcome: asyncio.Future):
    self._busy = False
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
    if self._queue:
      self._start_batch()

  def close(self):
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
      results.append(e)
  return results

