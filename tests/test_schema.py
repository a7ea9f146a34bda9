"""The committed curated schema is exactly what models/features.py defines, whatever its fields."""
from google.protobuf import text_format
import pytest
from tensorflow_metadata.proto.v0 import schema_pb2

from models import features
from schema import generate

SCHEMA_TYPES = {'string': schema_pb2.BYTES, 'bytes': schema_pb2.BYTES, 'int': schema_pb2.INT,
                'float': schema_pb2.FLOAT}


def test_committed_schema_matches_feature_definitions():
  with open(generate.SCHEMA_PATH) as f:
    committed = text_format.Parse(f.read(), schema_pb2.Schema())
  assert committed == generate.build_schema(), (
      'schema/schema.pbtxt is stale: run `make schema` and commit it')


def test_every_field_is_declared_as_in_features_py():
  by_name = {f.name: f for f in generate.build_schema().feature}
  assert set(by_name) == {f.name for f in features.example_features()}
  assert list(by_name[features.label_feature().name].not_in_environment) == [generate.SERVING]
  for field in features.example_features():
    declared = by_name[field.name]
    assert declared.type == SCHEMA_TYPES[field.dtype], field.name
    assert list(declared.string_domain.value) == list(field.domain), field.name
    at_serving = field.role not in (features.LABEL, features.DERIVED)
    assert (generate.SERVING not in declared.not_in_environment) == at_serving, field.name
    if field.value_range:
      domain = declared.int_domain if field.dtype == 'int' else declared.float_domain
      # float_domain holds float32
      assert (domain.min, domain.max) == pytest.approx(field.value_range, rel=1e-6), field.name
    if field.drift_threshold is not None:
      assert declared.drift_comparator.infinity_norm.threshold == field.drift_threshold


def test_a_log_of_ones_own(monkeypatch):
  """Integer codes declared 'string' stay strings; a time and an ad key add the cohort."""
  monkeypatch.setattr(features, 'FEATURES', (
      features.Feature('id', features.KEY, 'string', 'Row id.', row_id=True),
      features.Feature('site', features.KEY, 'string', 'Site.', cohort_key=True),
      features.Feature('hour', features.TIME, 'int', 'YYMMDDHH.'),
      features.Feature('C1', features.CATEGORICAL, 'string', 'Integer codes.',
                       domain=('1005', '1002'), drift_threshold=0.2),
      features.Feature('C18', features.INTEGER, 'int', 'Small integer.', value_range=(0, 3)),
      features.Feature('click', features.LABEL, 'int', 'Clicked.', value_range=(0, 1)),
  ))
  by_name = {f.name: f for f in generate.build_schema().feature}
  assert list(by_name) == ['id', 'site', 'hour', 'C1', 'C18', 'click', 'cohort']
  assert by_name['C1'].type == schema_pb2.BYTES
  assert list(by_name['C1'].string_domain.value) == ['1005', '1002']
  assert by_name['C1'].drift_comparator.infinity_norm.threshold == 0.2
  assert (by_name['C18'].int_domain.min, by_name['C18'].int_domain.max) == (0, 3)
  assert by_name['hour'].type == schema_pb2.INT and not by_name['hour'].HasField('int_domain')
  for name in ('click', 'cohort'):
    assert list(by_name[name].not_in_environment) == [generate.SERVING]
  assert not any(f.HasField('image_domain') for f in by_name.values())
