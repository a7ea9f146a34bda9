"""The committed curated schema is exactly what models/features.py defines."""
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from models import features
from schema import generate


def test_committed_schema_matches_feature_definitions():
  with open(generate.SCHEMA_PATH) as f:
    committed = text_format.Parse(f.read(), schema_pb2.Schema())
  assert committed == generate.build_schema(), (
      'schema/schema.pbtxt is stale: run `make schema` and commit it')


def test_label_is_absent_at_serving_and_domains_are_closed():
  schema = generate.build_schema()
  by_name = {f.name: f for f in schema.feature}
  assert list(by_name[features.LABEL_KEY].not_in_environment) == [generate.SERVING]
  assert list(by_name['device'].string_domain.value) == list(features.DEVICES)
  assert by_name['hour'].int_domain.max == 23
  assert by_name['category'].drift_comparator.infinity_norm.threshold > 0
  assert set(by_name) == {f.name for f in features.example_features()}
  assert list(by_name['cohort'].not_in_environment) == [generate.SERVING]
