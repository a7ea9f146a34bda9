"""Request capture: a sample of predictions with their inputs, for the monitoring checks.

    capture = Capture('gs://B/capture', span=5, sample_rate=0.1)
    capture.record(instances, probabilities, model_version)   # never blocks, never raises
    capture.close()                                           # writes what it accepted

TF Serving cannot log requests (platform notes), so the client and the local model server
capture on our side of the wire. Rows go to `<root>/span-<N>/capture-*.csv` (the span folder
of models/data_layout.py; a local path or gs://, written through Beam FileSystems): the columns
of the training CSV without the label (the image is not kept: image_path stays empty) plus
CAPTURE_COLUMNS, one whole file per flush, so TFDV and the pipeline's CSV readers read them as
they read a month of data. `counts-<writer>.json` beside them holds this writer's counts.
A capture file is our own file, not the log: it keeps one fixed format, CSV_FORMAT
(comma-separated, with a header row), whatever features.CSV_FORMAT declares for the log (a
tab-separated or header-less log included), so a reader of captured rows passes CSV_FORMAT to
models/rows.py's readers, whose default is the log's format.

record() only samples and puts rows on a bounded queue; a background thread formats and writes
them. When the queue is full the rows are dropped and counted, so a slow disk or store never
slows a prediction down; close() writes everything accepted before it returns, and a capture
that is never closed is closed when the interpreter exits.

A process can also die without closing (kill -9, an out-of-memory kill). So the writer appends
every row it takes from the queue at once to a local write-ahead journal,
`journal-<writer>.part`, and fsyncs it at least every `sync_seconds` (1 s) or `sync_rows`
rows; every `flush_seconds` / `flush_rows` the journal becomes the next capture file. Its
counters (accepted, dropped, written, journaled) live in a memory-mapped `journal-<writer>.marks`
beside it: every update is in the kernel's page cache at once, which outlives the process. The
next Capture started on the same root publishes what a dead writer journaled and writes its
counts with `lost` = accepted - written - failed writes: exactly the rows that were still in
memory (at most `buffer_size` + `sync_rows`, normally the last few milliseconds of traffic);
the monitoring check adds up `lost` and says so in its record.
A machine that crashes (power, kernel) also loses what was not yet fsynced, up to `sync_seconds`
or `sync_rows` rows, and that tail is not counted: its count was not synced either. The journal
of a local root lives in its span folder (published by rename); for gs:// it lives in a local
folder (`journal_dir`), published by one upload per flush, so on gs:// a loss is counted only
when the next Capture starts where that folder survived (same machine, or the same pod's
emptyDir after a container restart): a lost machine loses up to `flush_seconds` uncounted.
"""
import atexit
import csv
import fcntl
import glob
import io
import json
import logging
import mmap
import os
import queue
import random
import re
import struct
import tempfile
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
CSV_FORMAT = features.CsvFormat()  # what csv.writer writes below: commas, a header row
FILE_PREFIX, FILE_SUFFIX = 'capture-', '.csv'
COUNTS_PREFIX = 'counts-'
JOURNAL_PREFIX, JOURNAL_SUFFIX, MARKS_SUFFIX = 'journal-', '.part', '.marks'
_STOP = object()
_SPAN_DIR = re.compile(r'span-(\d+)$')


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


def _is_local(path: str) -> bool:
  return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def journal_root(root: str, journal_dir: Optional[str] = None) -> str:
  """Where the journals of `root` live: the root itself when it is local, else a local folder
  named after it under `journal_dir` (default: <tmp>/adclick-capture)."""
  if _is_local(root):
    return root
  base = journal_dir or os.path.join(tempfile.gettempdir(), 'adclick-capture')
  return os.path.join(base, re.sub(r'[^A-Za-z0-9._-]+', '_', root.rstrip('/')))


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
  parser.add_argument('--capture-journal-dir',
                      help='local folder for the write-ahead journal of a gs:// capture root '
                      '(default: <tmp>/adclick-capture); keep it across restarts')


def from_flags(parser, args) -> Optional['Capture']:
  """The Capture the flags ask for, or None."""
  if not args.capture_root:
    return None
  if args.capture_span is None:
    parser.error('--capture-root needs --capture-span N')
  return Capture(args.capture_root, args.capture_span, args.capture_sample_rate,
                 args.capture_buffer, journal_dir=args.capture_journal_dir)


class _Marks:
  """A writer's counters in a memory-mapped file, locked (flock) while the writer lives.

  A store into the mapping is in the page cache at once: a killed process leaves it exact.
  sync() (msync) makes it outlive a machine crash too. Each field has one writer at a time
  (the record() callers under the capture's lock, or the writer thread), so fields are
  updated one by one.
  """
  NAMES = ('accepted', 'dropped', 'failed', 'written', 'files', 'journal_rows',
           'journal_bytes')
  _FIELD = struct.Struct('<q')

  def __init__(self, fd: int):
    self._fd = fd
    self._map = mmap.mmap(fd, self._FIELD.size * len(self.NAMES))

  @classmethod
  def create(cls, path: str) -> '_Marks':
    """New zero marks at `path`, locked before they appear there."""
    fd = os.open(path + '.new', os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    os.ftruncate(fd, cls._FIELD.size * len(cls.NAMES))
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(path + '.new', path)
    return cls(fd)

  @classmethod
  def take_over(cls, path: str) -> Optional['_Marks']:
    """The marks of a writer that died, or None while their writer lives (or once another
    start has recovered them)."""
    try:
      fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
      return None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      if os.stat(path).st_ino == os.fstat(fd).st_ino:
        return cls(fd)
    except (BlockingIOError, FileNotFoundError):
      pass
    os.close(fd)
    return None

  def get(self) -> Dict[str, int]:
    return {name: self[name] for name in self.NAMES}

  def __getitem__(self, name: str) -> int:
    return self._FIELD.unpack_from(self._map, self._FIELD.size * self.NAMES.index(name))[0]

  def set(self, **values: int) -> None:
    for name, value in values.items():
      self._FIELD.pack_into(self._map, self._FIELD.size * self.NAMES.index(name), value)

  def add(self, **deltas: int) -> None:
    self.set(**{name: self[name] + delta for name, delta in deltas.items() if delta})

  def sync(self) -> None:
    self._map.flush()

  def close(self) -> None:
    self._map.close()
    os.close(self._fd)  # releases the lock


class _Journal:
  """One writer's write-ahead file, published as its numbered capture files."""

  def __init__(self, root: str, span: int, directory: str, writer_id: str, marks: _Marks):
    self.target = span_dir(root, span)
    self.path = os.path.join(directory, f'{JOURNAL_PREFIX}{writer_id}{JOURNAL_SUFFIX}')
    self.writer_id = writer_id
    self.marks = marks
    self._fd: Optional[int] = None

  def append(self, data: bytes, rows: int) -> None:
    """Hands rows to the kernel (they outlive the process); counts them only once whole."""
    if self._fd is None:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
      header = _csv_text([columns()]).encode()
      try:
        _write_all(fd, header, 0)
        _fsync_dir(os.path.dirname(self.path))
      except OSError:
        os.close(fd)
        raise
      self._fd = fd
      self.marks.set(journal_bytes=len(header))
    _write_all(self._fd, data, self.marks['journal_bytes'])
    self.marks.add(journal_rows=rows, journal_bytes=len(data))

  def sync(self) -> None:
    if self._fd is not None:
      os.fsync(self._fd)
    self.marks.sync()

  def publish(self) -> int:
    """Makes the journal the next capture file; returns its rows."""
    self.sync()
    os.close(self._fd)
    self._fd = None
    rows = publish(self.path, self.target, self.writer_id, self.marks.get())
    self.marks.add(written=rows, files=1)
    self.marks.set(journal_rows=0, journal_bytes=0)
    self.marks.sync()
    return rows

  def discard(self) -> None:
    """Forgets the journal's rows (after a failed publish)."""
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None
    if os.path.exists(self.path):
      os.remove(self.path)
    self.marks.set(journal_rows=0, journal_bytes=0)


def _write_all(fd: int, data: bytes, offset: int) -> None:
  view = memoryview(data)
  while view:
    done = os.pwrite(fd, view, offset)
    view, offset = view[done:], offset + done


def _fsync_dir(directory: str) -> None:
  fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _csv_text(rows: Iterable[Sequence[str]]) -> str:
  text = io.StringIO()
  csv.writer(text, lineterminator='\n').writerows(rows)
  return text.getvalue()


def _capture_path(target: str, writer_id: str, number: int) -> str:
  return f'{target}/{FILE_PREFIX}{writer_id}-{number:06d}{FILE_SUFFIX}'


def publish(journal: str, target: str, writer_id: str, marks: Mapping[str, int]) -> int:
  """Puts a journal's first `journal_bytes` in place as capture file number `files` + 1 and
  removes the journal; returns its rows. Doing it again after a crash in the middle puts the
  same file in the same place."""
  path = _capture_path(target, writer_id, marks['files'] + 1)
  if not os.path.exists(journal):  # published, then the process died before its marks said so
    return marks['journal_rows'] if FileSystems.exists(path) else 0
  if not marks['journal_rows']:  # killed before its first row was whole: nothing to publish
    os.remove(journal)
    return 0
  if _is_local(path):
    if os.path.getsize(journal) > marks['journal_bytes']:  # a write that a kill cut short
      with open(journal, 'r+b') as f:
        f.truncate(marks['journal_bytes'])
        os.fsync(f.fileno())
    os.replace(journal, path)
    _fsync_dir(os.path.dirname(path))
  else:
    with open(journal, 'rb') as f:
      data = f.read(marks['journal_bytes'])
    with FileSystems.create(path) as f:  # an object is seen only once its upload is complete
      f.write(data)
    os.remove(journal)
  return marks['journal_rows']


def write_counts(target: str, writer_id: str, counts: Mapping[str, int]) -> None:
  _write_whole(f'{target}/{COUNTS_PREFIX}{writer_id}.json',
               json.dumps(dict(counts), sort_keys=True).encode())


def _write_whole(path: str, data: bytes) -> None:
  """Writes a whole file: readers never see part of one (an object store shows an object
  once it is uploaded; on a local disk a rename puts it in place)."""
  local = _is_local(path)
  target = path
  if local:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    path = path + '.tmp'
  with FileSystems.create(path) as f:
    f.write(data)
  if local:
    os.replace(path, target)


def recover(root: str, journal_dir: Optional[str] = None) -> List[Dict[str, int]]:
  """Publishes what writers of `root` that died without closing had journaled, and writes
  their counts with the rows they lost; returns those counts (with span and recovered rows).
  Writers still alive are left alone (their marks are locked)."""
  found = []
  pattern = f'{JOURNAL_PREFIX}*{MARKS_SUFFIX}'
  for marks_path in sorted(glob.glob(os.path.join(journal_root(root, journal_dir), 'span-*',
                                                  pattern))):
    span_match = _SPAN_DIR.search(os.path.dirname(marks_path))
    marks = _Marks.take_over(marks_path)
    if marks is None or span_match is None:
      continue
    try:
      span = int(span_match.group(1))
      writer_id = os.path.basename(marks_path)[len(JOURNAL_PREFIX):-len(MARKS_SUFFIX)]
      values = marks.get()
      recovered = publish(marks_path[:-len(MARKS_SUFFIX)] + JOURNAL_SUFFIX,
                          span_dir(root, span), writer_id, values)
      written = values['written'] + recovered
      counts = {'accepted': values['accepted'], 'dropped': values['dropped'],
                'written': written, 'lost': values['accepted'] - values['failed'] - written}
      write_counts(span_dir(root, span), writer_id, counts)
      os.remove(marks_path)
      logging.warning('Request capture: writer %s of span %d died without closing: %d rows '
                      'recovered, %d lost (counted in its counts file).', writer_id, span,
                      recovered, counts['lost'])
      found.append(dict(counts, span=span, recovered=recovered))
    except Exception:  # pylint: disable=broad-except  (the next start tries again)
      logging.exception('Request capture could not recover %s.', marks_path)
    finally:
      marks.close()
  return found


class Capture:
  """Captures a sample of predictions under `<root>/span-<span>/` from a background thread.

  Args:
    root: Capture root, local path or gs://.
    span: The month the traffic belongs to (the span of the data it will be compared with).
    sample_rate: Share of predictions kept, 0 to 1.
    buffer_size: Rows waiting to be written at most; more are dropped, and counted.
    flush_rows, flush_seconds: A capture file is published when this many rows wait, or this
      long after the first of them arrived.
    seed: Seeds the sampling (tests).
    sync_rows, sync_seconds: The journal is fsynced when this many rows were appended since
      the last fsync, or this long after the first of them.
    journal_dir: Local folder for the journal of a gs:// root (see journal_root).
  """

  def __init__(self, root: str, span: int, sample_rate: float = 1.0, buffer_size: int = 10000,
               flush_rows: int = 5000, flush_seconds: float = 60.0,
               seed: Optional[int] = None, sync_rows: int = 1000, sync_seconds: float = 1.0,
               journal_dir: Optional[str] = None):
    if not 0 <= sample_rate <= 1:
      raise ValueError(f'sample_rate must be between 0 and 1, got {sample_rate}')
    self.root, self.journal_dir = root, journal_dir
    self.directory = span_dir(root, span)
    self.sample_rate = sample_rate
    self.flush_rows = flush_rows
    self.flush_seconds = flush_seconds
    self.sync_rows = sync_rows
    self.sync_seconds = sync_seconds
    self.accepted = 0  # queued for writing
    self.dropped = 0  # sampled in but not written: queue full, bad input or a failed write
    self.written = 0
    self.recovered: List[Dict[str, int]] = []  # counts of dead writers this start recovered
    self._writer_id = f'{time.strftime("%Y%m%dT%H%M%S", time.gmtime())}-{uuid.uuid4().hex[:8]}'
    journals = span_dir(journal_root(root, journal_dir), span)
    os.makedirs(journals, exist_ok=True)
    self._marks_path = os.path.join(journals, f'{JOURNAL_PREFIX}{self._writer_id}{MARKS_SUFFIX}')
    self._marks: Optional[_Marks] = _Marks.create(self._marks_path)
    self._journal = _Journal(root, span, journals, self._writer_id, self._marks)
    self._lock = threading.Lock()
    self._random = random.Random(seed)
    self._queue: 'queue.Queue' = queue.Queue(maxsize=buffer_size)
    self._closed = False
    self._thread = threading.Thread(target=self._write_loop, name='capture-writer',
                                    daemon=True)
    self._thread.start()
    atexit.register(self.close)  # a caller that never closes still writes what it accepted

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
      atexit.unregister(self.close)
      self._queue.put(_STOP)  # blocks only while the writer drains a full queue
      self._thread.join()
    return self.counts()

  def counts(self) -> Dict[str, int]:
    with self._lock:
      return {'accepted': self.accepted, 'dropped': self.dropped, 'written': self.written}

  def _count(self, accepted: int = 0, dropped: int = 0, written: int = 0,
             failed: int = 0) -> None:
    """failed: accepted rows a write lost (they are also `dropped`)."""
    with self._lock:
      self.accepted += accepted
      self.dropped += dropped
      self.written += written
      if self._marks is not None:  # None once the writer has stopped cleanly
        self._marks.add(accepted=accepted, dropped=dropped, failed=failed)

  def _write_loop(self) -> None:
    self.recovered = recover(self.root, self.journal_dir)
    publish_at = sync_at = None  # monotonic deadlines, set by the first row after each
    unsynced = stop = False
    while not stop:
      deadlines = [d for d in (publish_at, sync_at) if d is not None]
      items, stop = self._take(min(deadlines) if deadlines else None)
      if items and self._append(items):
        publish_at = publish_at or time.monotonic() + self.flush_seconds
        sync_at = sync_at or time.monotonic() + self.sync_seconds
        unsynced += len(items)
      now = time.monotonic()
      rows = self._marks['journal_rows']
      if unsynced and (stop or unsynced >= self.sync_rows or now >= sync_at or
                       rows >= self.flush_rows or now >= publish_at):
        self._sync()
        unsynced, sync_at = 0, None
      if rows and (stop or rows >= self.flush_rows or now >= publish_at):
        self._publish()
        publish_at = None
    self._finish()

  def _take(self, deadline: Optional[float]):
    """(the rows waiting, up to what the journal takes before it is published or synced,
    waiting for the first one until `deadline`; whether close() asked to stop)."""
    room = min(self.sync_rows, self.flush_rows - self._marks['journal_rows'])
    items = []
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    try:
      item = self._queue.get(timeout=timeout)
      while item is not _STOP:
        items.append(item)
        if len(items) >= room:
          break
        item = self._queue.get_nowait()
    except queue.Empty:
      return items, False
    return items, item is _STOP

  def _append(self, items) -> bool:
    try:
      self._journal.append(self._csv(items).encode(), len(items))
      return True
    except Exception:  # pylint: disable=broad-except  (a full disk loses rows, not requests)
      logging.exception('Request capture could not journal %d rows in %s.', len(items),
                        os.path.dirname(self._journal.path))
      self._count(dropped=len(items), failed=len(items))
      return False

  def _sync(self) -> None:
    try:
      self._journal.sync()
    except OSError:
      logging.exception('Request capture could not fsync %s.', self._journal.path)

  def _publish(self) -> None:
    try:
      rows = self._journal.publish()
      self._count(written=rows)
    except Exception:  # pylint: disable=broad-except  (a store outage loses rows, not requests)
      rows = self._marks['journal_rows']
      logging.exception('Request capture could not write %d rows to %s.', rows, self.directory)
      self._journal.discard()
      self._count(dropped=rows, failed=rows)
    self._write_counts()

  def _finish(self) -> None:
    """A clean stop: the final counts, then no marks left to recover."""
    self._write_counts()
    with self._lock:
      marks, self._marks = self._marks, None
    os.remove(self._marks_path)
    marks.close()

  def _csv(self, items) -> str:
    header = columns()
    image = features.image_feature()
    rows = []
    for row, prediction, version, answered in items:
      values = {name: _cell(value) for name, value in row.items()
                if image is None or name != image.name}
      values.update({MODEL_VERSION_COLUMN: _cell(version),
                     PREDICTION_COLUMN: f'{float(_cell(prediction)):.6g}',
                     TIME_COLUMN: f'{answered:.3f}'})
      rows.append([values.get(name, '') for name in header])
    return _csv_text(rows)

  def _write_counts(self) -> None:
    try:
      write_counts(self.directory, self._writer_id, dict(self.counts(), lost=0))
    except Exception:  # pylint: disable=broad-except
      logging.exception('Request capture could not write its counts to %s.', self.directory)
