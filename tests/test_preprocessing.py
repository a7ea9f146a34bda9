"""preprocessing_fn through tft_beam on tiny rows."""
import functools

import numpy as np
import pytest
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from models import features
from models import preprocessing
from schema import generate as schema_generate
from tests.conftest import needs_image

# The fixture rows (tests/conftest.py raw_row) are rows of the sample ad log: the tests on
# them are skipped on another log's features.py (conftest marks them sample_fields).


def _transform(transform_dir, rows):
  """Raw rows -> transformed features, through the Transform graph as served."""
  output = tft.TFTransformOutput(transform_dir)
  raw = {name: np.array([[row[name]] for row in rows]) for name in rows[0]}
  return {k: v.numpy() for k, v in output.transform_raw_features(raw).items()}


def test_every_model_feature_is_transformed(transformed):
  _, data = transformed
  expected = {features.transformed_name(f.name) for f in features.model_features()}
  expected |= {preprocessing.bucket_name(f.name) for f in features.with_role(features.NUMERIC)}
  expected.add(features.label_feature().name)
  assert set(data[0]) == expected


@needs_image
def test_image_is_decoded_resized_and_scaled(transformed):
  _, data = transformed
  image = np.asarray(data[0][features.transformed_name(features.image_feature().name)])
  assert image.shape == (features.IMAGE_SIZE, features.IMAGE_SIZE, 3)
  assert 0.0 <= image.min() and image.max() <= 1.0
  # A flat colour stays that colour after resizing: the top-left pixel is the background
  # (r, 80, 160) drawn by conftest.png_bytes.
  assert abs(image[0, 0, 1] - 80 / 255) < 0.01 and abs(image[0, 0, 2] - 160 / 255) < 0.01


def test_numeric_fields_are_scaled_and_bucketized(transformed):
  transform_dir, data = transformed
  for feature in features.with_role(features.NUMERIC):
    values = np.array([row[features.transformed_name(feature.name)] for row in data])
    assert abs(values.mean()) < 1e-3 and abs(values.std() - 1) < 0.05, feature.name
    buckets = {int(row[preprocessing.bucket_name(feature.name)]) for row in data}
    assert buckets == set(range(preprocessing.num_ids(tft.TFTransformOutput(transform_dir),
                                                       preprocessing.bucket_name(feature.name))))
    assert len(buckets) <= preprocessing.PreprocessingConfig().numeric_buckets, feature.name
    assert len(buckets) > 3, feature.name


def test_vocabularies_have_oov_buckets(transformed, raw_rows):
  transform_dir, data = transformed
  output = tft.TFTransformOutput(transform_dir)
  for feature in features.with_role(features.CATEGORICAL):
    size = output.vocabulary_size_by_name(feature.name)
    assert size == len({row[feature.name] for row in raw_rows}), feature.name
    ids = {int(row[features.transformed_name(feature.name)]) for row in data}
    assert ids == set(range(size)), feature.name
    # An unseen value maps into an OOV bucket instead of failing.
    unseen = _transform(transform_dir, [dict(raw_rows[0], **{feature.name: 'never_seen'})])
    assert size <= unseen[features.transformed_name(feature.name)][0] < (
        size + preprocessing.PreprocessingConfig().oov_buckets), feature.name


def test_integer_fields_are_clipped_to_their_range(transformed, raw_rows):
  transform_dir, _ = transformed
  for feature in features.with_role(features.INTEGER):
    low, high = (int(v) for v in feature.value_range)
    values = [low - 5, low, (low + high) // 2, high, high + 7]
    out = _transform(transform_dir, [dict(raw_rows[0], **{feature.name: v}) for v in values])
    ids = list(out[features.transformed_name(feature.name)])
    assert ids == [0, 0, (low + high) // 2 - low, high - low, high - low], feature.name


def test_non_finite_numbers_get_the_default_or_the_training_mean(transformed, raw_rows):
  """TF Serving in production parses NaN and Infinity from JSON (and a gRPC caller may send
  them, or 1e400 as inf) with no validation of ours in front of the graph: the graph itself
  maps them to the field's default, or to the training mean for a field without one."""
  transform_dir, _ = transformed
  floats = [f for f in features.model_features() if f.dtype == 'float']
  assert floats, 'features.py has no float field to test'
  for feature in floats:
    stand_in = (feature.default if feature.default is not None else
                float(np.mean([row[feature.name] for row in raw_rows])))
    values = [stand_in, float('nan'), float('inf'), -float('inf'), float('1e400')]
    out = _transform(transform_dir, [dict(raw_rows[0], **{feature.name: v}) for v in values])
    for name in (features.transformed_name(feature.name), preprocessing.bucket_name(feature.name)):
      got = out[name].reshape(len(values), -1)
      assert np.isfinite(got).all(), name
      np.testing.assert_allclose(got[1:], np.repeat(got[:1], len(values) - 1, 0), rtol=1e-5,
                                 err_msg=name)


def _analyzed(rows, tmp_path, custom_config):
  """The Transform graph of preprocessing_fn with `custom_config`, as Transform passes it."""
  derived = {f.name: [f.domain[-1]] for f in features.example_features()
             if f.role == features.DERIVED}
  rows = [dict({k: [v] for k, v in row.items()}, **derived) for row in rows]
  metadata = dataset_metadata.DatasetMetadata(schema_generate.build_schema())
  with tft_beam.Context(temp_dir=str(tmp_path / 'tmp'), force_tf_compat_v1=False):
    transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(
        functools.partial(preprocessing.preprocessing_fn, custom_config=custom_config))
    _ = transform_fn | tft_beam.WriteTransformFn(str(tmp_path / 'graph'))
  return tft.TFTransformOutput(str(tmp_path / 'graph'))


@pytest.mark.slow  # a second Transform analysis: 55 s on the 2 shared cores under load
def test_bucket_counts_come_from_the_config_and_the_graph_records_them(
    transformed, raw_rows, tmp_path):
  """The model sizes its embeddings from the graph (num_ids), so a count set in the config
  (Transform's custom_config) reaches it without a second copy."""
  default = tft.TFTransformOutput(transformed[0])
  settings = preprocessing.PreprocessingConfig(oov_buckets=5, numeric_buckets=3)
  output = _analyzed(raw_rows, tmp_path, {'oov_buckets': 5, 'numeric_buckets': 3})
  for feature in features.with_role(features.CATEGORICAL):
    assert preprocessing.oov_buckets(default, feature.name) == (
        preprocessing.PreprocessingConfig().oov_buckets), feature.name
    assert preprocessing.oov_buckets(output, feature.name) == settings.oov_buckets
  for feature in features.with_role(features.NUMERIC):
    name = preprocessing.bucket_name(feature.name)
    # Quantile buckets: at most the count asked for (fewer when values repeat).
    assert 1 < preprocessing.num_ids(output, name) <= settings.numeric_buckets, feature.name
    assert preprocessing.num_ids(output, name) < preprocessing.num_ids(default, name)


@pytest.mark.parametrize('field', ['oov_buckets', 'numeric_buckets'])
def test_bucket_counts_must_be_positive(field):
  with pytest.raises(ValueError, match=field):
    preprocessing.PreprocessingConfig(**{field: 0})
