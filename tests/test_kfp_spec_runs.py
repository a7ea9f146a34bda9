"""The compiled KFP spec runs, task by task, as KFP runs each container (kfp_local_launcher).

The spec is what kubeflow_runner.py compiles, with local roots: every task of it runs in
dependency order, in its own process, from a copy of the repository as the image holds it,
and hands its artifacts on through the launcher's metadata store. The assertions read what
the tasks wrote. No KFP backend, GCS, artifact upload or Docker image is involved.
"""
import os

import pytest
import yaml

import kubeflow_runner
from components import data_gate
from components import evaluation_report
from datagen.generate import generate_span
from tests import fake_models
from tests import kfp_local_launcher

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = 1500
# Tiny data and a short tabular training: a gate any model passes, so the run pushes.
RUN_OPTIONS = ['--set', 'hparams.max_epochs=2', '--set', 'hparams.use_image=false',
               '--set', 'gate.auc_floor=0', '--set', 'gate.auc_tolerance=1',
               '--set', 'gate.logloss_tolerance=10']
ONE_BEAM_WORKER = {'beam_cpu_request': 1, 'beam_cpu_limit': 1}  # 2 cores here


def _compile(tmp_path, repo_copy, monkeypatch):
  # The executors read the schema from the repository's copy, as from /pipeline in the image.
  monkeypatch.setattr(kubeflow_runner, 'IMAGE_REPO_ROOT', repo_copy)
  sizes = [arg for name, value in ONE_BEAM_WORKER.items()
           for arg in ('--set', f'resources.{name}={value}')]
  path = str(tmp_path / 'spec.yaml')
  kubeflow_runner.main([
      '--gcs-root', str(tmp_path), '--pipeline-root', str(tmp_path / 'pipeline-root'),
      '--data-root', str(tmp_path / 'data'), '--serving-root', str(tmp_path / 'serving'),
      '--output', path, *RUN_OPTIONS, *sizes])
  with open(path) as f:
    return yaml.safe_load(f)


def _files(directory):
  """Every file under directory except Python's bytecode caches."""
  return {os.path.join(root, name) for root, _, names in os.walk(directory)
          for name in names if '__pycache__' not in root}


def _read(*path):
  with open(os.path.join(*path)) as f:
    return f.read()


def _failure(run):
  return f'{run.failed} failed:\n' + _read(run.tasks[run.failed].log)[-5000:] if run.failed else ''


def test_the_compiled_spec_runs_task_by_task(tmp_path, monkeypatch):
  for span in (1, 2):
    generate_span(str(tmp_path / 'data'), span, ROWS)
  model_root = tmp_path / 'serving' / 'adclick'
  fake_models.save_constant(str(model_root / '1'))
  repo_copy = kfp_local_launcher.copy_repository(REPO, str(tmp_path / 'image'))
  spec = _compile(tmp_path, repo_copy, monkeypatch)
  launcher = kfp_local_launcher.LocalLauncher(repo_copy, str(tmp_path / 'launcher'))
  image_files = _files(repo_copy)

  first = launcher.run(spec)
  assert first.failed is None, _failure(first)
  assert set(first.tasks) == set(spec['root']['dag']['tasks'])
  examples = first.artifact('ImageCsvExampleGen', 'examples')
  assert examples['metadata']['spans'] == '1,2'
  assert examples['metadata']['rows_accepted'] == 2 * ROWS
  assert os.listdir(os.path.join(examples['uri'], 'Split-train'))
  # The served model is the baseline, handed to the Evaluator by its metadata id.
  baseline = first.artifact('ServedModelBaseline', 'model')
  assert baseline['metadata']['served_version'] == 1
  report = _read(first.artifact('Evaluator', 'evaluation')['uri'], evaluation_report.REPORT_FILE)
  assert 'Baseline: the served model, version 1 (' in report
  assert 'Decision: BLESSED' in report, report
  blessing = first.artifact('Evaluator', 'blessing')
  assert blessing['metadata']['blessed'] == 1  # a bool, stored by KFP as an int
  assert blessing['metadata']['baseline_model_id'] == baseline['name']
  assert os.path.exists(os.path.join(blessing['uri'], 'BLESSED'))
  pushed = first.artifact('SafePusher', 'pushed_model')['metadata']
  assert pushed['pushed'] == 1
  assert pushed['pushed_destination'] == str(model_root / pushed['pushed_version'])
  assert os.path.exists(os.path.join(pushed['pushed_destination'], 'saved_model.pb'))
  # The tasks wrote nothing into the code's directory (read-only to the image's user).
  assert _files(repo_copy) == image_files

  # The next month: its Evaluator compares the new model with the version the first run pushed.
  generate_span(str(tmp_path / 'data'), 3, ROWS)
  second = launcher.run(spec)
  assert second.failed is None, _failure(second)
  assert second.artifact('ImageCsvExampleGen', 'examples')['metadata']['spans'] == '1,2,3'
  served = int(second.artifact('ServedModelBaseline', 'model')['metadata']['served_version'])
  assert served == int(pushed['pushed_version'])
  report = _read(second.artifact('Evaluator', 'evaluation')['uri'], evaluation_report.REPORT_FILE)
  assert f'Baseline: the served model, version {served} (' in report, report
  repushed = second.artifact('SafePusher', 'pushed_model')['metadata']
  assert int(repushed['pushed_version']) > served

  # The month after has drifted: the run stops at DataGate, before Transform.
  generate_span(str(tmp_path / 'data'), 4, ROWS, drift=True)
  third = launcher.run(spec)
  assert third.failed == 'DataGate', _failure(third)
  assert 'Transform' not in third.tasks and 'Trainer' not in third.tasks
  drift_uri = third.tasks['DataGate'].executor_input['outputs']['artifacts']['drift'][
      'artifacts'][0]['uri']
  report = _read(drift_uri, data_gate.REPORT_FILE)
  assert '# Data validation of span 4' in report and '## Drift against span 3' in report
