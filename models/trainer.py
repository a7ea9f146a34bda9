"""run_fn for the TFX Trainer: the datasets, the fit, the calibration and the export.

Training reads the raw examples and applies the Transform graph on the fly (Transform runs
with materialize=False: materialized 32x32x3 float images would cost ~12 KB a row on disk).
The SavedModel exports the signatures of signatures.py. Where TF_CONFIG names a cluster, every
replica runs run_fn under the strategy of models/distribution.py, each on its share of the
files, and only the chief writes.
"""
import json
import os
import time
from typing import List, Optional, Tuple

from absl import logging
import numpy as np
from scipy import optimize
from scipy import special
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from models import challenger
from models import distribution
from models import features
from models import model as model_lib
from models import signatures

HPARAMS_FILE = 'hparams.json'  # beside Format-Serving in the Model artifact: what was used


# How training reads a split. ExampleGen writes it shuffled on disk, rows at random in and
# among its files (components/image_csv_example_gen/splits.py), so the Trainer streams it: the
# files in a new order every epoch, READ_FILES at a time row by row, through a shuffle buffer
# of SHUFFLE_ROWS serialized rows (a few KB each with the image), whatever the split's size.
READ_FILES = 4
SHUFFLE_ROWS = 1 << 13


def _gzip_records(path):
  return tf.data.TFRecordDataset(path, compression_type='GZIP')  # as ExampleGen writes them


def _shard_policy(file_pattern) -> tf.data.experimental.AutoShardPolicy:
  """How the replicas of a cluster share a split: by file where each can have files of its
  own (ExampleGen writes 16 a split), else by row (every replica reads all files and keeps
  its share of the batches). Without a cluster nothing is sharded."""
  patterns = [file_pattern] if isinstance(file_pattern, str) else file_pattern
  files = sum(len(tf.io.gfile.glob(pattern)) for pattern in patterns)
  policy = tf.data.experimental.AutoShardPolicy
  return policy.FILE if files >= distribution.replicas() else policy.DATA


def _dataset(file_pattern, tf_transform_output, batch_size, shuffle, image=True):
  """ExampleGen's files -> batches of (transformed features, label), streamed; without
  `shuffle` (validation) in the same order every time. Under a strategy `batch_size` is the
  global batch: Keras splits it among the replicas. Without `image` the image field is
  neither parsed nor decoded (the challenger has no image)."""
  image_field = features.image_feature()
  skipped = {image_field.name} if image_field and not image else set()
  spec = {name: value for name, value in tf_transform_output.raw_feature_spec().items()
          if name not in skipped}
  dataset = tf.data.experimental.make_batched_features_dataset(
      file_pattern, batch_size, spec, reader=_gzip_records,
      num_epochs=1, shuffle=shuffle, shuffle_buffer_size=SHUFFLE_ROWS,
      reader_num_threads=READ_FILES)
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = _shard_policy(file_pattern)
  dataset = dataset.with_options(options)
  transform_layer = tf_transform_output.transform_features_layer()

  def transform(raw):
    # The Transform layer gives a missing input an empty value; the graph traced here
    # drops the outputs of the skipped fields, and with them their decoding.
    transformed = {name: value for name, value in transform_layer(raw).items()
                   if name not in {features.transformed_name(n) for n in skipped}}
    label = transformed.pop(features.LABEL_KEY)
    return transformed, label

  return dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def count_rows(file_pattern) -> int:
  """The rows in ExampleGen's files (one pass that decompresses and parses nothing else)."""
  files = tf.data.Dataset.list_files(file_pattern, shuffle=False)
  rows = files.interleave(_gzip_records, cycle_length=READ_FILES, num_parallel_calls=READ_FILES)
  return int(rows.reduce(np.int64(0), lambda count, _: count + 1))


def _read_json(uri: str) -> Optional[dict]:
  if not uri or not tf.io.gfile.exists(uri):
    return None
  with tf.io.gfile.GFile(uri) as f:
    return json.load(f)


def _write_json(uri: str, value: dict) -> None:
  tf.io.gfile.makedirs(os.path.dirname(uri))
  with tf.io.gfile.GFile(uri, 'w') as f:
    json.dump(value, f, indent=2, sort_keys=True)


def resolve_hparams(fn_args) -> Tuple[model_lib.HParams, str]:
  """The hyperparameters to train with and where they came from, in words.

  The pipeline config gives every value; tuned values replace the ones the Tuner searched:
  this run's Tuner output if it ran (and they are then stored at `tuned_hparams_uri` for
  later runs), else what an earlier tuning run stored there.
  """
  custom = fn_args.custom_config or {}
  hparams = model_lib.HParams().replace(custom.get('hparams'))
  store = custom.get('tuned_hparams_uri')
  if fn_args.hyperparameters:
    import keras_tuner  # pylint: disable=import-outside-toplevel
    tuned = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters).values
    if store and distribution.is_chief():
      _write_json(store, {'hparams': tuned})
    return hparams.replace(tuned), ('this run\'s Tuner search' +
                                    (f', stored at {store}' if store else ''))
  stored = _read_json(store)
  if stored:
    return hparams.replace(stored['hparams']), f'an earlier Tuner search, read from {store}'
  return hparams, 'the pipeline config (no tuned values stored)'


def read_used_hparams(model_uri: str) -> Optional[dict]:
  """What a trained Model artifact was trained with (HPARAMS_FILE), for the run summary."""
  return _read_json(os.path.join(model_uri, HPARAMS_FILE))


def read_challenger_info(model_uri: str) -> Optional[dict]:
  """How a Model artifact's challenger was trained (fit_challenger), for the run summary."""
  return _read_json(os.path.join(model_uri, challenger.INFO_FILE))


# The prior on the Platt scale: normal around 1 with this standard deviation (see _fit_platt).
PLATT_SCALE_SD = 0.25


def _fit_platt(logits: np.ndarray, labels: np.ndarray,
               fit_scale: bool = True) -> Tuple[float, float]:
  """(a, b) minimising the log-loss of sigmoid(a * logit + b) plus a prior on the scale:
  (a - 1)^2 / (2 PLATT_SCALE_SD^2), by L-BFGS (plain Newton steps diverge from a = 1 when the
  logits rank backwards).

  The prior keeps calibration sound on small logs. The model is trained on the log-loss, so
  its logits start calibrated in scale (a = 1); how far the validation rows can move it
  depends on their clicks: at 50 clicks (issue 22: 314 rows, 49 clicks) the plain fit's scale
  has a standard error near 0.2 (1.09-1.39 across seeds there). The prior's weight, 16, is
  about the scale's information in 20-30 clicks at logits of spread 1, so it fades behind a
  few hundred. Simulated (300 rows, 50 clicks, 200 draws each; logits N(-1.8, 1)), it cut the
  plain fit's held-out log-loss excess over the true calibration by 37 % for a model
  calibrated in scale and by 15 % for one underconfident by 1.25, and added 6 % for one
  overconfident by 1 / 0.7; at 10,000 rows the fits were the same. The bias has no prior: a
  base rate that moved between training and validation is what calibration is for.
  A scale below zero would turn the model's ranking upside down on the strength of the
  validation rows alone; then only the bias is fitted.
  """
  def loss(params):
    scale, bias = params if fit_scale else (1.0, params[0])
    margin = scale * logits + bias
    error = special.expit(margin) - labels
    value = np.sum(np.logaddexp(0, margin) - labels * margin) + prior * (scale - 1) ** 2 / 2
    gradient = [np.sum(error * logits) + prior * (scale - 1), np.sum(error)]
    return value, np.array(gradient if fit_scale else gradient[1:])

  prior = 1 / PLATT_SCALE_SD ** 2
  fitted = optimize.minimize(loss, [1.0, 0.0] if fit_scale else [0.0], jac=True,
                             method='L-BFGS-B').x
  if not fit_scale:
    return 1.0, float(fitted[0])
  if fitted[0] <= 0:
    return _fit_platt(logits, labels, fit_scale=False)
  return float(fitted[0]), float(fitted[1])


def calibrate(model: tf.keras.Model, validation: tf.data.Dataset) -> Tuple[float, float]:
  """Fits the model's Calibration layer on the validation split (Platt scaling, its scale
  held near 1 on few clicks: _fit_platt). Under a strategy it runs outside it, on the whole
  split: on the chief only (run_fn)."""
  logit_model = tf.keras.Model(model.inputs, model.get_layer('logit').output)
  logits, labels = [], []
  for x, y in validation:
    logits.append(logit_model(x, training=False).numpy().reshape(-1))
    labels.append(y.numpy().reshape(-1))
  a, b = _fit_platt(np.concatenate(logits), np.concatenate(labels).astype(float))
  layer = model.get_layer(signatures.PREDICTION_KEY)
  layer.scale.assign(a)
  layer.bias.assign(b)
  return a, b


def steps_per_epoch(rows: int, hparams: model_lib.HParams) -> Optional[int]:
  """None (an epoch is a pass) for a training split of at most hparams.epoch_rows rows, else
  the steps of epoch_rows rows."""
  return None if rows <= hparams.epoch_rows else -(-hparams.epoch_rows // hparams.batch_size)


def datasets(fn_args, tf_transform_output, hparams: model_lib.HParams
             ) -> Tuple[tf.data.Dataset, tf.data.Dataset, Optional[int], int]:
  """(training batches, validation batches, training steps per epoch, training rows: what the
  wide part's L2 follows, model.build_model). An epoch is a pass over
  the training split or hparams.epoch_rows rows, whichever is fewer: the training budget
  (max_epochs of them; early stopping and the learning-rate cuts count them) then stops
  growing with the data. Past epoch_rows the training stream repeats without end, each pass
  over the files in a new order, and an epoch ends after its steps."""
  train = _dataset(fn_args.train_files, tf_transform_output, hparams.batch_size, shuffle=True)
  rows = count_rows(fn_args.train_files)
  steps = steps_per_epoch(rows, hparams)
  logging.info('%d training rows; an epoch is %s.', rows,
               'a pass' if steps is None else f'{steps} steps of {hparams.batch_size} rows')
  return (train if steps is None else train.repeat(),
          _dataset(fn_args.eval_files, tf_transform_output, hparams.batch_size, shuffle=False),
          steps, rows)


def fit_data(fn_args, train: tf.data.Dataset, validation: tf.data.Dataset, steps: Optional[int],
             hparams: model_lib.HParams) -> dict:
  """model.fit's data arguments. In one process, the streams of `datasets` as they are.

  Under a cluster the replicas' shares of a split differ by a batch or so (files hold
  different row counts), and Keras feeds a replica that ran dry empty batches, which the image
  tower's convolutions reject (TF 2.16 on CPU: "input depth must be evenly divisible by filter
  depth"). So there every stream repeats, and an epoch (where it is a pass) and each
  validation run are a pass's worth of global batches, ceil(rows / batch_size): a replica with
  fewer rows revisits a few of them."""
  if distribution.replicas() == 1:
    return {'x': train, 'steps_per_epoch': steps, 'validation_data': validation}

  def batches(file_pattern):
    return -(-count_rows(file_pattern) // hparams.batch_size)

  return {'x': train if steps else train.repeat(),
          'steps_per_epoch': steps or batches(fn_args.train_files),
          'validation_data': validation.repeat(),
          'validation_steps': batches(fn_args.eval_files)}


def callbacks(hparams: model_lib.HParams) -> List[tf.keras.callbacks.Callback]:
  """Early stopping, and the learning rate cut on each epoch without progress. Under a
  strategy every replica decides the same: Keras all-reduces the validation metrics, so
  each sees the log-loss of the whole validation split (tests/test_distributed_training.py)."""
  # Log-loss, not AUC: the company bids with the probabilities. Both callbacks count the same
  # progress: a gain under 1e-4 is none (else, at the floor rate, epochs of 1e-5 gains run on).
  watched = {'monitor': 'val_logloss', 'mode': 'min', 'min_delta': 1e-4}
  found = [tf.keras.callbacks.EarlyStopping(
      patience=hparams.early_stopping_patience, restore_best_weights=True, **watched)]
  if hparams.lr_decay < 1.0:
    found.append(tf.keras.callbacks.ReduceLROnPlateau(
        factor=hparams.lr_decay, patience=0, min_lr=1e-5, **watched))
  return found


def fit_challenger(fn_args, tf_transform_output, hparams: model_lib.HParams,
                   model_uri: str) -> dict:
  """Trains the challenger (models/challenger.py) on the same training rows, without the
  image, early-stopped on the validation split and calibrated like the model; exports it to
  challenger.challenger_dir(model_uri) and returns how it went (also written to INFO_FILE).
  On the chief only, outside any strategy: it is small (32 s for 70,000 training rows)."""
  started = time.time()
  rows = count_rows(fn_args.train_files)
  # An epoch as the model's: a pass, or epoch_rows rows of a stream that repeats.
  steps = (None if rows <= hparams.epoch_rows
           else -(-hparams.epoch_rows // challenger.BATCH_SIZE))
  train = _dataset(fn_args.train_files, tf_transform_output, challenger.BATCH_SIZE,
                   shuffle=True, image=False)
  validation = _dataset(fn_args.eval_files, tf_transform_output, challenger.BATCH_SIZE,
                        shuffle=False, image=False)
  model = challenger.build_model(tf_transform_output, model_lib.l2_per_row(rows))
  history = model.fit(train if steps is None else train.repeat(), steps_per_epoch=steps,
                      validation_data=validation, epochs=challenger.MAX_EPOCHS,
                      callbacks=challenger.callbacks(), verbose=0)
  scale, bias = calibrate(model, validation) if hparams.calibrate else (1.0, 0.0)
  # Only the examples signature, what the Evaluator calls: tracing the others (the Transform
  # graph with the image decoder, twice more) would double the time it takes to save.
  examples = signatures.EXAMPLES_SIGNATURE
  model.save(challenger.challenger_dir(model_uri), save_format='tf',
             signatures={examples: signatures.build(model, tf_transform_output)[examples]})
  info = {'epochs_trained': len(history.history['loss']),
          'validation_logloss': float(min(history.history['val_logloss'])),
          'l2': model_lib.l2_per_row(rows), 'calibration': {'scale': scale, 'bias': bias},
          'seconds': round(time.time() - started, 1)}
  _write_json(os.path.join(model_uri, challenger.INFO_FILE), info)
  logging.info('The challenger (%s) trained %d epochs in %.1f s.', challenger.NAME,
               info['epochs_trained'], info['seconds'])
  return info


def run_fn(fn_args: tfx.components.FnArgs):
  strategy = distribution.strategy()  # first: it configures the process's runtime
  hparams, source = resolve_hparams(fn_args)
  tf.keras.utils.set_random_seed(hparams.seed)  # the same on every replica
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  train, validation, steps, rows = datasets(fn_args, tf_transform_output, hparams)

  with strategy.scope():
    model = model_lib.build_model(tf_transform_output, hparams, rows)
  logging.info('Training up to %d epochs on %d replica(s), hparams %s (from %s)',
               hparams.max_epochs, strategy.num_replicas_in_sync, hparams, source)
  history = model.fit(epochs=hparams.max_epochs, callbacks=callbacks(hparams), verbose=2,
                      **fit_data(fn_args, train, validation, steps, hparams))
  epochs, chief = len(history.history['loss']), distribution.is_chief()
  logging.info('%s trained %d epochs.', 'The chief' if chief else 'A non-chief replica', epochs)
  scale, bias = calibrate(model, validation) if hparams.calibrate and chief else (1.0, 0.0)
  with distribution.output_dir(fn_args.serving_model_dir) as model_dir:
    model.save(model_dir, save_format='tf',
               signatures=signatures.build(model, tf_transform_output))
  if chief:
    model_uri = os.path.dirname(fn_args.serving_model_dir)
    if hparams.challenger:
      fit_challenger(fn_args, tf_transform_output, hparams, model_uri)
    _write_json(os.path.join(model_uri, HPARAMS_FILE), {
        'hparams': hparams.in_use(), 'source': source, 'epochs_trained': epochs,
        'replicas': strategy.num_replicas_in_sync,
        'calibration': {'scale': scale, 'bias': bias}})
