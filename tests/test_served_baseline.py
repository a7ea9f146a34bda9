"""The baseline is the served model: version selection, the copy, and the gate built on it."""
import os

import pytest
from tfx.components.evaluator import constants as evaluator_constants
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from components import evaluation_report
from components import served_baseline
from models import storage
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from tests import evaluator_inputs
from tests import fake_models
from tests import gcs_emulator


def _write_version(model_root, version, complete=True):
  """A version directory as SafePusher publishes it (complete, with its manifest) or while a
  copy is under way (not)."""
  version_dir = os.path.join(model_root, str(version))
  os.makedirs(os.path.join(version_dir, 'variables'), exist_ok=True)
  with open(os.path.join(version_dir, 'saved_model.pb'), 'wb') as f:
    f.write(b'')  # a SavedModel that names no asset
  if complete:
    for name in ('variables.index', 'variables.data-00000-of-00001'):
      with open(os.path.join(version_dir, 'variables', name), 'wb') as f:
        f.write(f'{name} {version}'.encode())
    storage.write_manifest(version_dir)
  return version_dir


def test_no_served_model(tmp_path):
  assert storage.latest_whole_version(str(tmp_path / 'missing')) is None
  (tmp_path / 'adclick').mkdir()
  assert storage.latest_whole_version(str(tmp_path / 'adclick')) is None


def test_one_served_model(tmp_path):
  _write_version(str(tmp_path), 1700000000)
  assert storage.latest_whole_version(str(tmp_path)) == 1700000000


def test_newest_of_several_versions_by_number(tmp_path):
  for version in (9, 10, 2):
    _write_version(str(tmp_path), version)
  os.makedirs(tmp_path / 'not-a-version')
  _write_version(str(tmp_path), '11.partial')  # not an integer name: TF Serving ignores it
  assert storage.latest_whole_version(str(tmp_path)) == 10


def test_incomplete_newest_version_is_skipped(tmp_path):
  _write_version(str(tmp_path), 100)
  _write_version(str(tmp_path), 200, complete=False)  # the Pusher is still copying
  assert not storage.is_whole(str(tmp_path / '200'))
  assert storage.latest_whole_version(str(tmp_path)) == 100


def test_version_missing_a_variables_shard_is_skipped(tmp_path):
  version_dir = _write_version(str(tmp_path), 300)
  os.rename(os.path.join(version_dir, 'variables', 'variables.data-00000-of-00001'),
            os.path.join(version_dir, 'variables', 'variables.data-00000-of-00002'))
  _write_version(str(tmp_path), 100)
  assert 'variables shards missing (1 of 2)' in storage.check(version_dir).problem
  assert storage.latest_whole_version(str(tmp_path)) == 100


def _run_baseline_component(model_root, output_uri):
  model = standard_artifacts.Model()
  model.uri = str(output_uri)
  executor = served_baseline.ServedModelBaseline.EXECUTOR_SPEC.executor_class()
  executor.Do({}, {'model': [model]}, {'model_root': str(model_root)})
  return model


def test_a_version_missing_a_file_of_its_manifest_is_not_the_baseline(tmp_path):
  model_root = tmp_path / 'serving' / 'adclick'
  _write_version(str(model_root), 5)
  os.makedirs(model_root / '6' / 'assets')
  (model_root / '6' / 'assets' / 'vocab.txt').write_text('food\ntravel\n')
  _write_version(str(model_root), 6)
  os.remove(model_root / '6' / 'assets' / 'vocab.txt')  # a copy that lost its assets
  model = _run_baseline_component(model_root, tmp_path / 'baseline')
  assert model.get_int_custom_property(served_baseline.SERVED_VERSION_PROPERTY) == 5


def test_component_copies_the_served_version(tmp_path):
  model_root = tmp_path / 'serving' / 'adclick'
  _write_version(str(model_root), 5)
  source = _write_version(str(model_root), 6)
  _write_version(str(model_root), 7, complete=False)

  model = _run_baseline_component(model_root, tmp_path / 'baseline')

  copied = path_utils.serving_model_dir(model.uri)
  for name in ('saved_model.pb', 'variables/variables.index',
               'variables/variables.data-00000-of-00001'):
    with open(os.path.join(copied, name), 'rb') as a, open(os.path.join(source, name),
                                                           'rb') as b:
      assert a.read() == b.read()
  assert served_baseline.has_model(model)
  assert model.get_int_custom_property(served_baseline.SERVED_VERSION_PROPERTY) == 6
  assert model.get_string_custom_property(served_baseline.SERVED_PATH_PROPERTY) == source


def test_served_model_on_gcs(tmp_path):
  """The serving root on gs:// (a real GCS emulator); the baseline copy on local disk."""
  local_root = tmp_path / 'serving' / 'adclick'
  _write_version(str(local_root), 10)
  _write_version(str(local_root), 11)
  _write_version(str(local_root), 12, complete=False)
  with gcs_emulator.running('serving-test') as bucket:
    gcs_emulator.upload_tree(bucket, str(tmp_path / 'serving'), 'models')
    model_root = 'gs://serving-test/models/adclick'
    assert storage.version_numbers(model_root) == [10, 11, 12]
    assert storage.latest_whole_version(model_root) == 11
    model = _run_baseline_component(model_root, tmp_path / 'baseline')
  assert model.get_string_custom_property(served_baseline.SERVED_PATH_PROPERTY) == (
      f'{model_root}/11')
  with open(os.path.join(path_utils.serving_model_dir(model.uri), 'variables',
                         'variables.index'), 'rb') as f:
    assert f.read() == b'variables.index 11'


def test_component_leaves_the_baseline_empty_when_nothing_is_served(tmp_path):
  model = _run_baseline_component(tmp_path / 'serving' / 'adclick', tmp_path / 'baseline')
  assert not served_baseline.has_model(model)
  assert not model.has_custom_property(served_baseline.SERVED_VERSION_PROPERTY)


# The gate: one mediocre candidate (a constant prediction, AUC 0.5) with an AUC floor it
# clears. Without a served model it is blessed; against a better served model it is not.
GATE = config_lib.GateConfig(auc_floor=0.4, auc_tolerance=0.01, logloss_tolerance=0.01)
MODEL_ID, BASELINE_ID = 7, 9  # their ids in MLMD


def _evaluate(tmp_path, served):
  """Runs the Evaluator on a constant model; returns (blessed, its report, the blessing)."""
  baseline = evaluator_inputs.model_artifact(tmp_path / 'baseline', served, BASELINE_ID)
  if served:
    evaluator_inputs.served(baseline)
  model = evaluator_inputs.model_artifact(tmp_path / 'model', fake_models.save_constant,
                                          MODEL_ID)
  evaluated = evaluator_inputs.evaluate(
      tmp_path, model, baseline, pipeline_lib.eval_config(config_lib.PipelineConfig(gate=GATE)),
      GATE)
  with open(os.path.join(evaluated.evaluation.uri, evaluation_report.REPORT_FILE)) as f:
    report = f.read()
  return evaluated.blessed, report, evaluated.blessing


@pytest.mark.slow
def test_without_served_model_only_absolute_thresholds_apply(tmp_path):
  blessed, report, blessing = _evaluate(tmp_path, served=None)
  assert blessed, report
  # The blessing names the model it blesses, as TFX's Evaluator writes it.
  assert blessing.get_int_custom_property(
      evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) == MODEL_ID
  assert not blessing.has_custom_property(
      evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY)
  assert 'Baseline: none' in report
  assert 'Decision: BLESSED' in report
  assert '| AUC | 0.5000 ' in report and 'AUC >= 0.40' in report
  for name in evaluator_inputs.SLICES:
    assert f'| {name}=' in report


@pytest.mark.slow
def test_worse_than_served_model_is_refused_with_reasons(tmp_path):
  blessed, report, blessing = _evaluate(tmp_path, served=fake_models.save_peeking)
  assert not blessed, report
  # The blessing names both models by their MLMD ids, as TFX's Evaluator writes it.
  assert blessing.get_int_custom_property(
      evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) == MODEL_ID
  assert blessing.get_int_custom_property(
      evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY) == BASELINE_ID
  assert (f'Baseline: the served model, version {evaluator_inputs.SERVED_VERSION} '
          f'({evaluator_inputs.SERVED_PATH})') in report
  assert 'Decision: NOT blessed, because:' in report
  assert '- AUC change against the served model is -0.5000' in report
  assert '- log-loss change against the served model is +' in report
  overall = next(line for line in report.splitlines() if line.startswith('| AUC |'))
  assert overall.startswith('| AUC | 0.5000 ') and '| 1.0000 ' in overall
  assert '| -0.5000 ' in overall  # the paired change
  # Slices (where features.py declares any) show the served model too, but do not gate.
  if evaluator_inputs.SLICES:
    assert '| 1.0000 ' in report.split('Per slice')[1]
  # The blessing is written as TFX writes it, so the Pusher reads "not blessed".
  assert os.path.exists(os.path.join(blessing.uri, 'NOT_BLESSED'))
