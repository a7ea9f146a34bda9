"""Fakes for the pipeline's and the server's tests: tiny SavedModels with the pipeline's
signatures, written in seconds; a small feature set without an image; and a model's serving
signature called in this process (what the server's answers must equal)."""
import functools

import numpy as np
import tensorflow as tf

from models import features
from models import signatures
from models.features import Feature


class _ExamplesModel(tf.Module):
  """serialized tf.Examples -> the prediction, computed by `probability(label)`."""

  def __init__(self, probability):
    super().__init__()
    self._probability = probability
    self._scale = tf.Variable(1.0)  # a real variables/ directory, like a trained model

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(self, examples):
    parsed = tf.io.parse_example(examples, {
        features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=0)})
    label = tf.cast(parsed[features.LABEL_KEY], tf.float32)
    return {signatures.PREDICTION_KEY: tf.expand_dims(self._scale * self._probability(label), -1)}


def save(path: str, probability) -> str:
  """Writes a SavedModel whose prediction is `probability(label)` (a TF function)."""
  model = _ExamplesModel(probability)
  tf.saved_model.save(model, path, signatures={signatures.EXAMPLES_SIGNATURE: model.serve})
  return path


def save_constant(path: str, value: float = 0.05) -> str:
  """Predicts `value` for every impression: AUC 0.5, what any real model must beat."""
  return save(path, lambda label: tf.fill(tf.shape(label), value))


def save_peeking(path: str) -> str:
  """Reads the label it should predict: AUC 1.0, better than any real model."""
  return save(path, lambda label: 0.02 + 0.96 * label)


# A CTR log of another shape (Avazu-like): other key and label, no image, an integer-coded
# categorical declared as text.
NO_IMAGE_FEATURES = (
    Feature('id', features.KEY, 'string', 'Impression id.'),
    Feature('site_category', features.CATEGORICAL, 'string', 'Category of the site.'),
    Feature('C1', features.CATEGORICAL, 'string', 'Anonymised code.', required=False,
            default='1005'),
    Feature('hour', features.INTEGER, 'int', 'Hour of day.', value_range=(0, 23)),
    Feature('banner_pos', features.INTEGER, 'int', 'Banner position.', required=False,
            default=0, value_range=(0, 7)),
    Feature('price', features.NUMERIC, 'float', 'Floor price.', value_range=(0.0, 100.0)),
    Feature('click', features.LABEL, 'int', '1 if clicked.', value_range=(0, 1)),
)


def use_features(monkeypatch, fields, csv_format=features.CsvFormat()) -> None:
  """Makes models/features.py describe `fields`, written in `csv_format` (by default
  comma-separated with a header), for the rest of a test, whichever log it declares."""
  monkeypatch.setattr(features, 'FEATURES', tuple(fields))
  monkeypatch.setattr(features, 'BY_NAME', {f.name: f for f in fields})
  monkeypatch.setattr(features, 'CSV_FORMAT', csv_format)
  monkeypatch.setattr(features, 'LABEL_KEY', features.label_feature().name)


def no_image_probability(inputs):
  """What save_raw's model predicts from NO_IMAGE_FEATURES: every input counts, so a value
  that does not reach the model changes the answer."""
  news = tf.cast(tf.equal(inputs['site_category'], 'news'), tf.float32)
  code = tf.cast(tf.equal(inputs['C1'], '1005'), tf.float32)
  hour = tf.cast(inputs['hour'] + inputs['banner_pos'], tf.float32)
  return (hour + 1) / 50 + 0.3 * news + 0.1 * code + inputs['price'] / 1000


def save_raw(path: str, probability) -> str:
  """A SavedModel with the raw serving signature of the fields features.py has now (one
  [batch] tensor each, as the Trainer exports it) predicting `probability(inputs)`."""
  specs = [tf.TensorSpec([None], features.tf_dtype(f), name=f.name)
           for f in features.serving_features()]
  module = tf.Module()
  module.scale = tf.Variable(1.0)

  @tf.function(input_signature=specs)
  def serve(*tensors):
    inputs = {spec.name: tensor for spec, tensor in zip(specs, tensors)}
    return {signatures.PREDICTION_KEY: module.scale * probability(inputs)}

  tf.saved_model.save(module, path, signatures={signatures.SERVING_SIGNATURE: serve})
  return path


@functools.lru_cache(maxsize=None)
def _load(model_dir: str):
  return tf.saved_model.load(model_dir)  # kept: its signatures need its variables alive


def serving_predictions(model_dir: str, rows) -> np.ndarray:
  """The model's raw serving signature called in this process on rows of raw values."""
  inputs = {f.name: tf.constant([r[f.name] for r in rows], dtype=features.tf_dtype(f))
            for f in features.serving_features()}
  serve = _load(model_dir).signatures[signatures.SERVING_SIGNATURE]
  return serve(**inputs)[signatures.PREDICTION_KEY].numpy()
