"""The challenger: a logistic regression on the transformed rows, trained by the Trainer beside
the model, exported beside the serving model and never pushed with it."""
import os
import shutil
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.pusher import executor as pusher_executor
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import path_utils

from components import evaluation_results
from components import safe_pusher
from models import challenger
from models import features
from models import model as model_lib
from models import preprocessing
from models import signatures
from models import trainer
from tests.test_model import _as_example_gen_writes, _write_shards

# The fixture rows (tests/conftest.py raw_row) are clicked when i % 4 == 0, and their hour is
# i % 24: the clicks are exactly the hours 0, 4, 8, ..., a signal one-hot LR can hold.


def test_it_is_one_weight_per_id_and_per_numeric_and_a_bias(transformed):
  output = tft.TFTransformOutput(transformed[0])
  model = challenger.build_model(output, 1e-3)
  expected = 1  # the bias
  for feature in features.model_features():
    name = features.transformed_name(feature.name)
    if feature.role == features.CATEGORICAL:
      expected += preprocessing.num_ids(output, name)
    elif feature.role == features.INTEGER:
      expected += preprocessing.integer_cardinality(feature)
    elif feature.role == features.NUMERIC:
      expected += 1 + preprocessing.num_ids(output, preprocessing.bucket_name(feature.name))
      # and its missing indicator's weight, where the graph outputs one
      expected += preprocessing.missing_name(feature.name) in output.transformed_feature_spec()
  assert model.count_params() == expected + 2  # and the Calibration layer's scale and bias
  image = features.image_feature()
  assert image is None or features.transformed_name(image.name) not in model.input_names
  # scikit-learn's C on the summed loss, as Keras' factor on the mean loss.
  assert model_lib.l2_per_row(1000) == pytest.approx(1 / (2 * model_lib.INVERSE_L2 * 1000))


@pytest.mark.slow  # ~25 s alone: loading the Transform graph, tracing, saving
def test_the_trainer_fits_it_on_the_rows_and_exports_it_beside_the_serving_model(
    transformed, raw_rows, tmp_path, monkeypatch):
  rows_dir = tmp_path / 'rows'
  rows_dir.mkdir()
  _write_shards(rows_dir, raw_rows * 4)  # 256 rows
  # A few steps an epoch for tiny data, and quick ones.
  monkeypatch.setattr(challenger, 'BATCH_SIZE', 32)
  monkeypatch.setattr(challenger, 'LEARNING_RATE', 0.1)
  output = tft.TFTransformOutput(transformed[0])
  pattern = [str(rows_dir / 'shard-*.gz')]
  model_uri = str(tmp_path / 'Model')
  tf.keras.utils.set_random_seed(0)
  info = trainer.fit_challenger(types.SimpleNamespace(train_files=pattern, eval_files=pattern),
                                output, model_lib.HParams(), model_uri)
  assert 1 <= info['epochs_trained'] <= challenger.MAX_EPOCHS
  assert trainer.read_challenger_info(model_uri) == info

  # Exported with the model's examples signature, beside Format-Serving, not inside it.
  exported = challenger.challenger_dir(model_uri)
  serving_dir = path_utils.serving_model_dir(model_uri)
  assert os.path.dirname(exported) == model_uri
  assert not exported.startswith(serving_dir + os.sep) and exported != serving_dir
  serve = tf.saved_model.load(exported).signatures[signatures.EXAMPLES_SIGNATURE]
  examples = tf.constant([_as_example_gen_writes(row).SerializeToString() for row in raw_rows])
  scores = serve(examples)[signatures.PREDICTION_KEY].numpy()
  labels = np.array([row[features.LABEL_KEY] for row in raw_rows])
  # It learned the signal: the rows of click hours rank above the others.
  assert evaluation_results.auc(labels, scores) > 0.95
  # Platt-calibrated on the validation rows, as the model is: the mean prediction is near
  # the click rate (a quarter of the rows).
  assert np.mean(scores) == pytest.approx(labels.mean(), abs=0.05)

  # The Pusher copies only the serving model: the challenger never reaches TF Serving.
  model = standard_artifacts.Model()
  model.uri = model_uri
  shutil.copytree(exported, serving_dir)  # a stand-in for the model's SavedModel
  pushed_from = pusher_executor.Executor().GetModelPath(
      {standard_component_specs.MODEL_KEY: [model]})
  assert pushed_from == serving_dir
  pushed = safe_pusher.push(pushed_from, str(tmp_path / 'serving'), '1')
  assert challenger.CHALLENGER_DIR not in [name for _, dirs, _ in os.walk(pushed) for name in dirs]
