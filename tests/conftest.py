"""Shared test helpers: a handful of raw ad rows with real PNG creatives, the models built from
them, a free port, copies of the repository as a checkout holds it, local_runner.py in its
own process, and generated months with one line of every bad kind.

The suite follows models/features.py. Tests built on the generated sample log's fields (its
rows from datagen/ or raw_row, fake models keyed on its fields, its domains) carry the marker
`sample_fields`; with a features.py of another log they are skipped with SAMPLE_FIELDS_REASON
(pytest -rs lists them). A test that uses the raw_rows fixture (or one built on it:
transformed, serving_model_dir, model_server) is marked so without saying it."""
import csv
import dataclasses
import io
import os
import socket
import subprocess
import sys
from typing import Dict, Optional

import numpy as np
from PIL import Image
import pytest

from datagen import generate
from examples.swap import copy_repository, repository_files  # noqa: F401 (the tests' helpers)
from models import features

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny and quick: the tabular model, one epoch, no floor worth failing on (the runs are about
# lines, screens and artifacts, not model quality). The challenger is trained and reported,
# as by default, but not gated on: a one-epoch model may lose to it.
FAST = ['--set', 'hparams.max_epochs=1', '--set', 'hparams.use_image=false',
        '--set', 'gate.auc_floor=0.0', '--set', 'gate.challenger_check=false']


# Why a sample_fields test is skipped, and the fixtures whose rows are the sample log's.
SAMPLE_FIELDS_REASON = ("needs the generated sample's fields (models/features.py declares "
                        f'another log): {generate.sample_fields_problem()}')
SAMPLE_ROW_FIXTURES = frozenset({'raw_rows'})


# For a test of the image path (decoding, the image tower) on a log that has images.
needs_image = pytest.mark.skipif(features.image_feature() is None,
                                 reason='models/features.py has no image field')


def pytest_configure(config):
  config.addinivalue_line('markers', 'sample_fields: built on the generated sample log\'s fields; '
                          'skipped with a reason when models/features.py declares another log')


def pytest_collection_modifyitems(items):
  """Marks the tests on raw_rows sample_fields, and skips them all on another log's fields."""
  for item in items:
    if SAMPLE_ROW_FIXTURES & set(item.fixturenames):
      item.add_marker(pytest.mark.sample_fields)
  if generate.sample_fields_problem() is None:
    return
  for item in items:
    if item.get_closest_marker('sample_fields'):
      item.add_marker(pytest.mark.skip(reason=SAMPLE_FIELDS_REASON))


def free_port() -> int:
  """A port of 127.0.0.1 that nothing listens on (for a moment)."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def execution_counts(output_root: str) -> dict:
  """{component type: executions recorded} in the MLMD of a local run under output_root."""
  from ml_metadata import metadata_store  # pylint: disable=import-outside-toplevel
  import local_runner  # pylint: disable=import-outside-toplevel
  store = metadata_store.MetadataStore(local_runner.metadata_config(output_root))
  return {t.name.rsplit('.', 1)[-1]: len(store.get_executions_by_type(t.name))
          for t in store.get_execution_types()}


def encoded_image(image_format: str, size=(8, 8), color=(200, 30, 30), **options) -> bytes:
  """A one-colour image in `image_format` (PIL's name: PNG, JPEG, GIF, BMP, ...)."""
  buffer = io.BytesIO()
  Image.new('RGB', size, color).save(buffer, format=image_format, **options)
  return buffer.getvalue()


def png_bytes(color, size=64, badge=False) -> bytes:
  image = Image.new('RGB', (size, size), color)
  if badge:
    image.paste((255, 120, 0), (size - 24, size - 14, size - 4, size - 4))
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def raw_row(i: int, rng: np.random.Generator) -> dict:
  """One raw impression as the pipeline's tf.Examples hold it (values as Python scalars)."""
  return {
      'impression_id': f'imp-{i}', 'ad_id': f'ad_{i % 7:05d}', 'campaign_id': 'cmp_0001',
      'impression_time': 1767225600 + 3600 * i,
      'advertiser': f'adv_{i % 5:03d}',
      'category': features.CATEGORIES[i % len(features.CATEGORIES)],
      'creative_format': features.CREATIVE_FORMATS[i % len(features.CREATIVE_FORMATS)],
      'placement': features.PLACEMENTS[i % len(features.PLACEMENTS)],
      'device': features.DEVICES[i % len(features.DEVICES)],
      'country': features.COUNTRIES[i % len(features.COUNTRIES)],
      'hour': int(i % 24), 'day_of_week': int(i % 7),
      'bid_price': float(rng.uniform(0.1, 10)), 'headline_length': int(rng.integers(5, 90)),
      'image': png_bytes((int(rng.integers(0, 255)), 80, 160), badge=bool(i % 2)),
      'clicked': int(i % 4 == 0),
  }


def field_values(field: features.Feature, count: int) -> list:
  """`count` distinct values a field of features.py accepts, whatever the log: the first of
  its domain, else whole numbers from the start of its value_range, else made-up text."""
  if field.domain:
    return list(field.domain[:count])
  if field.dtype in ('int', 'float'):
    start = field.value_range[0] if field.value_range else 0
    return [(float if field.dtype == 'float' else int)(start + i) for i in range(count)]
  return [f'{field.name}_{i}' for i in range(count)]


@pytest.fixture(scope='session')
def raw_rows():
  rng = np.random.default_rng(0)
  return [raw_row(i, rng) for i in range(64)]


def to_example(row: dict):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  feature = {}
  for name, value in row.items():
    if isinstance(value, bytes):
      feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    elif isinstance(value, str):
      feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    elif isinstance(value, float):
      feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    else:
      feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
  return tf.train.Example(features=tf.train.Features(feature=feature))


@pytest.fixture(scope='session')
def transformed(raw_rows, tmp_path_factory):
  """Runs preprocessing_fn with tft_beam on the tiny rows; returns (transform dir, data)."""
  import tensorflow_transform.beam as tft_beam  # pylint: disable=g-import-not-at-top
  from tensorflow_transform.tf_metadata import dataset_metadata  # pylint: disable=g-import-not-at-top
  from tensorflow_transform.tf_metadata import metadata_io  # pylint: disable=g-import-not-at-top
  from models import preprocessing  # pylint: disable=g-import-not-at-top
  from schema import generate  # pylint: disable=g-import-not-at-top

  out = tmp_path_factory.mktemp('transform')
  metadata = dataset_metadata.DatasetMetadata(generate.build_schema())
  # Dense fields are [1]; ExampleGen adds the derived cohort to every example it writes.
  derived = {f.name: [f.domain[-1]] for f in features.example_features()
             if f.role == features.DERIVED}
  rows = [dict({k: [v] for k, v in row.items()}, **derived) for row in raw_rows]
  with tft_beam.Context(temp_dir=str(out / 'tmp'), force_tf_compat_v1=False):
    (data, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
        preprocessing.preprocessing_fn, output_record_batches=False)
    # The layout of Transform's transform_graph artifact (what TFTransformOutput reads).
    _ = transform_fn | tft_beam.WriteTransformFn(str(out / 'graph'))
  metadata_io.write_metadata(metadata, str(out / 'graph' / 'metadata'))
  return str(out / 'graph'), data


@pytest.fixture(scope='session')
def serving_model_dir(transformed, tmp_path_factory):
  """The adclick model exported as the Trainer exports it, untrained: serving needs the real
  graph and signatures, not good predictions (and fitting would take half a minute)."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from models import model as model_lib  # pylint: disable=g-import-not-at-top
  from models import signatures  # pylint: disable=g-import-not-at-top
  output = tft.TFTransformOutput(transformed[0])
  model = model_lib.build_model(output, model_lib.HParams())
  path = str(tmp_path_factory.mktemp('serving_model') / 'model')
  model.save(path, save_format='tf', signatures=signatures.build(model, output))
  return path


@pytest.fixture(scope='session')
def model_server(serving_model_dir, tmp_path_factory):
  """The local model server on a free port, serving serving_model_dir as version 1 of
  adclick; yields (the server, the model's directory to push more versions into)."""
  from components import safe_pusher  # pylint: disable=g-import-not-at-top
  from models import serving_layout  # pylint: disable=g-import-not-at-top
  from serving.emulator import server_process  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('serving')
  model_dir = serving_layout.model_root(str(root))
  safe_pusher.push(serving_model_dir, model_dir, '1')
  with server_process.model_server(str(root), serving_layout.MODEL_NAME,
                                   '--poll-seconds', '0.2') as server:
    yield server, model_dir


def run_local_runner(data: str, out: str, *extra: str) -> subprocess.CompletedProcess:
  """local_runner.py in its own process, as a user starts it, with the FAST options."""
  return subprocess.run([sys.executable, os.path.join(REPO, 'local_runner.py'),
                         '--data-root', data, '--output-root', out, *FAST, *extra],
                        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO),
                        check=False, timeout=900)


@dataclasses.dataclass
class DirtySpan:
  csv_path: str
  rows_read: int
  rows_good: int  # to be accepted: the generated rows and the one with a quoted newline
  rejected: Dict[int, str]  # line number -> words of its reason


def dirty_span(data: str, span: int, rows: int) -> DirtySpan:
  """A generated span with one line of every bad kind (and a quoted newline) among its rows
  (tests/test_rows.py's lines, which ExampleGen, check_csv and batch scoring tests read)."""
  from datagen import generate  # pylint: disable=import-outside-toplevel
  from models import data_layout  # pylint: disable=import-outside-toplevel
  from tests import test_rows  # pylint: disable=import-outside-toplevel
  generate.generate_span(data, span, rows)
  csv_path = data_layout.ads_csv(data, span)
  with open(csv_path, newline='') as f:
    header, *good = list(csv.reader(f))
  lines: Dict[int, Optional[str]] = test_rows.write_dirty_csv(
      data_layout.span_dir(data, span), header, good,
      test_rows.dirty_lines(dict(zip(header, good[0])), header))
  rejected = {line: words for line, words in lines.items() if words is not None}
  return DirtySpan(csv_path, rows_read=len(good) + len(lines),
                   rows_good=len(good) + len(lines) - len(rejected), rejected=rejected)
