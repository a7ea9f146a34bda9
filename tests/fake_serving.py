"""Versions to serve in seconds: tiny SavedModels with the raw serving signature of
models/features.py (fake_models.save_raw) whose answer tells which version gave it, and the
request the client sends for a raw row."""
import time
from typing import Optional

import requests
import tensorflow as tf

from models import features
from models import serving_layout
from serving import client
from tests import fake_models


def _carried() -> Optional[str]:
  """The input whose share shows in the answer: the first NUMERIC field of features.py (the
  sample log's bid_price), or None for a log without one (then the answer is the version's)."""
  numeric = features.with_role(features.NUMERIC)
  return numeric[0].name if numeric else None


def answer(version: int, row) -> float:
  """What version `version` predicts for a row: its own constant plus a share of the price,
  so the version that answered and the input that reached it both show."""
  return version / 1000 + (row[_carried()] / 1000 if _carried() else 0.0)


def save_version(model_root: str, version: int) -> str:
  def probability(inputs):
    batch = tf.shape(next(iter(inputs.values())))
    share = (tf.cast(inputs[_carried()], tf.float32) / 1000 if _carried() else
             tf.zeros(batch, tf.float32))
    return version / 1000 + share
  return fake_models.save_raw(serving_layout.version_dir(model_root, version), probability)


def instance(row) -> dict:
  """A raw row (conftest.raw_rows) as the client sends it."""
  checked, problems = client.validate({k: v for k, v in row.items() if k != features.LABEL_KEY})
  assert not problems, problems
  return checked


def answered_version(prediction: float, row) -> int:
  return round((prediction - answer(0, row)) * 1000)


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
