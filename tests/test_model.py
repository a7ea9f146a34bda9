"""The Keras model builds, trains a step, and every exported signature takes what it promises."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from models import features
from models import model as model_lib
from models import signatures
from models import trainer
from tests.conftest import to_example


def _fit_one_step(transform_dir, data, hparams):
  output = tft.TFTransformOutput(transform_dir)
  model = model_lib.build_model(output, hparams)
  x = {name: np.stack([row[name] for row in data]) for name in model.input_names}
  y = np.array([row[features.LABEL_KEY] for row in data], dtype=np.float32)
  model.fit(x, y, epochs=1, batch_size=32, verbose=0)
  return model, output


def _raw_args(rows):
  """What TF Serving decodes from {"instances": [{...}]}: one [batch] tensor per field, the
  image from {"b64": ...} as raw bytes, numbers in the signature's dtypes."""
  dtypes = {'string': tf.string, 'bytes': tf.string, 'int': tf.int64, 'float': tf.float32}
  return {f.name: tf.constant([r[f.name] for r in rows], dtype=dtypes[f.dtype])
          for f in features.serving_features()}


@pytest.fixture(scope='module')
def saved_model(transformed, tmp_path_factory):
  transform_dir, data = transformed
  model, output = _fit_one_step(transform_dir, data, model_lib.HParams())
  path = str(tmp_path_factory.mktemp('model') / 'serving_model')
  model.save(path, save_format='tf', signatures=trainer.signatures(model, output))
  return tf.saved_model.load(path)


def test_tabular_only_variant_has_no_image_input(transformed):
  transform_dir, data = transformed
  model, _ = _fit_one_step(transform_dir, data, model_lib.HParams(use_image=False))
  assert features.transformed_name('image') not in model.input_names
  assert len(model.input_names) > 5


def test_signatures_exported(saved_model):
  assert set(saved_model.signatures) == {
      signatures.SERVING_SIGNATURE, signatures.EXAMPLES_SIGNATURE, signatures.TRANSFORM_SIGNATURE}


def test_serving_default_takes_raw_json_friendly_features(saved_model, raw_rows):
  serve = saved_model.signatures[signatures.SERVING_SIGNATURE]
  rows = raw_rows[:3]
  out = serve(**_raw_args(rows))[signatures.PREDICTION_KEY].numpy()
  assert out.shape == (3,) and np.all((out > 0) & (out < 1))
  assert features.LABEL_KEY not in serve.structured_input_signature[1]


def test_serving_examples_matches_serving_default(saved_model, raw_rows):
  rows = raw_rows[:4]
  serialized = [to_example({k: v for k, v in r.items() if k != features.LABEL_KEY})
                .SerializeToString() for r in rows]
  from_examples = saved_model.signatures[signatures.EXAMPLES_SIGNATURE](
      examples=tf.constant(serialized))[signatures.PREDICTION_KEY].numpy()
  args = _raw_args(rows)
  from_raw = saved_model.signatures[signatures.SERVING_SIGNATURE](**args)[
      signatures.PREDICTION_KEY].numpy()
  np.testing.assert_allclose(from_examples, from_raw, rtol=1e-5)


def test_transform_signature_outputs_model_inputs(saved_model, raw_rows):
  serialized = [to_example(r).SerializeToString() for r in raw_rows[:2]]
  out = saved_model.signatures[signatures.TRANSFORM_SIGNATURE](examples=tf.constant(serialized))
  assert out[features.transformed_name('image')].shape == (
      2, features.IMAGE_SIZE, features.IMAGE_SIZE, 3)
  assert features.transformed_name('advertiser') in out


def test_serving_rejects_undecodable_image(saved_model, raw_rows):
  args = _raw_args(raw_rows[:1])
  args['image'] = tf.constant([b'not an image'])
  with pytest.raises(tf.errors.InvalidArgumentError):
    saved_model.signatures[signatures.SERVING_SIGNATURE](**args)


def test_hparams_from_custom_config_ignores_unknown_keys():
  hparams = model_lib.HParams.from_custom_config({'use_image': False, 'epochs': 3, 'x': 1})
  assert hparams.use_image is False and hparams.epochs == 3


@pytest.mark.parametrize('steps,epochs,expected', [(1200, 8, (8, 150)), (3, 8, (3, 1))])
def test_step_budget_split_into_epochs(steps, epochs, expected):
  assert trainer._epochs_and_steps(steps, epochs) == expected  # pylint: disable=protected-access


def test_platt_scaling_recovers_a_known_miscalibration():
  rng = np.random.default_rng(0)
  true_logit = rng.normal(-3, 1, 20000)
  labels = (rng.random(20000) < 1 / (1 + np.exp(-true_logit))).astype(float)
  # A model whose logits are twice too confident and shifted: Platt must undo both.
  a, b = trainer._fit_platt(2 * true_logit + 1, labels)  # pylint: disable=protected-access
  assert abs(a - 0.5) < 0.05 and abs(b - (-0.5)) < 0.15
  # Logits that rank backwards never get a negative scale: only the bias moves.
  a, _ = trainer._fit_platt(-true_logit, labels)  # pylint: disable=protected-access
  assert a == 1.0
