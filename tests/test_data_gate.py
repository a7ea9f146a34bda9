"""DataGate's anomaly wording and its drift check of a new span against the previous span.

The fields are a small log of their own (not the sample data's), declared in features.py's
terms: a categorical of integer codes declared 'string', as public CTR logs have them.
"""
import csv
import io

import apache_beam as beam
import pytest
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components import data_gate
from models import features
from schema import generate
from tests import fake_models

CODE = 'site_code'  # integer codes, declared a string
FIELDS = (
    features.Feature('row', features.KEY, 'string', 'Row id.', row_id=True),
    features.Feature(CODE, features.CATEGORICAL, 'string', 'Integer-coded site.',
                     drift_threshold=0.1),
    features.Feature('slot', features.INTEGER, 'int', 'Ad slot.', required=False, default=0),
    features.Feature('price', features.NUMERIC, 'float', 'Price.'),
    features.Feature('click', features.LABEL, 'int', 'Clicked.', value_range=(0, 1)),
)
MIX = {'1005': 500, '1002': 300, '1010': 150, '7': 50}
SHIFTED = {'1005': 100, '1002': 300, '1010': 550, '7': 50}
# One line of each kind that stopped the old drift check (a cell short, a pasted
# tab-separated line) or that ExampleGen's row rules reject: none may be counted.
DIRTY_LINES = (
    b'9001,1005,1,1.5',  # 4 cells of 5
    b'9002\t1005\t1\t1.5\t0',  # pasted tab-separated
    b'9003,10\x0005,1,1.5,0',  # NUL
    b'9004,10\xff05,1,1.5,0',  # invalid UTF-8
    b'9005,1005,n/a,1.5,0',  # not an integer
    b'9006,1005,1,inf,0',  # not a finite number
    b'9007,1005,1,1.5,',  # empty label
    b'9008,1005,1,1.5,2',  # label out of range
)


@pytest.fixture
def schema(monkeypatch):
  fake_models.use_features(monkeypatch, FIELDS)
  return generate.build_schema()


def _rows(mix):
  codes = [code for code, count in mix.items() for _ in range(count)]
  return [{'row': str(i), CODE: code, 'slot': i % 3, 'price': 1.5, 'click': i % 2}
          for i, code in enumerate(codes)]


def _write_csv(path, rows, extra_lines=()):
  """rows as a CSV with a header; extra_lines (raw bytes) follow the first row."""
  path.parent.mkdir(parents=True, exist_ok=True)
  text = io.StringIO()
  writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator='\n')
  writer.writeheader()
  writer.writerows(rows)
  header, first, *rest = text.getvalue().encode().split(b'\n')
  path.write_bytes(b'\n'.join([header, first, *extra_lines, *rest]))


def _statistics(tmp_path, schema, spans, skipped=None):
  return data_gate.drift_statistics(beam.Pipeline(), str(tmp_path / 'data'), spans, schema,
                                    skipped or {}, str(tmp_path / 'gate'))


def _drift(tmp_path, schema, previous_mix, current_mix, dirty=()):
  _write_csv(tmp_path / 'data' / 'span-1' / 'ads.csv', _rows(previous_mix), dirty)
  _write_csv(tmp_path / 'data' / 'span-2' / 'ads.csv', _rows(current_mix))
  stats = _statistics(tmp_path, schema, [1, 2])
  return data_gate.describe(data_gate.drift_anomalies(stats[2], stats[1], schema)), stats


def test_integer_coded_string_field_is_compared_as_strings(tmp_path, schema):
  # Read as integers, the previous span's codes would not match the new span's strings and
  # the same mix would be reported as drift (L-infinity near 1).
  assert _drift(tmp_path, schema, MIX, MIX)[0] == []


def test_dirty_previous_span_counts_only_its_good_rows(tmp_path, schema):
  lines, stats = _drift(tmp_path, schema, MIX, MIX, DIRTY_LINES)
  assert lines == []
  good = sum(MIX.values())
  assert [stats[span].datasets[0].num_examples for span in (1, 2)] == [good, good]
  # Only the drift fields are described.
  assert [f.path.step[0] for f in stats[1].datasets[0].features] == [CODE]


def test_lines_example_gen_rejected_are_left_out(tmp_path, schema):
  _write_csv(tmp_path / 'data' / 'span-1' / 'ads.csv', _rows(MIX))
  path = data_gate.span_csv(str(tmp_path / 'data'), 1)
  stats = _statistics(tmp_path, schema, [1], {path: frozenset({2, 5})})
  assert stats[1].datasets[0].num_examples == sum(MIX.values()) - 2


def test_shifted_mix_is_drift_in_words(tmp_path, schema):
  lines, _ = _drift(tmp_path, schema, MIX, SHIFTED)
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


def test_a_span_is_found_only_when_it_exists(tmp_path):
  (tmp_path / 'span-1').mkdir()
  (tmp_path / 'span-1' / 'ads.csv').write_text('a\n')
  assert data_gate.span_csv(str(tmp_path), 1).endswith('span-1/ads.csv')
  assert data_gate.span_csv(str(tmp_path), 0) is None  # before the first month
  assert data_gate.span_csv(str(tmp_path), 4) is None
