"""run_fn for the TFX Trainer and the signatures of the exported SavedModel.

Training reads the raw examples and applies the Transform graph on the fly (Transform runs
with materialize=False: materialized 32x32x3 float images would cost ~12 KB a row on disk).
The SavedModel exports the signatures named in signatures.py.
"""
from absl import logging
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from models import features
from models import model as model_lib
from models import signatures as names

_DTYPES = {'string': tf.string, 'bytes': tf.string, 'int': tf.int64, 'float': tf.float32}


def _dataset(file_pattern, data_accessor, tf_transform_output, batch_size):
  """Raw examples -> (transformed features, label), transformed once and cached."""
  dataset = data_accessor.tf_dataset_factory(
      file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1),
      tf_transform_output.raw_metadata.schema)
  transform_layer = tf_transform_output.transform_features_layer()

  def transform(raw):
    transformed = transform_layer(raw)
    label = transformed.pop(features.LABEL_KEY)
    return transformed, label

  return dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE).cache()


def _raw_serving_fn(model, tf_transform_output):
  """serving_default: one [batch] tensor per raw field, named as in features.py."""
  model.tft_layer = tf_transform_output.transform_features_layer()
  specs = [tf.TensorSpec([None], _DTYPES[f.dtype], name=f.name)
           for f in features.serving_features()]
  model_names = {f.name for f in features.model_features()}

  @tf.function(input_signature=specs)
  def serve(*tensors):
    raw = {spec.name: tf.reshape(t, [-1, 1]) for spec, t in zip(specs, tensors)
           if spec.name in model_names}
    return {names.PREDICTION_KEY: tf.reshape(model(model.tft_layer(raw)), [-1])}

  return serve


def _examples_serving_fn(model, tf_transform_output):
  raw_spec = tf_transform_output.raw_feature_spec()
  raw_spec.pop(features.LABEL_KEY)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    raw = tf.io.parse_example(serialized, raw_spec)
    return {names.PREDICTION_KEY: tf.reshape(model(model.tft_layer(raw)), [-1])}

  return serve


def _transform_features_fn(model, tf_transform_output):
  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform(serialized):
    raw = tf.io.parse_example(serialized, tf_transform_output.raw_feature_spec())
    return model.tft_layer(raw)

  return transform


def signatures(model, tf_transform_output):
  return {
      names.SERVING_SIGNATURE: _raw_serving_fn(model, tf_transform_output),
      names.EXAMPLES_SIGNATURE: _examples_serving_fn(model, tf_transform_output),
      names.TRANSFORM_SIGNATURE: _transform_features_fn(model, tf_transform_output),
  }


def _epochs_and_steps(train_steps: int, epochs: int):
  """Splits the Trainer's step budget into epochs so early stopping can act."""
  epochs = max(1, min(epochs, train_steps))
  return epochs, max(1, train_steps // epochs)


def run_fn(fn_args: tfx.components.FnArgs):
  hparams = model_lib.HParams.from_custom_config(fn_args.custom_config)
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                   hparams.batch_size)
  validation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                        hparams.batch_size)
  epochs, steps_per_epoch = _epochs_and_steps(fn_args.train_steps, hparams.epochs)

  model = model_lib.build_model(tf_transform_output, hparams)
  early_stopping = tf.keras.callbacks.EarlyStopping(
      monitor='val_auc', mode='max', patience=hparams.early_stopping_patience,
      restore_best_weights=True)
  logging.info('Training %d epochs x %d steps, hparams %s', epochs, steps_per_epoch, hparams)
  model.fit(train.repeat(), epochs=epochs, steps_per_epoch=steps_per_epoch,
            validation_data=validation, validation_steps=fn_args.eval_steps,
            callbacks=[early_stopping], verbose=2)
  model.save(fn_args.serving_model_dir, save_format='tf',
             signatures=signatures(model, tf_transform_output))
