"""Pushes a SavedModel as `<base>/<version>/` so that a polling server only sees it complete.

The model is first copied to `<base>/.push-<version>/`, a name no server takes for a version
(TF Serving, and model_server.py, only load directories named by an integer). Then:
  * local disk: one rename moves it into place, which POSIX makes atomic;
  * GCS (and other object stores): there is no rename, so the files are copied into
    `<base>/<version>/` with saved_model.pb last, and the staging copy is deleted.
    Each GCS object appears whole once its upload ends and listings are strongly consistent,
    so by the time saved_model.pb is visible every other file is. TF Serving cannot load a
    version without saved_model.pb; if it polls in between, that load fails and is retried
    (--load_retry_interval_micros, see deploy/), never served half-written.
"""
import os
import uuid

import tensorflow as tf

from serving.versions import SAVED_MODEL
from serving.versions import relative_files

STAGING_PREFIX = '.push-'


def push(model_dir: str, base_dir: str, version: str) -> str:
  """Copies model_dir to base_dir/version and returns that path; an existing one is kept."""
  target = os.path.join(base_dir, version)
  if tf.io.gfile.exists(target):
    return target
  staging = os.path.join(base_dir, f'{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}')
  tf.io.gfile.makedirs(base_dir)
  copy_saved_model(model_dir, staging)
  if '://' not in base_dir:
    tf.io.gfile.rename(staging, target)
  else:
    copy_saved_model(staging, target)
    tf.io.gfile.rmtree(staging)
  return target


def copy_saved_model(source: str, destination: str):
  """Copies every file, saved_model.pb last: its presence means the rest is there."""
  files = sorted(relative_files(source), key=lambda path: path == SAVED_MODEL)
  for path in files:
    tf.io.gfile.makedirs(os.path.dirname(os.path.join(destination, path)))
    tf.io.gfile.copy(os.path.join(source, path), os.path.join(destination, path))
