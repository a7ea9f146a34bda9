"""preprocessing_fn for Transform, derived from models/features.py.

Everything that turns a raw field into a model input lives here, inside the TF Transform
graph, so the serving signatures apply exactly the same code (no training/serving skew):
vocabularies with OOV buckets, log/z-scaling and bucketizing, and image decode/resize/scale.
"""
import tensorflow as tf
import tensorflow_transform as tft

from models import features

OOV_BUCKETS = 2  # unseen advertisers etc. hash into these instead of failing
NUMERIC_BUCKETS = 10  # quantile buckets for numeric fields (embedded next to the z-score)


def bucket_name(name: str) -> str:
  return features.transformed_name(name + '_bucket')


def integer_cardinality(feature: features.Feature) -> int:
  low, high = feature.value_range
  return int(high - low + 1)


def _dense(x: tf.Tensor) -> tf.Tensor:
  """Raw fields arrive as [batch, 1]; the model works on [batch]."""
  return tf.reshape(x, [-1])


def decode_images(image_bytes: tf.Tensor) -> tf.Tensor:
  """PNG/JPEG bytes [batch] -> float32 [batch, S, S, 3] in [0, 1]."""
  size = features.IMAGE_SIZE

  def decode(one):
    image = tf.io.decode_image(one, channels=3, expand_animations=False)
    image = tf.image.resize(tf.image.convert_image_dtype(image, tf.float32), [size, size])
    return tf.clip_by_value(image, 0.0, 1.0)

  return tf.map_fn(decode, image_bytes,
                   fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


def preprocessing_fn(inputs):
  outputs = {}
  for feature in features.model_features():
    x = _dense(inputs[feature.name])
    out = features.transformed_name(feature.name)
    if feature.role == features.CATEGORICAL:
      outputs[out] = tft.compute_and_apply_vocabulary(
          x, num_oov_buckets=OOV_BUCKETS, vocab_filename=feature.name)
    elif feature.role == features.INTEGER:
      low, high = feature.value_range
      outputs[out] = tf.clip_by_value(tf.cast(x, tf.int64), int(low), int(high)) - int(low)
    elif feature.role == features.NUMERIC:
      value = tf.cast(x, tf.float32)
      if feature.log_scale:
        value = tf.math.log1p(tf.maximum(value, 0.0))
      outputs[out] = tft.scale_to_z_score(value)
      outputs[bucket_name(feature.name)] = tft.bucketize(value, NUMERIC_BUCKETS)
    elif feature.role == features.IMAGE:
      outputs[out] = decode_images(x)
  # The label is absent at serving; the Transform layer then simply omits this output.
  outputs[features.LABEL_KEY] = _dense(inputs[features.LABEL_KEY])
  return outputs
