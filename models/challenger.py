"""The challenger: a logistic regression on the same transformed rows as the model, trained in
every run, so that every evaluation says whether the deep model earns its cost (issue 22: on
real CTR logs a well-regularised LR was as good as the model, and nothing in a run said so).

It is one-hot logistic regression written as a Keras model: one weight per id of every
categorical and integer field and of every numeric field's quantile bucket (a one-dimensional
embedding), one weight per z-scored numeric, and a bias; no image. The weights are L2-
regularised as scikit-learn's LogisticRegression(C=INVERSE_L2) would be on the same rows.
The Trainer (models/trainer.py) fits it on the same streaming training split, early-stopped on
the validation log-loss and Platt-calibrated on the validation split like the model, and
exports it with the model's examples signature (models/signatures.py) beside Format-Serving, at
CHALLENGER_DIR: the Pusher copies only Format-Serving, so TF Serving never sees it; the
Evaluator (components/gated_evaluator.py) scores it on the eval split beside the model.
"""
import os
from typing import List

import tensorflow as tf
import tensorflow_transform as tft

from models import features
from models import model as model_lib
from models import preprocessing
from models import signatures

CHALLENGER_DIR = 'Challenger-Serving'  # in the Model artifact, beside Format-Serving
INFO_FILE = 'challenger.json'  # beside it: how it was trained (epochs, seconds, calibration)
NAME = 'logistic regression'  # what reports call it
# scikit-learn's C (inverse L2 strength per row of the summed loss), as the LR of issue 22's
# Criteo comparison used; Keras adds the penalty to the mean loss, hence l2_per_row below.
INVERSE_L2 = 0.1
# Training: a convex problem on a few thousand weights. On the tiny e2e data (6,799 rows)
# early stopping ended it after 11-14 epochs, and these gave a better eval AUC than larger
# rates with less patience; an epoch reads no image and is at most epoch_rows rows.
BATCH_SIZE = 256
LEARNING_RATE = 0.02
MAX_EPOCHS = 20
PATIENCE = 2


def challenger_dir(model_uri: str) -> str:
  """Where a Model artifact holds its challenger's SavedModel."""
  return os.path.join(model_uri, CHALLENGER_DIR)


def l2_per_row(rows: int) -> float:
  """Keras' L2 factor (added to the mean loss) equal to scikit-learn's 1 / (2 C) penalty on
  the summed loss of `rows` rows."""
  return 1.0 / (2.0 * INVERSE_L2 * max(rows, 1))


class LinearLogit(tf.keras.layers.Layer):
  """The sum of the per-field terms plus a bias (not regularised, as scikit-learn's)."""

  def build(self, input_shape):
    self.bias = self.add_weight(name='bias', shape=(1,), initializer='zeros')
    super().build(input_shape)

  def call(self, terms):
    return tf.add_n(terms) + self.bias


def build_model(tf_transform_output: tft.TFTransformOutput, l2: float) -> tf.keras.Model:
  """The LR over the Transform graph's outputs, its logit layer named 'logit' and its output
  the model's Calibration layer, so trainer.calibrate fits it the same way."""
  regularizer = tf.keras.regularizers.L2(l2)
  inputs, terms, numeric = {}, [], []

  def one_hot(name, ids):
    inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.int64)
    terms.append(tf.keras.layers.Embedding(
        ids, 1, embeddings_initializer='zeros', embeddings_regularizer=regularizer,
        name=f'weights_{name}')(inputs[name]))

  for feature in features.model_features():
    name = features.transformed_name(feature.name)
    if feature.role == features.CATEGORICAL:
      one_hot(name, preprocessing.num_ids(tf_transform_output, name))
    elif feature.role == features.INTEGER:
      one_hot(name, preprocessing.integer_cardinality(feature))
    elif feature.role == features.NUMERIC:
      inputs[name] = tf.keras.Input(shape=(), name=name, dtype=tf.float32)
      numeric.append(tf.keras.layers.Reshape((1,))(inputs[name]))
      bucket = preprocessing.bucket_name(feature.name)
      one_hot(bucket, preprocessing.num_ids(tf_transform_output, bucket))
  if numeric:
    values = numeric[0] if len(numeric) == 1 else tf.keras.layers.Concatenate()(numeric)
    terms.append(tf.keras.layers.Dense(1, use_bias=False, kernel_initializer='zeros',
                                       kernel_regularizer=regularizer,
                                       name='weights_numeric')(values))
  logit = LinearLogit(name='logit')(terms)
  output = model_lib.Calibration(name=signatures.PREDICTION_KEY)(logit)
  model = tf.keras.Model(inputs=inputs, outputs=output)
  model.compile(optimizer=tf.keras.optimizers.Adam(LEARNING_RATE),
                loss=tf.keras.losses.BinaryCrossentropy(),
                metrics=[tf.keras.metrics.BinaryCrossentropy(name='logloss')])
  return model


def callbacks() -> List[tf.keras.callbacks.Callback]:
  """Early stopping on the validation log-loss, as the model's (trainer.callbacks)."""
  return [tf.keras.callbacks.EarlyStopping(monitor='val_logloss', mode='min', min_delta=1e-4,
                                           patience=PATIENCE, restore_best_weights=True)]
