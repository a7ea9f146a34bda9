"""Versions to serve in seconds: tiny SavedModels with the raw serving signature of
models/features.py (fake_models.save_raw) whose answer tells which version gave it, and the
request the client sends for a raw row."""
import time

import requests

from models import features
from models import serving_layout
from serving import client
from tests import fake_models


def answer(version: int, row) -> float:
  """What version `version` predicts for a row: its own constant plus a share of the price,
  so the version that answered and the input that reached it both show."""
  return version / 1000 + row['bid_price'] / 1000


def save_version(model_root: str, version: int) -> str:
  return fake_models.save_raw(
      serving_layout.version_dir(model_root, version),
      lambda inputs: version / 1000 + inputs['bid_price'] / 1000)


def instance(row) -> dict:
  """A raw row (conftest.raw_rows) as the client sends it."""
  checked, problems = client.validate({k: v for k, v in row.items() if k != features.LABEL_KEY})
  assert not problems, problems
  return checked


def answered_version(prediction: float, row) -> int:
  return round((prediction - row['bid_price'] / 1000) * 1000)


def wait_for(condition, seconds=60):
  """Polls `condition` every 0.1 s until it holds; fails the test after `seconds`."""
  deadline = time.time() + seconds
  while not condition():
    assert time.time() < deadline, 'timed out'
    time.sleep(0.1)


def version_states(url: str, model: str = serving_layout.MODEL_NAME) -> dict:
  """{version: state} from a server's TF Serving status endpoint."""
  status = requests.get(f'{url}/v1/models/{model}', timeout=10).json()
  return {int(s['version']): s['state'] for s in status.get('model_version_status', [])}


def available_versions(url: str, model: str = serving_layout.MODEL_NAME) -> set:
  """The versions a server answers with (state AVAILABLE)."""
  return {version for version, state in version_states(url, model).items()
          if state == 'AVAILABLE'}
