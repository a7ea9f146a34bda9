"""Where pushed models live.

The contract between the pusher and the baseline (components/) and the model server and its
client (serving/), which import this module and not each other. Plain Python, no TensorFlow:
the client imports it too. When a version is whole, and how one is published, is
models/storage.py's. The layout is TF Serving's:

    <serving_root>/<model_name>/<version>/    version: a directory named by an int64

Other names there are not versions and are ignored, such as the staging copy of a push under
way (`.push-<version>-<token>`, models/storage.py). A rollback (serving/rollback.py)
moves versions out of the model root, which TF Serving polls, into a sibling that it does not:

    <serving_root>/<model_name>.rolled-back/<version>/                   never deleted
    <serving_root>/<model_name>.rolled-back/<version>.rollback.json     the audit record

The tensorflow/serving image answers REST on 8501 and gRPC on 8500 (deploy/).
"""
import re
from typing import Optional

MODEL_NAME = 'adclick'  # TF Serving's --model_name; the pipeline config's default
STABLE, CANARY = 'stable', 'canary'  # version labels of the canary flow (serving/labels.py)
REST_PORT = 8501
GRPC_PORT = 8500

SAVED_MODEL = 'saved_model.pb'
VARIABLES_INDEX = 'variables/variables.index'
STAGING_PREFIX = '.push-'
ROLLED_BACK_SUFFIX = '.rolled-back'
ROLLBACK_RECORD_SUFFIX = '.rollback.json'
_VERSION = re.compile(r'[0-9]+')


def model_root(serving_root: str, model_name: str = MODEL_NAME) -> str:
  """`<serving_root>/<model_name>`: what TF Serving polls (its --model_base_path)."""
  return f'{serving_root.rstrip("/")}/{model_name}'


def version_dir(root: str, version) -> str:
  """The directory of a version under a model root."""
  return f'{root.rstrip("/")}/{version}'


def rolled_back_root(root: str) -> str:
  """Where a rollback moves the versions of a model root: beside it, outside what is polled."""
  return root.rstrip('/') + ROLLED_BACK_SUFFIX


def rollback_record(root: str, from_version) -> str:
  """The audit record of the rollback away from `from_version` (versions are never reused)."""
  return f'{rolled_back_root(root)}/{from_version}{ROLLBACK_RECORD_SUFFIX}'


def version_number(name: str) -> Optional[int]:
  """The version a directory name stands for, or None for a name TF Serving ignores."""
  name = name.rstrip('/')
  return int(name) if _VERSION.fullmatch(name) and int(name) < 2**63 else None


def staging_name(name, token: str) -> str:
  """The staging directory of `name` (a version, an output folder) beside it: not an integer,
  so never a version."""
  return f'{STAGING_PREFIX}{name}-{token}'

