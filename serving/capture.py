"""Request capture: a sample of predictions with their inputs, for the monitoring checks.

    capture = Capture('gs://B/capture', span=5, sample_rate=0.1)
    capture.record(instances, probabilities, model_version)   # never blocks, never raises
    capture.close()                                           # writes what it accepted

TF Serving cannot log requests (platform notes), so the client and the local model server
capture on our side of the wire. Rows go to `<root>/span-<N>/capture-*.csv` (the span folder
of models/data_layout.py; a local path or gs://, written through Beam FileSystems): the columns
of the training CSV without the label (the image is not kept: image_path stays empty) plus
CAPTURE_COLUMNS, one file per flush, so TFDV and the pipeline's CSV readers read them as they
read a month of data. `counts-<writer>.json` beside them holds this writer's counts.

record() only samples and puts rows on a bounded queue; a background thread formats and writes
them. When the queue is full the rows are dropped and counted, so a slow disk or store never
slows a prediction down; close() writes everything accepted before it returns.
"""
import csv
import io
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from models import data_layout
from models import features
from models import signatures

MODEL_VERSION_COLUMN = 'model_version'
PREDICTION_COLUMN = signatures.PREDICTION_KEY
TIME_COLUMN = 'capture_time'  # unix seconds when the prediction was answered
CAPTURE_COLUMNS = (MODEL_VERSION_COLUMN, PREDICTION_COLUMN, TIME_COLUMN)
FILE_PREFIX, FILE_SUFFIX = 'capture-', '.csv'
COUNTS_PREFIX = 'counts-'
_STOP = object()


def columns() -> List[str]:
  """A capture file's header: ads.csv's columns without the label, then CAPTURE_COLUMNS."""
  return [c for c in features.csv_columns() if c != features.LABEL_KEY] + list(CAPTURE_COLUMNS)


def span_dir(root: str, span: int) -> str:
  return data_layout.span_dir(root, span)


def file_pattern(root: str, span: int) -> str:
  """Every capture file of a span (for TFDV and FileSystems.match)."""
  return f'{span_dir(root, span)}/{FILE_PREFIX}*{FILE_SUFFIX}'


def counts_pattern(root: str, span: int) -> str:
  return f'{span_dir(root, span)}/{COUNTS_PREFIX}*.json'


def _rows(instances: Union[Sequence[Mapping[str, Any]], Mapping[str, Sequence[Any]]]
          ) -> List[Mapping[str, Any]]:
  """Row instances (the client's) as they are; columnar inputs (the server's) as rows."""
  if isinstance(instances, Mapping):
    names = list(instances)
    return [dict(zip(names, values)) for values in zip(*(instances[n] for n in names))]
  return list(instances)


def _cell(value: Any) -> str:
  if hasattr(value, 'tolist'):  # numpy scalars and [1]-shaped arrays from the server
    value = value.tolist()
  if isinstance(value, list):
    value = value[0] if value else ''
  if isinstance(value, bytes):
    value = value.decode('utf-8', 'replace')
  return '' if value is None else str(value)


def add_flags(parser) -> None:
  """The capture flags of the model server and the predict CLI (off unless --capture-root)."""
  parser.add_argument('--capture-root', help='capture a sample of predictions under '
                      '<this>/span-<N>/ (local or gs://); off when absent')
  parser.add_argument('--capture-span', type=int,
                      help='the month the traffic belongs to (required with --capture-root)')
  parser.add_argument('--capture-sample-rate', type=float, default=0.1,
                      help='share of predictions captured')
  parser.add_argument('--capture-buffer', type=int, default=10000,
                      help='rows waiting to be written at most; more are dropped and counted')


def from_flags(parser, args) -> Optional['Capture']:
  """The Capture the flags ask for, or None."""
  if not args.capture_root:
    return None
  if args.capture_span is None:
    parser.error('--capture-root needs --capture-span N')
  return Capture(args.capture_root, args.capture_span, args.capture_sample_rate,
                 args.capture_buffer)


class Capture:
  """Captures a sample of predictions under `<root>/span-<span>/` from a background thread.

  Args:
    root: Capture root, local path or gs://.
    span: The month the traffic belongs to (the span of the data it will be compared with).
    sample_rate: Share of predictions kept, 0 to 1.
    buffer_size: Rows waiting to be written at most; more are dropped, and counted.
    flush_rows, flush_seconds: A file is written when this many rows wait, or this long
      after the first of them arrived.
    seed: Seeds the sampling (tests).
  """

  def __init__(self, root: str, span: int, sample_rate: float = 1.0, buffer_size: int = 10000,
               flush_rows: int = 5000, flush_seconds: float = 60.0,
               seed: Optional[int] = None):
    if not 0 <= sample_rate <= 1:
      raise ValueError(f'sample_rate must be between 0 and 1, got {sample_rate}')
    self.directory = span_dir(root, span)
    self.sample_rate = sample_rate
    self.flush_rows = flush_rows
    self.flush_seconds = flush_seconds
    self.accepted = 0  # queued for writing
    self.dropped = 0  # sampled in but not written: queue full, bad input or a failed write
    self.written = 0
    self._writer_id = f'{time.strftime("%Y%m%dT%H%M%S", time.gmtime())}-{uuid.uuid4().hex[:8]}'
    self._files = 0
    self._lock = threading.Lock()
    self._random = random.Random(seed)
    self._queue: 'queue.Queue' = queue.Queue(maxsize=buffer_size)
    self._closed = False
    self._thread = threading.Thread(target=self._write_loop, name='capture-writer',
                                    daemon=True)
    self._thread.start()

  def record(self, instances, predictions: Iterable[Any], model_version: Any) -> None:
    """Queues the sampled rows of one answered request; never blocks, never raises.

    Args:
      instances: The request's rows (field -> value mappings, as the client sends them) or
        its columns (field -> values, as the server parses them).
      predictions: The click probability of each row.
      model_version: The version that answered.
    """
    try:
      now = time.time()
      for row, prediction in zip(_rows(instances), predictions):
        if self._closed or self._random.random() >= self.sample_rate:
          continue
        try:
          self._queue.put_nowait((row, prediction, model_version, now))
          self._count(accepted=1)
        except queue.Full:
          self._count(dropped=1)
    except Exception:  # pylint: disable=broad-except  (a prediction must never fail here)
      logging.exception('Request capture skipped a request it could not read.')
      self._count(dropped=1)

  def close(self) -> Dict[str, int]:
    """Writes every accepted row, stops the writer and returns the counts."""
    if not self._closed:
      self._closed = True
      self._queue.put(_STOP)  # blocks only while the writer drains a full queue
      self._thread.join()
    return self.counts()

  def counts(self) -> Dict[str, int]:
    with self._lock:
      return {'accepted': self.accepted, 'dropped': self.dropped, 'written': self.written}

  def _count(self, accepted: int = 0, dropped: int = 0, written: int = 0) -> None:
    with self._lock:
      self.accepted += accepted
      self.dropped += dropped
      self.written += written

  def _write_loop(self) -> None:
    pending, deadline, stop = [], None, False
    while not stop:
      timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
      try:
        item = self._queue.get(timeout=timeout)
      except queue.Empty:
        item = None
      if item is _STOP:
        stop = True
      elif item is not None:
        pending.append(item)
        deadline = deadline or time.monotonic() + self.flush_seconds
      if pending and (stop or len(pending) >= self.flush_rows or
                      time.monotonic() >= deadline):
        self._flush(pending)
        pending, deadline = [], None
    self._write_counts()

  def _flush(self, items) -> None:
    try:
      self._write_file(self._csv(items))
      self._count(written=len(items))
    except Exception:  # pylint: disable=broad-except  (a store outage loses rows, not requests)
      logging.exception('Request capture could not write %d rows to %s.', len(items),
                        self.directory)
      self._count(dropped=len(items))
    self._write_counts()

  def _csv(self, items) -> str:
    header = columns()
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    writer.writerow(header)
    image = features.image_feature()
    for row, prediction, version, answered in items:
      values = {name: _cell(value) for name, value in row.items()
                if image is None or name != image.name}
      values.update({MODEL_VERSION_COLUMN: _cell(version),
                     PREDICTION_COLUMN: f'{float(_cell(prediction)):.6g}',
                     TIME_COLUMN: f'{answered:.3f}'})
      writer.writerow([values.get(name, '') for name in header])
    return text.getvalue()

  def _write_file(self, text: str) -> None:
    self._files += 1
    path = f'{self.directory}/{FILE_PREFIX}{self._writer_id}-{self._files:06d}{FILE_SUFFIX}'
    self._write(path, text.encode())

  def _write_counts(self) -> None:
    try:
      self._write(f'{self.directory}/{COUNTS_PREFIX}{self._writer_id}.json',
                  json.dumps(self.counts(), sort_keys=True).encode())
    except Exception:  # pylint: disable=broad-except
      logging.exception('Request capture could not write its counts to %s.', self.directory)

  def _write(self, path: str, data: bytes) -> None:
    """Writes a whole file: readers never see part of one (an object store shows an object
    once it is uploaded; on a local disk a rename puts it in place)."""
    local = isinstance(FileSystems.get_filesystem(path), LocalFileSystem)
    target = path
    if local:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      path = path + '.tmp'
    with FileSystems.create(path) as f:
      f.write(data)
    if local:
      os.replace(path, target)
