"""The edge (TFLite) model: what EdgeExport writes, and TFLite vs SavedModel on 1,000 rows."""
import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.types import standard_artifacts

from components import edge_export
from datagen import generate
from models import data_layout
from models import edge_model
from models import features
from models import preprocessing
from models import rows as row_rules
from models import serving_layout
from models import signatures
from models import storage
from pipeline.pipeline import create_pipeline
from tests import fake_models
from tests.conftest import needs_image

pytestmark = pytest.mark.sample_fields
VERSION = '1767225600'
GENERATED_ROWS = 1000
# Calibration far from the identity, so that a wrong input moves the probabilities visibly.
SCALE, BIAS = 4.0, -1.0


@pytest.fixture(scope='module')
def model_dir(transformed, tmp_path_factory):
  """The adclick model as the Trainer exports it, untrained, with a steep calibration."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from models import model as model_lib  # pylint: disable=g-import-not-at-top
  output = tft.TFTransformOutput(transformed[0])
  model = model_lib.build_model(output, model_lib.HParams())
  calibration = model.get_layer(signatures.PREDICTION_KEY)
  calibration.scale.assign(SCALE)
  calibration.bias.assign(BIAS)
  path = str(tmp_path_factory.mktemp('edge_model') / 'model')
  model.save(path, save_format='tf', signatures=signatures.build(model, output))
  return path


@pytest.fixture(scope='module')
def bundle(model_dir, transformed, tmp_path_factory):
  """EdgeExport run as the pipeline runs it, after a push of version VERSION."""
  root = str(tmp_path_factory.mktemp('serving'))
  pushed = standard_artifacts.PushedModel()
  pushed.uri = model_dir  # SafePusher keeps a copy of the pushed model there
  pushed.set_int_custom_property('pushed', 1)
  pushed.set_string_custom_property('pushed_version', VERSION)
  graph = standard_artifacts.TransformGraph()
  graph.uri = transformed[0]
  edge_root = edge_model.edge_root(serving_layout.model_root(root))
  _run_export(pushed, graph, edge_root)
  return root, f'{edge_root}/{VERSION}'



@pytest.fixture(scope='module')
def generated_rows(tmp_path_factory):
  """1,000 rows of the sample generator, parsed as ExampleGen parses them."""
  root = str(tmp_path_factory.mktemp('data'))
  generate.generate_span(root, 1, GENERATED_ROWS)
  span_dir = data_layout.span_dir(root, 1)
  rows = []
  with open(data_layout.ads_csv(root, 1), newline='') as f:
    for cells in csv.DictReader(f):
      row = {}
      for feature in features.serving_features():
        if feature.role == features.IMAGE:
          with open(os.path.join(span_dir, cells[features.IMAGE_PATH_COLUMN]), 'rb') as image:
            row[feature.name] = image.read()
        else:
          row[feature.name], error = row_rules.parse_cell(feature, cells[feature.name])
          assert error is None
      rows.append(row)
  return rows


def _run_export(pushed, graph, edge_root) -> None:
  """EdgeExport's executor, as an orchestrator runs it."""
  edge_export.EdgeExport.EXECUTOR_SPEC.executor_class().Do(
      {'pushed_model': [pushed], 'transform_graph': [graph]}, {}, {'edge_root': edge_root})


def _tflite(path, inputs):
  return edge_model.predict(tf.lite.Interpreter(model_path=path), inputs)


@pytest.mark.slow
def test_bundle_is_beside_the_model_base_path_under_the_pushed_version(bundle, transformed):
  root, path = bundle
  # Only <model>-edge/<version> beside TF Serving's (untouched) folder; no staging copy left.
  assert os.listdir(root) == [f'{serving_layout.MODEL_NAME}-edge']
  assert os.listdir(os.path.join(root, f'{serving_layout.MODEL_NAME}-edge')) == [VERSION]
  # Published like a served version: its manifest (every file, size, SHA-256) written last.
  assert sorted(os.listdir(path)) == sorted(
      [edge_model.INPUTS_FILE, edge_model.TFLITE_FILE, edge_model.VOCAB_DIR, storage.MANIFEST])
  described = json.load(open(os.path.join(path, edge_model.INPUTS_FILE)))
  names = {spec['name'] for spec in described['inputs']}
  graph = tft.TFTransformOutput(transformed[0])
  assert described['oov_buckets'] == {  # as the Transform graph used them, field by field
      f.name: preprocessing.oov_buckets(graph, f.name)
      for f in features.with_role(features.CATEGORICAL)}
  details = tf.lite.Interpreter(model_path=os.path.join(path, edge_model.TFLITE_FILE)
                                ).get_input_details()
  assert names == {d['name'] for d in details}
  assert sorted(os.listdir(os.path.join(path, edge_model.VOCAB_DIR))) == sorted(
      f'{f.name}.txt' for f in features.with_role(features.CATEGORICAL))


@pytest.mark.slow
def test_nothing_is_exported_when_nothing_was_pushed(transformed, tmp_path):
  pushed = standard_artifacts.PushedModel()
  pushed.set_int_custom_property('pushed', 0)
  graph = standard_artifacts.TransformGraph()
  graph.uri = transformed[0]
  _run_export(pushed, graph, str(tmp_path / 'edge'))
  assert not os.path.exists(tmp_path / 'edge')


@pytest.mark.slow
@needs_image
def test_tflite_matches_the_saved_model_on_1000_generated_rows(bundle, model_dir,
                                                               generated_rows):
  _, path = bundle
  vocabularies = edge_model.read_vocabularies(path)
  inputs = edge_model.encode(generated_rows, vocabularies)
  expected = fake_models.serving_predictions(model_dir, generated_rows)
  got = _tflite(os.path.join(path, edge_model.TFLITE_FILE), inputs)
  assert got.shape == (GENERATED_ROWS,)
  assert np.abs(got - expected).max() <= 1e-3
  # The rows exercise the out-of-vocabulary ids (the fixture vocabulary is tiny) ...
  advertiser = features.BY_NAME['advertiser']
  assert (inputs[edge_model.input_name(advertiser)] >=
          len(vocabularies['advertiser'].values)).any()
  # ... and the comparison would see a wrong input: here, images given to the wrong rows.
  image = features.image_feature().name
  shuffled = dict(inputs, **{image: inputs[image][::-1]})
  assert np.abs(_tflite(os.path.join(path, edge_model.TFLITE_FILE), shuffled) -
                expected).max() > 0.01


def test_pipeline_exports_what_it_pushes_beside_the_model_base_path():
  pipeline = create_pipeline('/tmp/root', '/tmp/data', '/srv/serving')
  export = next(c for c in pipeline.components if isinstance(c, edge_export.EdgeExport))
  pusher = next(c for c in pipeline.components if c.id == 'SafePusher')
  assert export.inputs['pushed_model'] is pusher.outputs['pushed_model']
  assert export.exec_properties['edge_root'] == '/srv/serving/adclick-edge'


def test_an_unseen_value_hashes_into_the_recorded_oov_buckets_as_transform_does():
  vocabulary = edge_model.Vocabulary(['adv_001', 'adv_002'], oov_buckets=3)
  index = {value: i for i, value in enumerate(vocabulary.values)}
  unseen = [f'adv_{i:03d}' for i in range(100, 140)]
  got = [vocabulary.id_of(value, index) for value in unseen]
  # Transform's lookup: vocabulary size + tf.strings.to_hash_bucket_fast(value, oov_buckets).
  expected = 2 + tf.strings.to_hash_bucket_fast(unseen, 3).numpy()
  assert got == expected.tolist() and set(got) == {2, 3, 4}
  assert vocabulary.id_of('adv_002', index) == 1
