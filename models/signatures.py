"""The exported SavedModel's interface: its signature names, its output, and the functions
the Trainer exports under those names.

  serving_default     raw JSON-friendly features (strings, numbers, image bytes) -> probability;
                      what the TF Serving REST API and the internal client call.
  serving_examples    serialized tf.Example -> probability; what TFMA (Evaluator) calls.
  transform_features  serialized tf.Example -> transformed features (TFMA preprocessing).

The names import nothing, so the serving client, capture and the benchmarks can name them
without loading TensorFlow or TFX; `build` (the Trainer, tests) imports TensorFlow when called.
"""
from models import features

PREDICTION_KEY = 'click_probability'
SERVING_SIGNATURE = 'serving_default'
EXAMPLES_SIGNATURE = 'serving_examples'
TRANSFORM_SIGNATURE = 'transform_features'


def build(model, tf_transform_output) -> dict:
  """The signature functions to save `model` with, by name; each applies the Transform graph
  of `tf_transform_output` to raw inputs, so serving and training share one preprocessing."""
  model.tft_layer = tf_transform_output.transform_features_layer()
  return {
      SERVING_SIGNATURE: _raw_serving_fn(model),
      EXAMPLES_SIGNATURE: _examples_serving_fn(model, tf_transform_output),
      TRANSFORM_SIGNATURE: _transform_features_fn(model, tf_transform_output),
  }


def _raw_serving_fn(model):
  """serving_default: one [batch] tensor per raw field, named as in features.py."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  specs = [tf.TensorSpec([None], features.tf_dtype(f), name=f.name)
           for f in features.serving_features()]
  model_names = {f.name for f in features.model_features()}

  @tf.function(input_signature=specs)
  def serve(*tensors):
    raw = {spec.name: tf.reshape(t, [-1, 1]) for spec, t in zip(specs, tensors)
           if spec.name in model_names}
    return {PREDICTION_KEY: tf.reshape(model(model.tft_layer(raw)), [-1])}

  return serve


def _raw_spec(tf_transform_output, *drop_roles):
  """The raw feature spec without ExampleGen's derived fields (callers' examples may lack
  them) and without the fields of `drop_roles`."""
  roles = (features.DERIVED,) + drop_roles
  dropped = {f.name for f in features.example_features() if f.role in roles}
  return {name: spec for name, spec in tf_transform_output.raw_feature_spec().items()
          if name not in dropped}


def _examples_serving_fn(model, tf_transform_output):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  raw_spec = _raw_spec(tf_transform_output, features.LABEL)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(serialized):
    raw = tf.io.parse_example(serialized, raw_spec)
    return {PREDICTION_KEY: tf.reshape(model(model.tft_layer(raw)), [-1])}

  return serve


def _transform_features_fn(model, tf_transform_output):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def transform(serialized):
    raw = tf.io.parse_example(serialized, _raw_spec(tf_transform_output))
    return model.tft_layer(raw)

  return transform
