"""The click model: a DCN-v2 style tabular part plus a small CNN over the creative.

Inputs are the transformed features of models/preprocessing.py; their names and sizes are
derived from models/features.py and the Transform vocabularies.
"""
import dataclasses

import tensorflow as tf
import tensorflow_transform as tft

from models import features
from models import preprocessing


@dataclasses.dataclass(frozen=True)
class HParams:
  use_image: bool = True  # False gives the tabular-only variant used by the benchmark
  embedding_dim: int = 8
  cross_layers: int = 2
  deep_units: tuple = (64, 32)
  learning_rate: float = 0.001
  batch_size: int = 128
  epochs: int = 8
  early_stopping_patience: int = 2

  @classmethod
  def from_custom_config(cls, custom_config) -> 'HParams':
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in (custom_config or {}).items() if k in known}
    if 'deep_units' in values:
      values['deep_units'] = tuple(values['deep_units'])
    return cls(**values)


class CrossLayer(tf.keras.layers.Layer):
  """DCN-v2 cross layer: x_{l+1} = x0 * (W x_l + b) + x_l (explicit feature crosses)."""

  def build(self, input_shape):
    self.dense = tf.keras.layers.Dense(input_shape[0][-1])
    super().build(input_shape)

  def call(self, inputs):
    x0, x = inputs
    return x0 * self.dense(x) + x


def _image_tower(image):
  x = image
  for filters in (16, 32):
    x = tf.keras.layers.Conv2D(filters, 3, padding='same', activation='relu')(x)
    x = tf.keras.layers.MaxPooling2D()(x)
  x = tf.keras.layers.Conv2D(32, 3, padding='same', activation='relu')(x)
  # Average pooling sees contrast/clutter, max pooling sees a small badge anywhere.
  x = tf.keras.layers.Concatenate()([tf.keras.layers.GlobalAveragePooling2D()(x),
                                     tf.keras.layers.GlobalMaxPooling2D()(x)])
  return tf.keras.layers.Dense(16, activation='relu')(x)


def build_model(tf_transform_output: tft.TFTransformOutput, hparams: HParams) -> tf.keras.Model:
  inputs, embedded, dense = {}, [], []

  def embed(name, cardinality):
    inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.int64)
    embedded.append(tf.keras.layers.Embedding(cardinality, hparams.embedding_dim)(inputs[name]))

  image_out = None
  for feature in features.model_features():
    name = features.transformed_name(feature.name)
    if feature.role == features.CATEGORICAL:
      embed(name, tf_transform_output.vocabulary_size_by_name(feature.name) +
            preprocessing.OOV_BUCKETS)
    elif feature.role == features.INTEGER:
      embed(name, preprocessing.integer_cardinality(feature))
    elif feature.role == features.NUMERIC:
      inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.float32)
      dense.append(tf.keras.layers.Reshape((1,))(inputs[name]))
      embed(preprocessing.bucket_name(feature.name), preprocessing.NUMERIC_BUCKETS + 1)
    elif feature.role == features.IMAGE and hparams.use_image:
      size = features.IMAGE_SIZE
      inputs[name] = tf.keras.Input(shape=(size, size, 3), name=name, dtype=tf.float32)
      image_out = _image_tower(inputs[name])

  x0 = tf.keras.layers.Concatenate()(embedded + dense)
  cross = x0
  for _ in range(hparams.cross_layers):
    cross = CrossLayer()([x0, cross])
  deep = x0
  for units in hparams.deep_units:
    deep = tf.keras.layers.Dense(units, activation='relu')(deep)
  towers = [cross, deep] + ([image_out] if image_out is not None else [])
  hidden = tf.keras.layers.Dense(32, activation='relu')(tf.keras.layers.Concatenate()(towers))
  output = tf.keras.layers.Dense(1, activation='sigmoid', name='click_probability')(hidden)

  model = tf.keras.Model(inputs=inputs, outputs=output)
  model.compile(
      optimizer=tf.keras.optimizers.Adam(hparams.learning_rate),
      loss=tf.keras.losses.BinaryCrossentropy(),
      metrics=[tf.keras.metrics.AUC(name='auc'), tf.keras.metrics.BinaryCrossentropy(name='logloss')])
  return model
