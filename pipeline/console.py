"""One screen per run: the console gets a few lines, everything else goes to the run's log.

TFX, Beam and TensorFlow write to the process's stdout and stderr (file descriptors 1 and 2)
from Python (absl logging, warnings, Keras progress bars, printed protos) and from C++ (which
bypasses sys.stdout). `to_log` points both descriptors at the log file for the length of a
run and hands back a stream on the terminal for the lines meant for a person. They load
noisily too: `hold_output` keeps what they print while they are imported, for the log.

Uses the standard library only, so a runner can start it before TensorFlow loads.
"""
import atexit
import contextlib
import datetime
import io
import os
import sys
import tempfile
from typing import IO, Iterator, Optional, Tuple

LOG_DIR = 'logs'  # under the runner's output root

_held: Optional[tuple] = None  # (temporary file, saved stdout fd, saved stderr fd)


def log_path(output_root: str, started: datetime.datetime) -> str:
  return os.path.join(output_root, LOG_DIR, f'run-{started:%Y%m%d-%H%M%S}.log')


def _flush() -> None:
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (AttributeError, ValueError, OSError):
      pass  # a closed or replaced stream has nothing to flush


def _point(target_fd: int) -> tuple:
  """Points fds 1 and 2 at target_fd; returns duplicates of what they were."""
  _flush()
  saved = (os.dup(1), os.dup(2))
  os.dup2(target_fd, 1)
  os.dup2(target_fd, 2)
  return saved


def _restore(saved: tuple) -> None:
  _flush()
  for fd, original in zip((1, 2), saved):
    os.dup2(original, fd)
    os.close(original)


def hold_output() -> None:
  """Keeps what fds 1 and 2 get from now on until release_held(): call it before importing
  TensorFlow. If the process ends still holding (an import failed), it is shown after all."""
  global _held
  if _held is None:
    held = tempfile.TemporaryFile()
    _held = (held,) + _point(held.fileno())
    atexit.register(_show_if_held)


def release_held() -> bytes:
  """Stops holding; returns what was held (b'' if nothing was)."""
  global _held
  if _held is None:
    return b''
  held, saved = _held[0], _held[1:]
  _held = None
  _restore(saved)
  held.seek(0)
  text = held.read()
  held.close()
  return text


def write_stderr(data: bytes) -> None:
  """Writes bytes to fd 2, whatever sys.stderr is."""
  _flush()
  with os.fdopen(os.dup(2), 'wb') as stderr:
    stderr.write(data)


def stderr_to_log(path: str) -> None:
  """Points fd 2 at the log for the rest of the process: what TensorFlow's C++ prints while
  the interpreter shuts down (e.g. "Local rendezvous is aborting" after a failed Beam step)
  belongs in the run's log, not under its summary. For a process that ends with the run."""
  _flush()
  with open(path, 'ab') as log:
    os.dup2(log.fileno(), 2)


def _show_if_held() -> None:
  if _held is not None:
    write_stderr(release_held())


def _terminal() -> Tuple[IO[str], bool]:
  """(stream for the console lines, whether it is ours to close): sys.stdout itself unless it
  writes to fd 1 or 2, which the run points at the log (a test's captured stdout stays)."""
  try:
    fd = sys.stdout.fileno()
  except (AttributeError, ValueError, io.UnsupportedOperation):
    return sys.stdout, False
  if fd not in (1, 2):
    return sys.stdout, False
  return os.fdopen(os.dup(fd), 'w', buffering=1), True


@contextlib.contextmanager
def to_log(path: Optional[str], preamble: bytes = b'') -> Iterator[IO[str]]:
  """Sends fds 1 and 2 to the log at `path` (created, appended to) while the block runs, and
  yields a stream on the console. With path None nothing is redirected (--verbose): the
  yielded stream is sys.stdout and the preamble goes to stderr."""
  if path is None:
    write_stderr(preamble)
    yield sys.stdout
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  stream, ours = _terminal()
  with open(path, 'ab') as log:
    log.write(preamble)
    log.flush()
    saved = _point(log.fileno())
    try:
      yield stream
    finally:
      _restore(saved)
      if ours:
        stream.close()
      else:
        stream.flush()
