"""DataGate's anomaly wording and its drift check of a new span against the previous span's CSV.

The fields are a small log of their own (not the sample data's), declared in features.py's
terms: a categorical of integer codes declared 'string', as public CTR logs have them.
"""
import csv

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components import data_gate
from models import features
from schema import generate

CODE = 'site_code'  # integer codes, declared a string
FIELDS = (
    features.Feature('row', features.KEY, 'string', 'Row id.', row_id=True),
    features.Feature(CODE, features.CATEGORICAL, 'string', 'Integer-coded site.',
                     drift_threshold=0.1),
    features.Feature('price', features.NUMERIC, 'float', 'Price.'),
    features.Feature('click', features.LABEL, 'int', 'Clicked.', value_range=(0, 1)),
)
MIX = {'1005': 500, '1002': 300, '1010': 150, '7': 50}
SHIFTED = {'1005': 100, '1002': 300, '1010': 550, '7': 50}


@pytest.fixture
def schema(monkeypatch):
  monkeypatch.setattr(features, 'FEATURES', FIELDS)
  return generate.build_schema()


def _rows(mix):
  codes = [code for code, count in mix.items() for _ in range(count)]
  return [{'row': str(i), CODE: code, 'price': 1.5, 'click': i % 2}
          for i, code in enumerate(codes)]


def _write_csv(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def _example_statistics(path, rows):
  """Statistics of rows as ExampleGen writes them (every field typed by features.py)."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for row in rows:
      example = tf.train.Example()
      for field in FIELDS:
        value = row[field.name]
        if field.dtype == 'string':
          example.features.feature[field.name].bytes_list.value.append(value.encode())
        elif field.dtype == 'float':
          example.features.feature[field.name].float_list.value.append(value)
        else:
          example.features.feature[field.name].int64_list.value.append(value)
      writer.write(example.SerializeToString())
  return tfdv.generate_statistics_from_tfrecord(str(path))


def _drift(tmp_path, schema, previous_mix, current_mix):
  _write_csv(tmp_path / 'data' / 'span-1' / 'ads.csv', _rows(previous_mix))
  previous = data_gate.csv_statistics(data_gate.previous_span_csv(str(tmp_path / 'data'), 2),
                                      schema)
  current = _example_statistics(tmp_path / 'examples.tfrecord', _rows(current_mix))
  return data_gate.describe(data_gate.drift_anomalies(current, previous, schema))


def test_integer_coded_string_field_is_compared_as_strings(tmp_path, schema):
  # Read as integers, the previous span's codes would not match the new span's strings and
  # the same mix would be reported as drift (L-infinity near 1).
  assert _drift(tmp_path, schema, MIX, MIX) == []


def test_shifted_mix_is_drift_in_words(tmp_path, schema):
  lines = _drift(tmp_path, schema, MIX, SHIFTED)
  assert len(lines) == 1 and lines[0].startswith(f'{CODE}: ')
  assert '1010' in lines[0] or '1005' in lines[0]


def test_describe_lists_every_reason():
  anomalies = anomalies_pb2.Anomalies()
  info = anomalies.anomaly_info['device']
  info.reason.add(short_description='Unexpected string values',
                  description='Examples contain values missing from the schema: watch.')
  assert data_gate.describe(anomalies) == [
      'device: Unexpected string values. Examples contain values missing from the schema: '
      'watch.']


def test_previous_span_is_found_only_when_it_exists(tmp_path):
  (tmp_path / 'span-1').mkdir()
  (tmp_path / 'span-1' / 'ads.csv').write_text('a\n')
  assert data_gate.previous_span_csv(str(tmp_path), 2).endswith('span-1/ads.csv')
  assert data_gate.previous_span_csv(str(tmp_path), 1) is None
  assert data_gate.previous_span_csv(str(tmp_path), 5) is None
