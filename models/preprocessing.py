"""preprocessing_fn for Transform, derived from models/features.py.

Everything that turns a raw field into a model input lives here, inside the TF Transform
graph, so the serving signatures apply exactly the same code (no training/serving skew):
vocabularies with OOV buckets, log/z-scaling and bucketizing, and image decode/resize/scale.
How many buckets is PreprocessingConfig (PipelineConfig.preprocessing), which Transform
passes in its custom_config; the graph records the counts in its transformed schema, where
the model reads them (num_ids), so the two cannot disagree.
"""
import dataclasses
import re
from typing import Optional

import tensorflow as tf
import tensorflow_transform as tft

from models import features


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
  """The bucket counts of the Transform graph and what its vocabularies keep.

  A CATEGORICAL value seen fewer than vocabulary_min_count times in the training rows, or
  not among the vocabulary_top_k most frequent, gets no id of its own: like a value never
  seen, it hashes into one of the field's oov_buckets (shared with the other rare values
  there), so hashed ids with a handful of rows each do not get an embedding learned from
  those rows alone. Raising them moves more values into the OOV buckets: raise oov_buckets
  with them."""
  oov_buckets: int = 2  # per vocabulary: unseen and rare values hash into these, not fail
  numeric_buckets: int = 10  # quantile buckets per numeric field (embedded beside its z-score)
  vocabulary_min_count: int = 1  # training rows a value needs for an id of its own
  vocabulary_top_k: Optional[int] = None  # the most frequent values kept; 0 or None: all

  def __post_init__(self):
    for name in ('oov_buckets', 'numeric_buckets', 'vocabulary_min_count'):
      if getattr(self, name) < 1:
        raise ValueError(f'preprocessing.{name} must be >= 1; got {getattr(self, name)}')
    if self.vocabulary_top_k is not None and self.vocabulary_top_k < 0:
      raise ValueError('preprocessing.vocabulary_top_k must be >= 0 (0 or null: no limit); '
                       f'got {self.vocabulary_top_k}')


def bucket_name(name: str) -> str:
  return features.transformed_name(name + '_bucket')


def missing_name(name: str) -> str:
  """The 0/1 float output of a field with a missing indicator (Feature.missing_indicator):
  1 where the raw value was missing (NaN) or not finite."""
  return features.transformed_name(name + '_missing')


def num_ids(tf_transform_output: tft.TFTransformOutput, name: str) -> int:
  """How many ids (0 .. n-1) the Transform graph's integer output `name` takes: a vocabulary's
  size plus its OOV buckets, a numeric field's quantile buckets, as the graph recorded them."""
  return tf_transform_output.num_buckets_for_transformed_feature(name)


def oov_buckets(tf_transform_output: tft.TFTransformOutput, feature_name: str) -> int:
  """The OOV buckets of a categorical field's vocabulary in this Transform graph (the
  vocabulary as kept: vocabulary_min_count and vocabulary_top_k applied)."""
  return (num_ids(tf_transform_output, features.transformed_name(feature_name)) -
          tf_transform_output.vocabulary_size_by_name(feature_name))


def integer_cardinality(feature: features.Feature) -> int:
  low, high = feature.value_range
  return int(high - low + 1)


def _dense(x: tf.Tensor) -> tf.Tensor:
  """Raw fields arrive as [batch, 1]; the model works on [batch]."""
  return tf.reshape(x, [-1])


# Decoding holds 15 bytes a pixel (RGB uint8, then float32), up to 10 images at a time in
# map_fn, so a tiny file whose header claims 20000 x 20000 pixels would take gigabytes. Real
# creatives are at most a few thousand pixels a side (a 2x full-screen interstitial is
# 2160 x 3840 = 8.3M): 4096 x 4096 is twice that, and costs at most 250 MB to decode.
MAX_IMAGE_PIXELS = 4096 * 4096
# giflib holds every frame of a GIF at about a byte a pixel (40 frames of 2000 x 2000 took
# 108 MB), though decode_image returns only the first: all frames together get the same
# memory as one decoded image, so long animated creatives still pass.
MAX_GIF_FRAMES_PIXELS = 15 * MAX_IMAGE_PIXELS
# The creative formats the model accepts, by the first bytes through which tf.io.decode_image
# tells them apart (tried in this order). These are exactly the formats the graph's decoder
# (tf.io.decode_image, also inside TF Serving) decodes, and models/rows.py accepts these and
# no others everywhere (ExampleGen, batch scoring, check_csv, the client): a narrower list
# would refuse animated GIF banners, common in display ads, that the served model scores
# fine; a wider one would accept files (WebP, TIFF) that the graph cannot decode.
IMAGE_MAGIC = {'JPEG': b'\xff\xd8\xff', 'PNG': b'\x89PNG\r\n\x1a\n', 'GIF': b'GIF8', 'BMP': b'BM'}
IMAGE_FORMATS = tuple(IMAGE_MAGIC)
_HEADER_BYTES = 26  # through BMP's height, the last header field read here
# Sizing a GIF walks its blocks; this bounds the walk to about 0.3 s of CPU. Real GIFs take a
# few steps a frame: 10,000 is thousands of frames, or 160 MB of image data.
_GIF_STEPS = 10_000


def _number(data: tf.Tensor, offset, size: int, big_endian: bool) -> tf.Tensor:
  """The unsigned integer at data[offset:offset + size] (uint8 bytes) as int64."""
  digits = tf.cast(tf.gather(data, offset + tf.range(size)), tf.int64)
  powers = [256 ** i for i in range(size)]
  return tf.reduce_sum(digits * tf.constant(powers[::-1] if big_endian else powers, tf.int64))


def _gif_size(data: tf.Tensor):
  """(width, height, frames' pixels) of a GIF, -1 pixels for one too long to size:
  decode_image sizes a GIF by its largest frame (not its screen), and giflib holds every
  frame's pixels at once, whatever expand_animations says. Walks the GIF's blocks to read
  each frame's descriptor."""
  data = tf.concat([data, tf.zeros([1], tf.uint8)], 0)  # reads past the end give 0: stop
  last = tf.size(data) - 1

  def byte(i):
    return tf.cast(tf.gather(data, tf.minimum(i, last)), tf.int32)

  def color_table(flags):  # its size in bytes when the flags byte says there is one
    return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(2, flags % 8), 0)

  def is_record(pos):  # a frame's descriptor or an extension; giflib stops at anything else
    return (byte(pos) == 0x2C) | (byte(pos) == 0x21)

  def sub_blocks(pos, steps):
    """Skips sub-blocks: a length byte and that many bytes, until a length 0. Encoders write
    runs of one length (255): each step skips up to 64 sub-blocks of a run."""
    def step(pos, steps):
      length = byte(pos)
      run = tf.math.cumprod(tf.cast(byte(pos + (length + 1) * tf.range(64)) == length, tf.int32))
      return pos + (length + 1) * tf.reduce_sum(run), steps + 1
    pos, steps = tf.while_loop(lambda pos, steps: (byte(pos) != 0) & (steps < _GIF_STEPS),
                               step, (pos, steps))
    return pos + 1, steps

  def record(pos, steps, width, height, pixels):
    # A frame's descriptor (10 bytes, a color table, the LZW code size) or an extension
    # (its introducer and label), then sub-blocks.
    frame = byte(pos) == 0x2C
    frame_width = tf.where(frame, _number(data, tf.minimum(pos + 5, last - 1), 2, False), 0)
    frame_height = tf.where(frame, _number(data, tf.minimum(pos + 7, last - 1), 2, False), 0)
    pos, steps = sub_blocks(
        tf.where(frame, pos + 11 + color_table(byte(pos + 9)), pos + 2), steps + 1)
    return (pos, steps, tf.maximum(width, frame_width), tf.maximum(height, frame_height),
            pixels + frame_width * frame_height)

  zero = tf.constant(0, tf.int64)
  _, steps, width, height, pixels = tf.while_loop(
      lambda pos, steps, *_: is_record(pos) & (steps < _GIF_STEPS), record,
      (13 + color_table(byte(10)), tf.constant(0), zero, zero, zero))
  return width, height, tf.where(steps < _GIF_STEPS, pixels, -1)


def _decoded_size(one: tf.Tensor):
  """(width, height, frames' pixels: a GIF's, else 0) of what tf.io.decode_image would
  decode, read from the image's header without decoding it; zeros for a file it would
  refuse anyway."""
  header = tf.io.decode_raw(
      tf.strings.substr(one, 0, _HEADER_BYTES) + b'\0' * _HEADER_BYTES, tf.uint8)[
          :_HEADER_BYTES]

  def sized(width, height):
    return width, height, tf.constant(0, tf.int64)

  def jpeg():
    shape = tf.cast(tf.image.extract_jpeg_shape(one), tf.int64)  # [height, width, channels]
    return sized(shape[1], shape[0])

  def png():  # IHDR, the first chunk: big-endian uint32 width, height
    return sized(_number(header, 16, 4, True), _number(header, 20, 4, True))

  def bmp():  # int32 width, height (negative: rows top-down), as TF's BMP decoder reads
    def int32(offset):
      value = _number(header, offset, 4, False)
      return tf.abs(tf.where(value >= 2**31, value - 2**32, value))
    return sized(int32(18), int32(22))

  def starts_with(magic):
    return tf.equal(tf.strings.substr(one, 0, len(magic)), magic)

  size_of = {'JPEG': jpeg, 'PNG': png, 'BMP': bmp,
             'GIF': lambda: _gif_size(tf.io.decode_raw(one, tf.uint8))}
  return tf.case(
      [(starts_with(magic), size_of[name]) for name, magic in IMAGE_MAGIC.items()],
      default=lambda: sized(tf.constant(0, tf.int64), tf.constant(0, tf.int64)))


def _size_verdict(one: tf.Tensor):
  """(fits, why not): whether the image's header shows it decodes to at most
  MAX_IMAGE_PIXELS, and the reason in words when it does not."""
  width, height, frames_pixels = _decoded_size(one)
  # Sides capped first: a PNG's (uint32) would overflow the product.
  area = tf.minimum(width, MAX_IMAGE_PIXELS + 1) * tf.minimum(height, MAX_IMAGE_PIXELS + 1)
  too_large = area > MAX_IMAGE_PIXELS
  fits = (frames_pixels >= 0) & ~too_large & (frames_pixels <= MAX_GIF_FRAMES_PIXELS)
  message = tf.where(
      frames_pixels < 0,
      f'image is a GIF with too many blocks to size (over {_GIF_STEPS:,} runs of blocks)',
      tf.where(too_large,
               tf.strings.format(
                   f'image is {{}} x {{}} pixels; the most accepted is {MAX_IMAGE_PIXELS:,}',
                   (width, height)),
               tf.strings.format(
                   'image is a GIF of {} x {} pixels with {} in all its frames; the most '
                   f'accepted in all frames is {MAX_GIF_FRAMES_PIXELS:,}',
                   (width, height, frames_pixels))))
  return fits, message


def _checked(one: tf.Tensor) -> tf.Tensor:
  """The image bytes, once their header shows they decode to at most MAX_IMAGE_PIXELS; else
  InvalidArgumentError (TF Serving: HTTP 400), before any decoding."""
  fits, message = _size_verdict(one)
  # Converting the message to a number fails with the message in the error. Unlike
  # tf.debugging.Assert this op is stateless, so a graph that does not use the image still
  # prunes the decoding away (the edge model's, which gets empty images).
  zero = tf.strings.to_number(tf.where(fits, '0', message), tf.int32)
  return tf.strings.substr(one, zero, tf.strings.length(one))


def _decode(one: tf.Tensor) -> tf.Tensor:
  """One image's bytes -> float32 [S, S, 3] in [0, 1], as the model sees it."""
  size = features.IMAGE_SIZE
  image = tf.io.decode_image(_checked(one), channels=3, expand_animations=False)
  image = tf.image.resize(tf.image.convert_image_dtype(image, tf.float32), [size, size])
  return tf.clip_by_value(image, 0.0, 1.0)


def decode_images(image_bytes: tf.Tensor) -> tf.Tensor:
  """JPEG/PNG/GIF/BMP bytes [batch] -> float32 [batch, S, S, 3] in [0, 1]; an image over
  MAX_IMAGE_PIXELS fails with InvalidArgumentError before it is decoded."""
  size = features.IMAGE_SIZE
  return tf.map_fn(_decode, image_bytes,
                   fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))


_ONE_IMAGE = [tf.TensorSpec([], tf.string)]
_verdict = tf.function(_size_verdict, input_signature=_ONE_IMAGE)
_decode_one = tf.function(_decode, input_signature=_ONE_IMAGE)


def decode_refusal(data: bytes) -> Optional[str]:
  """Why the graph's own decode (decode_images) refuses this image, or None: its header
  claims more than MAX_IMAGE_PIXELS (checked first, without decoding), or the decoder fails
  (corrupt pixel data, an unknown format). models/rows.image_refusal is the rule callers use."""
  try:
    fits, message = _verdict(tf.constant(data))
    if not fits:
      return message.numpy().decode()
    _decode_one(tf.constant(data))
  except tf.errors.InvalidArgumentError as e:
    # A graph's error names the op and its Python stack around the decoder's own words.
    words = e.message.split('\n\t [[')[0].strip().splitlines()[-1]
    return 'image does not decode: ' + re.sub(r'\s*\[Op:[^\]]*\]$', '', words)
  return None


def _finite(feature: features.Feature, x: tf.Tensor) -> tf.Tensor:
  """A float field with NaN and +-Inf replaced by the field's default, or by its training mean
  when it has none or a missing indicator: TF Serving in production parses them from JSON
  and has no validation of ours in front of the graph. Integer tensors cannot hold them."""
  if not x.dtype.is_floating:
    return x
  finite = tf.math.is_finite(x)
  if feature.default is not None and not feature.missing_indicator:
    stand_in = tf.cast(feature.default, x.dtype)
  else:
    stand_in = tf.cast(tft.mean(tf.boolean_mask(x, finite)), x.dtype)
  return tf.where(finite, x, stand_in)


def log_scale(value):
  """A NUMERIC field declared log_scale: sign(x) * log1p(|x|). That is log1p for the values
  >= 0 it is meant for (counts, prices); a negative value (e.g. a -1 code of a real log) keeps
  its sign and order instead of collapsing onto 0."""
  return tf.sign(value) * tf.math.log1p(tf.abs(value))


def _observed_z_score(value: tf.Tensor, observed: tf.Tensor) -> tf.Tensor:
  """tft.scale_to_z_score with the mean and variance of the observed values only: the
  stand-ins of missing ones would shrink the variance by the share missing."""
  kept = tf.boolean_mask(value, observed)
  return tf.math.divide_no_nan(value - tft.mean(kept), tf.sqrt(tft.var(kept)))


def _numeric(feature: features.Feature, raw: tf.Tensor, x: tf.Tensor,
             settings: PreprocessingConfig) -> dict:
  """A NUMERIC field's outputs: its z-score and quantile bucket; with a missing indicator,
  also the 0/1 missing input, and the statistics and quantiles of the observed values only
  (`raw` finite), whose stand-ins in `x` (the training mean) would pile onto one value."""
  value = tf.cast(x, tf.float32)
  if feature.log_scale:
    value = log_scale(value)
  out = features.transformed_name(feature.name)
  if not feature.missing_indicator:
    return {out: tft.scale_to_z_score(value),
            bucket_name(feature.name): tft.bucketize(value, settings.numeric_buckets)}
  observed = tf.math.is_finite(raw)
  return {out: _observed_z_score(value, observed),
          bucket_name(feature.name): tft.bucketize(value, settings.numeric_buckets,
                                                   weights=tf.cast(observed, tf.float32)),
          missing_name(feature.name): 1.0 - tf.cast(observed, tf.float32)}


def _vocabulary_ids(feature: features.Feature, x: tf.Tensor,
                    settings: PreprocessingConfig) -> tf.Tensor:
  """A CATEGORICAL field's ids: a value kept by the vocabulary (vocabulary_min_count,
  vocabulary_top_k) is its line in the vocabulary file named after the field; any other
  hashes into the oov_buckets after it."""
  return tft.compute_and_apply_vocabulary(
      x, num_oov_buckets=settings.oov_buckets, vocab_filename=feature.name,
      frequency_threshold=settings.vocabulary_min_count,
      top_k=settings.vocabulary_top_k or None)


def preprocessing_fn(inputs, custom_config=None):
  """Transform's entry point; custom_config: PreprocessingConfig's fields (none: defaults)."""
  settings = PreprocessingConfig(**(custom_config or {}))
  outputs = {}
  for feature in features.model_features():
    raw = _dense(inputs[feature.name])
    x = _finite(feature, raw)
    out = features.transformed_name(feature.name)
    if feature.role == features.CATEGORICAL:
      outputs[out] = _vocabulary_ids(feature, x, settings)
    elif feature.role == features.INTEGER:
      low, high = feature.value_range
      outputs[out] = tf.clip_by_value(tf.cast(x, tf.int64), int(low), int(high)) - int(low)
    elif feature.role == features.NUMERIC:
      outputs.update(_numeric(feature, raw, x, settings))
    elif feature.role == features.IMAGE:
      outputs[out] = decode_images(x)
  # The label is absent at serving; the Transform layer then simply omits this output.
  outputs[features.LABEL_KEY] = _dense(inputs[features.LABEL_KEY])
  return outputs
