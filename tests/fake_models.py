"""Tiny SavedModels with the pipeline's `serving_examples` signature, written in seconds."""
import tensorflow as tf

from models import features
from models import signatures


class _ExamplesModel(tf.Module):
  """serialized tf.Examples -> click_probability, computed by `probability(label)`."""

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
