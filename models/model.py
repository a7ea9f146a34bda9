"""The click model: a DCN-v2 style tabular part plus a small CNN over the creative.

Inputs are the transformed features of models/preprocessing.py; their names and sizes are
derived from models/features.py and the Transform vocabularies.
"""
import dataclasses
from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft

from models import features
from models import preprocessing
from models import signatures


@dataclasses.dataclass(frozen=True)
class HParams:
  """Every hyperparameter of the model and its training; PipelineConfig.hparams holds them."""
  use_image: bool = True  # False gives the tabular-only variant used by the benchmark
  embedding_dim: int = 8
  cross_layers: int = 2
  deep_units: tuple = (64, 32)
  image_filters: int = 16  # the image tower's first layer; later layers double it once
  dropout: float = 0.1
  learning_rate: float = 0.001
  batch_size: int = 128
  # Epochs until the validation log-loss stops improving for `early_stopping_patience` of
  # them; an epoch is a pass over the training split or `epoch_rows` rows, whichever is fewer,
  # so small months get whole passes and large ones a budget that stops growing with the rows.
  max_epochs: int = 12
  epoch_rows: int = 500_000
  early_stopping_patience: int = 2
  # After each epoch that does not improve the validation log-loss, the learning rate is
  # multiplied by this (1.0: constant). At a constant rate the validation loss jumps from
  # epoch to epoch and early stopping keeps an early, noisy optimum (docs/benchmarks.md).
  lr_decay: float = 0.3
  calibrate: bool = True  # Platt-scale the output on the validation split after training
  # Fit the challenger, a logistic regression on the same rows (models/challenger.py), which
  # the report compares the model with and gate.challenger_check gates on; false skips it
  # (the comparison then reads "n/a"): for runs about something else, e.g. most tests.
  challenger: bool = True
  # Seeds initial weights, dropout and shuffling, so a rerun on the same rows trains the same
  # model up to float summation order (TF's parallel kernels do not promise more).
  seed: int = 0

  def in_use(self) -> dict:
    """The fields that shape this model: without an image field, the image tower's are
    moot (a run summary should not say use_image=True for a log without images)."""
    values = dataclasses.asdict(self)
    if features.image_feature() is None:
      for name in IMAGE_HPARAMS:
        values.pop(name)
    return values

  def replace(self, values: dict) -> 'HParams':
    """A copy with the known fields of `values` (e.g. tuned ones) set."""
    known = {f.name for f in dataclasses.fields(self)}
    values = {k: tuple(v) if isinstance(v, list) else v
              for k, v in (values or {}).items() if k in known}
    return dataclasses.replace(self, **values)


IMAGE_HPARAMS = ('use_image', 'image_filters')  # the HParams of the image tower


def _default_search_space() -> Dict[str, list]:
  return {'learning_rate': [0.0005, 0.001, 0.002, 0.004], 'embedding_dim': [4, 8, 16],
          'image_filters': [8, 16, 24], 'dropout': [0.0, 0.1, 0.3]}


@dataclasses.dataclass(frozen=True)
class TunerConfig:
  """The hyperparameter search of the Tuner (models/tuner.py), which gets it in its
  custom_config; how many trials is PipelineConfig.tuner_trials."""
  # HParams field -> the values tried (KerasTuner Choice: numbers, strings or booleans);
  # the others keep the config's values.
  search_space: dict = dataclasses.field(default_factory=_default_search_space)
  trial_epochs: int = 4  # each trial trains at most this many epochs (and hparams.max_epochs)

  def __post_init__(self):
    known = {f.name for f in dataclasses.fields(HParams)}
    for name, values in self.search_space.items():
      if name not in known:
        raise ValueError(f'tuner.search_space: {name!r} is not a hyperparameter; '
                         f'known: {", ".join(sorted(known))}')
      if not values or not all(isinstance(v, (int, float, str, bool)) for v in values):
        raise ValueError(f'tuner.search_space[{name!r}]: expected a non-empty list of numbers, '
                         f'strings or booleans; got {values!r}')
    if self.trial_epochs < 1:
      raise ValueError(f'tuner.trial_epochs must be >= 1; got {self.trial_epochs}')


class CrossLayer(tf.keras.layers.Layer):
  """DCN-v2 cross layer: x_{l+1} = x0 * (W x_l + b) + x_l (explicit feature crosses)."""

  def build(self, input_shape):
    self.dense = tf.keras.layers.Dense(input_shape[0][-1])
    super().build(input_shape)

  def call(self, inputs):
    x0, x = inputs
    return x0 * self.dense(x) + x


class Calibration(tf.keras.layers.Layer):
  """sigmoid(a * logit + b): identity (a=1, b=0) while training, fitted afterwards."""

  def build(self, input_shape):
    self.scale = self.add_weight(name='scale', shape=(), initializer='ones', trainable=False)
    self.bias = self.add_weight(name='bias', shape=(), initializer='zeros', trainable=False)
    super().build(input_shape)

  def call(self, logit):
    return tf.sigmoid(self.scale * logit + self.bias)


def _image_tower(image, filters):
  x = image
  for width in (filters, 2 * filters):
    x = tf.keras.layers.Conv2D(width, 3, padding='same', activation='relu')(x)
    x = tf.keras.layers.MaxPooling2D()(x)
  x = tf.keras.layers.Conv2D(2 * filters, 3, padding='same', activation='relu')(x)
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
      embed(name, preprocessing.num_ids(tf_transform_output, name))
    elif feature.role == features.INTEGER:
      embed(name, preprocessing.integer_cardinality(feature))
    elif feature.role == features.NUMERIC:
      inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.float32)
      dense.append(tf.keras.layers.Reshape((1,))(inputs[name]))
      bucket = preprocessing.bucket_name(feature.name)
      embed(bucket, preprocessing.num_ids(tf_transform_output, bucket))
    elif feature.role == features.IMAGE and hparams.use_image:
      size = features.IMAGE_SIZE
      inputs[name] = tf.keras.Input(shape=(size, size, 3), name=name, dtype=tf.float32)
      image_out = _image_tower(inputs[name], hparams.image_filters)

  x0 = tf.keras.layers.Concatenate()(embedded + dense)
  cross = x0
  for _ in range(hparams.cross_layers):
    cross = CrossLayer()([x0, cross])
  deep = x0
  for units in hparams.deep_units:
    deep = tf.keras.layers.Dense(units, activation='relu')(deep)
  towers = [cross, deep] + ([image_out] if image_out is not None else [])
  hidden = tf.keras.layers.Dense(32, activation='relu')(tf.keras.layers.Concatenate()(towers))
  hidden = tf.keras.layers.Dropout(hparams.dropout)(hidden)
  logit = tf.keras.layers.Dense(1, name='logit')(hidden)
  output = Calibration(name=signatures.PREDICTION_KEY)(logit)

  model = tf.keras.Model(inputs=inputs, outputs=output)
  model.compile(
      optimizer=tf.keras.optimizers.Adam(hparams.learning_rate),
      loss=tf.keras.losses.BinaryCrossentropy(),
      metrics=[tf.keras.metrics.AUC(name='auc'),
               tf.keras.metrics.BinaryCrossentropy(name='logloss')])
  return model
