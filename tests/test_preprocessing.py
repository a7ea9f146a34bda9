"""preprocessing_fn through tft_beam on tiny rows."""
import numpy as np
import tensorflow_transform as tft

from models import features
from models import preprocessing


def test_every_model_feature_is_transformed(transformed):
  _, data = transformed
  expected = {features.transformed_name(f.name) for f in features.model_features()}
  expected |= {preprocessing.bucket_name(f.name) for f in features.with_role(features.NUMERIC)}
  expected.add(features.LABEL_KEY)
  assert set(data[0]) == expected


def test_image_is_decoded_resized_and_scaled(transformed):
  _, data = transformed
  image = np.asarray(data[0][features.transformed_name('image')])
  assert image.shape == (features.IMAGE_SIZE, features.IMAGE_SIZE, 3)
  assert 0.0 <= image.min() and image.max() <= 1.0
  # A flat colour stays that colour after resizing: the top-left pixel is the background
  # (r, 80, 160) drawn by conftest.png_bytes.
  assert abs(image[0, 0, 1] - 80 / 255) < 0.01 and abs(image[0, 0, 2] - 160 / 255) < 0.01


def test_numeric_fields_are_scaled_and_bucketized(transformed):
  _, data = transformed
  bid = np.array([row[features.transformed_name('bid_price')] for row in data])
  assert abs(bid.mean()) < 1e-3 and abs(bid.std() - 1) < 0.05
  buckets = {int(row[preprocessing.bucket_name('bid_price')]) for row in data}
  assert buckets <= set(range(preprocessing.NUMERIC_BUCKETS + 1)) and len(buckets) > 3


def test_vocabularies_have_oov_buckets(transformed, raw_rows):
  transform_dir, data = transformed
  output = tft.TFTransformOutput(transform_dir)
  size = output.vocabulary_size_by_name('device')
  assert size == len(features.DEVICES)
  ids = {int(row[features.transformed_name('device')]) for row in data}
  assert ids == set(range(size))
  # An unseen advertiser maps into an OOV bucket instead of failing.
  row = dict(raw_rows[0], advertiser='adv_never_seen')
  layer_out = output.transform_raw_features({k: np.array([[v]]) for k, v in row.items()})
  advertiser = int(layer_out[features.transformed_name('advertiser')].numpy()[0])
  vocab = output.vocabulary_size_by_name('advertiser')
  assert vocab <= advertiser < vocab + preprocessing.OOV_BUCKETS


def test_hour_and_day_are_clipped_ids(transformed):
  _, data = transformed
  hours = {int(row[features.transformed_name('hour')]) for row in data}
  assert hours <= set(range(24))
