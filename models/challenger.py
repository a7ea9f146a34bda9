"""The challenger: a logistic regression on the same transformed rows as the model, trained in
every run, so that every evaluation says whether the deep model earns its cost (issue 22: on
real CTR logs a well-regularised LR was as good as the model, and nothing in a run said so).

It is one-hot logistic regression written as a Keras model: one weight per id of every
categorical and integer field and of every numeric field's quantile bucket (a one-dimensional
embedding), one weight per dense input (z-scored numeric, missing indicator), and a bias; no
image. The weights are L2-regularised as scikit-learn's LogisticRegression(C=INVERSE_L2)
would be on the same rows (models/model.py: INVERSE_L2, l2_per_row, linear_terms); the same
linear part is the model's wide part under hparams.wide.
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

from models import model as model_lib
from models import signatures

CHALLENGER_DIR = 'Challenger-Serving'  # in the Model artifact, beside Format-Serving
INFO_FILE = 'challenger.json'  # beside it: how it was trained (epochs, seconds, calibration)
NAME = 'logistic regression'  # what reports call it
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


def build_model(tf_transform_output: tft.TFTransformOutput, l2: float) -> tf.keras.Model:
  """The LR over the model's inputs (model.build_inputs, without the image), its logit layer
  named 'logit' and its output the model's Calibration layer, so trainer.calibrate fits it
  the same way."""
  inputs = model_lib.build_inputs(tf_transform_output, use_image=False)
  logit = model_lib.LinearLogit(name='logit')(model_lib.linear_terms(inputs, l2))
  output = model_lib.Calibration(name=signatures.PREDICTION_KEY)(logit)
  model = tf.keras.Model(inputs=inputs.by_name, outputs=output)
  model.compile(optimizer=tf.keras.optimizers.Adam(LEARNING_RATE),
                loss=tf.keras.losses.BinaryCrossentropy(),
                metrics=[tf.keras.metrics.BinaryCrossentropy(name='logloss')])
  return model


def callbacks() -> List[tf.keras.callbacks.Callback]:
  """Early stopping on the validation log-loss, as the model's (trainer.callbacks)."""
  return [tf.keras.callbacks.EarlyStopping(monitor='val_logloss', mode='min', min_delta=1e-4,
                                           patience=PATIENCE, restore_best_weights=True)]
