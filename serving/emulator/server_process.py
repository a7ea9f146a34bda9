"""Runs a server as a child process until it says where it listens (tests, benchmark)."""
import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import threading
from typing import Iterator, List, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_LISTENING = re.compile(r'Listening on (http://\S+)')


@dataclasses.dataclass
class Server:
  url: str
  output: List[str]  # the lines it printed so far
  pid: int


@contextlib.contextmanager
def running(module: str, args: Sequence[str] = (), timeout: float = 180) -> Iterator[Server]:
  """`python -m module args...`, once it has printed 'Listening on <url>'."""
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  process = subprocess.Popen([sys.executable, '-m', module, *args], cwd=REPO_ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines: List[str] = []
  url = []
  ready = threading.Event()

  def drain():  # keeps the pipe from filling up and remembers the output for errors
    for line in process.stdout:
      lines.append(line)
      found = _LISTENING.search(line)
      if found and not url:
        url.append(found.group(1))
        ready.set()
    ready.set()

  threading.Thread(target=drain, daemon=True).start()
  try:
    if not ready.wait(timeout) or not url:
      raise RuntimeError(f'{module} did not start:\n' + ''.join(lines[-30:]))
    yield Server(url[0], lines, process.pid)
  finally:
    process.terminate()
    try:
      process.wait(timeout=20)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


def model_server(serving_root: str, model_name: str,
                 *flags: str) -> 'contextlib.AbstractContextManager[Server]':
  """The local model server on a free port of 127.0.0.1."""
  return running('serving.emulator.model_server',
                 ['--model-base-path', serving_root, '--model-name', model_name, '--port', '0',
                  *flags])
