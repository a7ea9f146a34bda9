"""A real GCS JSON-API server (gcp-storage-emulator) on 127.0.0.1, for tests that use gs://.

`running(bucket)` starts the emulator on a free port, points google-cloud-storage (and so
Beam's gs:// filesystem) at it through STORAGE_EMULATOR_HOST, and stops it afterwards.

Without credentials, Beam's credential lookup retries for about 22 s once per process;
`running` makes google.auth.default return anonymous credentials instead, which is what the
emulator expects anyway. TensorFlow's own gs:// cannot reach an emulator (platform notes), so
tests keep pipeline outputs on local disk.
"""
import contextlib
import os
import socket
import subprocess
import sys
import time
from typing import Iterator

import google.auth
from google.auth import credentials as auth_credentials
from google.cloud import storage
import pytest

from tests.conftest import free_port

_START_TIMEOUT_S = 30


def _wait_until_listening(port: int, process: subprocess.Popen) -> None:
  deadline = time.time() + _START_TIMEOUT_S
  while time.time() < deadline:
    if process.poll() is not None:
      raise RuntimeError(f'gcp-storage-emulator exited with {process.returncode}: '
                         f'{process.stderr.read().decode()}')
    with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', port), 0.2):
      return
    time.sleep(0.1)
  raise RuntimeError(f'gcp-storage-emulator did not listen on port {port} in '
                     f'{_START_TIMEOUT_S} s.')


@contextlib.contextmanager
def running(bucket: str) -> Iterator[storage.Bucket]:
  """Runs the emulator with `bucket` created; yields that bucket for uploads."""
  port = free_port()
  emulator = os.path.join(os.path.dirname(sys.executable), 'gcp-storage-emulator')
  process = subprocess.Popen(
      [emulator, 'start', '--host', '127.0.0.1', '--port', str(port), '--in-memory',
       '--default-bucket', bucket, '--quiet'],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  try:
    _wait_until_listening(port, process)
    with pytest.MonkeyPatch.context() as patch:
      patch.setenv('STORAGE_EMULATOR_HOST', f'http://127.0.0.1:{port}')
      patch.setattr(google.auth, 'default', lambda *args, **kwargs: (
          auth_credentials.AnonymousCredentials(), 'emulator-project'))
      yield storage.Client.create_anonymous_client().bucket(bucket)
  finally:
    process.terminate()
    process.wait(timeout=10)
    process.stderr.close()


def upload_tree(bucket: storage.Bucket, local_dir: str, prefix: str) -> None:
  """Copies every file under local_dir to gs://<bucket>/<prefix>/..., same relative paths."""
  for root, _, files in os.walk(local_dir):
    for name in files:
      path = os.path.join(root, name)
      bucket.blob(f'{prefix}/{os.path.relpath(path, local_dir)}').upload_from_filename(path)
