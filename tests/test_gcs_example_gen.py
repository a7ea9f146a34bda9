"""ImageCsvExampleGen reads monthly spans (CSV plus images) from gs:// on a real GCS emulator.

The input lives in the emulator, in the production layout gs://<bucket>/<prefix>/span-<N>/;
the Examples output stays on local disk (TensorFlow's gs:// cannot reach an emulator).
"""
import csv
import glob
import json
import os

import pytest
import tensorflow as tf
from tfx.proto import range_config_pb2
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

from components.image_csv_example_gen import component
from components.image_csv_example_gen import executor
from components.image_csv_example_gen import spans
from components.image_csv_example_gen import splits
from datagen.generate import generate_span
from models import data_layout
from models import features
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from tests import gcs_emulator

BUCKET = 'adclick-test'
PREFIX = 'ads'
ROWS = {1: 30, 2: 40, 3: 50}

pytestmark = pytest.mark.sample_fields


@pytest.fixture(scope='module')
def gcs_data(tmp_path_factory):
  """gs:// root holding spans 1-3 as the generator writes them, and the local copy."""
  local = tmp_path_factory.mktemp('data')
  for span, rows in ROWS.items():
    generate_span(str(local), span, rows)
  with gcs_emulator.running(BUCKET) as bucket:
    gcs_emulator.upload_tree(bucket, str(local), PREFIX)
    yield f'gs://{BUCKET}/{PREFIX}', local


def _run(input_base, output_dir, config):
  """Runs the executor with the exec properties the pipeline's component has."""
  examples = standard_artifacts.Examples()
  examples.uri = str(output_dir)
  example_gen = component.ImageCsvExampleGen(
      input_base=input_base, max_rejected_fraction=config.max_rejected_fraction,
      split_config=config.split, range_config=pipeline_lib.range_config(config))
  executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]},
                         dict(example_gen.exec_properties))
  return examples


def _read(uri):
  files = glob.glob(os.path.join(uri, 'Split-*', '*.gz'))
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def _images(local, span):
  with open(local / f'span-{span}' / 'ads.csv', newline='') as f:
    return {row['impression_id']: (local / f'span-{span}' / row['image_path']).read_bytes()
            for row in csv.DictReader(f)}


def test_spans_are_listed_on_gcs(gcs_data):
  input_base, _ = gcs_data
  assert spans.available_spans(input_base, data_layout.SPLIT_PATTERN) == [1, 2, 3]
  window = range_config_pb2.RangeConfig(
      rolling_range=range_config_pb2.RollingRange(num_spans=2))
  assert spans.select_spans(input_base, data_layout.SPLIT_PATTERN, window) == [2, 3]
  with pytest.raises(ValueError, match=r'Span 7 not found .* available spans: \[1, 2, 3\]'):
    spans.select_spans(input_base, data_layout.SPLIT_PATTERN,
                       pipeline_lib.range_config(config_lib.PipelineConfig(span=7)))


def test_latest_span_with_its_images(gcs_data, tmp_path):
  input_base, local = gcs_data
  examples = _run(input_base, tmp_path / 'out', config_lib.PipelineConfig(window_spans=1))

  assert examples.span == 3
  assert examples.get_string_custom_property(executor.SPANS_PROPERTY) == '3'
  assert examples.get_int_custom_property(executor.ROWS_ACCEPTED_PROPERTY) == ROWS[3]
  assert examples.get_int_custom_property(executor.ROWS_REJECTED_PROPERTY) == 0
  images = _images(local, 3)
  read = _read(examples.uri)
  assert len(read) == ROWS[3]
  for example in read:
    feature = example.features.feature
    impression = feature['impression_id'].bytes_list.value[0].decode()
    assert feature[features.image_feature().name].bytes_list.value == [images[impression]]


def test_rolling_window_reads_the_last_spans(gcs_data, tmp_path):
  input_base, _ = gcs_data
  examples = _run(input_base, tmp_path / 'out', config_lib.PipelineConfig(window_spans=2))

  assert examples.span == 3
  assert examples.get_string_custom_property(executor.SPANS_PROPERTY) == '2,3'
  assert examples.get_int_custom_property(executor.ROWS_ACCEPTED_PROPERTY) == ROWS[2] + ROWS[3]
  assert len(_read(examples.uri)) == ROWS[2] + ROWS[3]
  assert json.loads(examples.split_names) == list(splits.NAMES)
