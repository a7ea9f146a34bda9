"""Writes the curated schema (schema/schema.pbtxt) from models/features.py.

    python -m schema.generate            # rewrite schema/schema.pbtxt
The committed file is what ImportSchemaGen imports; tests/test_schema.py fails if it no longer
matches features.py, so a field is only ever defined in one place.
"""
import argparse
import os

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from models import features

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'schema.pbtxt')
TRAINING, SERVING = 'TRAINING', 'SERVING'
# TensorFlow's dtype of a field (features.tf_dtype) -> the schema's type.
_SCHEMA_TYPES = {'string': schema_pb2.BYTES, 'int64': schema_pb2.INT,
                 'float32': schema_pb2.FLOAT}


def build_schema() -> schema_pb2.Schema:
  schema = schema_pb2.Schema()
  schema.default_environment.extend([TRAINING, SERVING])
  for f in features.example_features():
    feature = schema.feature.add(name=f.name, type=_SCHEMA_TYPES[features.tf_dtype(f).name])
    feature.annotation.comment.append(f'{f.role}: {f.description}')
    # ExampleGen fills defaults for optional fields, so every field is present once a row;
    # a field with a missing indicator holds NaN where it is missing, which
    # the schema accepts (its float_domain leaves disallow_nan unset).
    feature.presence.min_fraction = 1.0
    feature.presence.min_count = 1
    feature.shape.dim.add(size=1)
    if f.domain:
      feature.string_domain.name = f.name
      feature.string_domain.value.extend(f.domain)
    if f.value_range and f.dtype == 'int':
      feature.int_domain.min, feature.int_domain.max = (int(v) for v in f.value_range)
    elif f.value_range:
      feature.float_domain.min, feature.float_domain.max = f.value_range
    if f.role == features.IMAGE:
      feature.image_domain.SetInParent()
    if f.drift_threshold is not None:
      feature.drift_comparator.infinity_norm.threshold = f.drift_threshold
    if f.skew_threshold is not None and f.role == features.CATEGORICAL:
      feature.skew_comparator.infinity_norm.threshold = f.skew_threshold
    elif f.skew_threshold is not None:  # TFDV compares numeric fields by JSD only
      feature.skew_comparator.jensen_shannon_divergence.threshold = f.skew_threshold
    if f.role in (features.LABEL, features.DERIVED):
      feature.not_in_environment.append(SERVING)
  return schema


def schema_text() -> str:
  return text_format.MessageToString(build_schema())


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--output', default=SCHEMA_PATH)
  args = parser.parse_args()
  with open(args.output, 'w') as f:
    f.write(schema_text())
  print(f'Wrote {args.output}')


if __name__ == '__main__':
  main()
