"""The click model: a DCN-v2 style tabular part plus a small CNN over the creative, and with
hparams.wide a linear part beside them (wide & deep).

Inputs are the transformed features of models/preprocessing.py; their names and sizes are
derived from models/features.py and the Transform vocabularies (build_inputs, which the
challenger, models/challenger.py, shares, as it shares the linear part: linear_terms).
"""
import dataclasses
from typing import Dict, List, Optional

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
  # L2 factor on every embedding weight of the deep part (added to the mean log-loss); 0 is
  # none. Real logs have many rare ids (issue 22: four Criteo fields are over 80 %
  # singletons), each an embedding that a few rows would otherwise fit freely.
  embedding_l2: float = 0.0
  # Wide & deep: add the challenger's linear logit (one weight per id, one per dense input,
  # L2-regularised as the challenger: l2_per_row) to the deep part's. Off by default: the
  # generated sample's figures are the deep model's; on real logs a plain LR was as good as
  # the deep model (issue 22), and benchmarks/real_logs.py measures whether this closes it.
  wide: bool = False
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
    """A copy with the known fields of `values` (e.g. tuned ones) set: JSON lists as tuples,
    and booleans as booleans (KerasTuner's Choice keeps [False, True] as [0, 1])."""
    types = {f.name: f.type for f in dataclasses.fields(self)}

    def typed(name, value):
      if isinstance(value, list):
        return tuple(value)
      return bool(value) if types[name] is bool else value

    return dataclasses.replace(self, **{name: typed(name, value)
                                        for name, value in (values or {}).items()
                                        if name in types})


IMAGE_HPARAMS = ('use_image', 'image_filters')  # the HParams of the image tower


def _default_search_space() -> Dict[str, list]:
  return {'learning_rate': [0.0005, 0.001, 0.002, 0.004], 'embedding_dim': [4, 8, 16],
          'image_filters': [8, 16, 24], 'dropout': [0.0, 0.1, 0.3], 'wide': [False, True]}


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


# The linear part's L2 (the challenger's and the wide part's): scikit-learn's C, the inverse
# strength per row of the summed loss, as the LR of issue 22's Criteo comparison used; Keras
# adds the penalty to the mean loss, hence l2_per_row.
INVERSE_L2 = 0.1


def l2_per_row(rows: int) -> float:
  """Keras' L2 factor (added to the mean loss) equal to scikit-learn's 1 / (2 C) penalty on
  the summed loss of `rows` rows: it weakens as the training rows grow."""
  return 1.0 / (2.0 * INVERSE_L2 * max(rows, 1))


@dataclasses.dataclass(frozen=True)
class Inputs:
  """The model's Keras inputs, one per Transform output that features.model_features() gives
  the model, sorted by what each model does with them: the model, the challenger and the wide
  part all read them from here."""
  by_name: Dict[str, tf.Tensor]  # every tf.keras.Input, by its Transform output's name
  ids: Dict[str, int]  # the int64 id inputs [batch] -> their ids (0 .. n-1), from the graph
  dense: Optional[tf.Tensor]  # the float inputs side by side, [batch, k]; None if k is 0
  image: Optional[tf.Tensor]  # [batch, S, S, 3]; None without an image field or if not used


def build_inputs(tf_transform_output: tft.TFTransformOutput, use_image: bool) -> Inputs:
  """Categorical and integer fields and numeric fields' quantile buckets are ids; numeric
  z-scores and the missing indicators the Transform graph outputs (preprocessing.missing_name)
  are dense floats; the image is the decoded creative."""
  by_name, ids, dense, image = {}, {}, [], None
  transformed = tf_transform_output.transformed_feature_spec()

  def add(name, dtype, shape=()):
    by_name[name] = tf.keras.Input(shape=shape, name=name, dtype=dtype)
    return by_name[name]

  for feature in features.model_features():
    name = features.transformed_name(feature.name)
    if feature.role == features.CATEGORICAL:
      add(name, tf.int64)
      ids[name] = preprocessing.num_ids(tf_transform_output, name)
    elif feature.role == features.INTEGER:
      add(name, tf.int64)
      ids[name] = preprocessing.integer_cardinality(feature)
    elif feature.role == features.NUMERIC:
      dense.append(add(name, tf.float32))
      bucket = preprocessing.bucket_name(feature.name)
      add(bucket, tf.int64)
      ids[bucket] = preprocessing.num_ids(tf_transform_output, bucket)
      missing = preprocessing.missing_name(feature.name)
      if missing in transformed:
        dense.append(add(missing, tf.float32))
    elif feature.role == features.IMAGE and use_image:
      size = features.IMAGE_SIZE
      image = add(name, tf.float32, (size, size, 3))
  columns = [tf.keras.layers.Reshape((1,))(x) for x in dense]
  if len(columns) > 1:
    columns = [tf.keras.layers.Concatenate()(columns)]
  return Inputs(by_name, ids, columns[0] if columns else None, image)


class LinearLogit(tf.keras.layers.Layer):
  """The sum of its terms plus a bias (not regularised, as scikit-learn's)."""

  def build(self, input_shape):
    self.bias = self.add_weight(name='bias', shape=(1,), initializer='zeros')
    super().build(input_shape)

  def call(self, terms):
    return tf.add_n(terms) + self.bias


def linear_terms(inputs: Inputs, l2: float) -> List[tf.Tensor]:
  """One-hot logistic regression's terms, each [batch, 1]: one weight per id of every id input
  (a one-dimensional embedding) and one per dense input, all L2-regularised by `l2` (Keras'
  factor on the mean loss, l2_per_row); no image. LinearLogit sums them."""
  regularizer = tf.keras.regularizers.L2(l2)
  terms = [tf.keras.layers.Embedding(
      count, 1, embeddings_initializer='zeros', embeddings_regularizer=regularizer,
      name=f'weights_{name}')(inputs.by_name[name]) for name, count in inputs.ids.items()]
  if inputs.dense is not None:
    terms.append(tf.keras.layers.Dense(1, use_bias=False, kernel_initializer='zeros',
                                       kernel_regularizer=regularizer,
                                       name='weights_dense')(inputs.dense))
  return terms


def build_model(tf_transform_output: tft.TFTransformOutput, hparams: HParams,
                train_rows: Optional[int] = None) -> tf.keras.Model:
  """The model over the Transform graph's outputs; its logit layer is named 'logit' (what
  trainer.calibrate fits). `train_rows`, the training split's rows, sets the wide part's L2
  (l2_per_row): needed when hparams.wide."""
  if hparams.wide and train_rows is None:
    raise ValueError('hparams.wide: the wide part\'s L2 follows the training rows; '
                     'build_model needs train_rows')
  inputs = build_inputs(tf_transform_output, hparams.use_image)
  regularizer = tf.keras.regularizers.L2(hparams.embedding_l2) if hparams.embedding_l2 else None
  embedded = [tf.keras.layers.Embedding(count, hparams.embedding_dim,
                                        embeddings_regularizer=regularizer)(inputs.by_name[name])
              for name, count in inputs.ids.items()]
  x0 = tf.keras.layers.Concatenate()(
      embedded + ([inputs.dense] if inputs.dense is not None else []))
  # The image tower is made before the cross and deep layers (the image is the last field):
  # a seed draws the initial weights that the published figures of docs/model.md had.
  image = None if inputs.image is None else _image_tower(inputs.image, hparams.image_filters)
  cross = x0
  for _ in range(hparams.cross_layers):
    cross = CrossLayer()([x0, cross])
  deep = x0
  for units in hparams.deep_units:
    deep = tf.keras.layers.Dense(units, activation='relu')(deep)
  towers = [cross, deep] + ([image] if image is not None else [])
  hidden = tf.keras.layers.Dense(32, activation='relu')(tf.keras.layers.Concatenate()(towers))
  hidden = tf.keras.layers.Dropout(hparams.dropout)(hidden)
  if hparams.wide:
    deep_logit = tf.keras.layers.Dense(1, use_bias=False, name='deep_logit')(hidden)
    logit = LinearLogit(name='logit')(
        linear_terms(inputs, l2_per_row(train_rows)) + [deep_logit])
  else:
    logit = tf.keras.layers.Dense(1, name='logit')(hidden)
  output = Calibration(name=signatures.PREDICTION_KEY)(logit)

  model = tf.keras.Model(inputs=inputs.by_name, outputs=output)
  model.compile(
      optimizer=tf.keras.optimizers.Adam(hparams.learning_rate),
      loss=tf.keras.losses.BinaryCrossentropy(),
      metrics=[tf.keras.metrics.AUC(name='auc'),
               tf.keras.metrics.BinaryCrossentropy(name='logloss')])
  return model
