"""The compiled KFP spec runs, task by task, as KFP runs each container (kfp_local_launcher).

The spec is what kubeflow_runner.py compiles, with local roots: every task of it runs in
dependency order, in its own process, from a copy of the repository as the image holds it,
and hands its artifacts on through the launcher's metadata store. Three monthly runs share one
store and serving root: the first runs every task and pushes; the next month's compares with
the version the first pushed and pushes again (up to SafePusher: EdgeExport already ran in the
first). The tests read what the tasks wrote. No KFP backend, GCS, artifact upload or Docker
image is involved. That a drifted month stops at DataGate is the local end-to-end test's
(tests/test_pipeline_e2e.py); here, that every later task depends on DataGate in the spec.
"""
import os

import pytest
import yaml

import kubeflow_runner
from components import evaluation_report
from datagen.generate import generate_span
from models import edge_model
from models import serving_layout
from tests import conftest
from tests import fake_models
from tests import kfp_local_launcher

# `make test` runs it (CI); `make test-quick` leaves it out; `-m kfp` runs only it.
pytestmark = [pytest.mark.slow, pytest.mark.kfp, pytest.mark.sample_fields]  # datagen's months
# A run's time is its tasks' processes (each starts Python and TensorFlow, a Beam task also a
# worker), not its rows: 800 a span fill the splits and slices and show no false drift.
ROWS = 800
# Tiny data and one epoch of tabular training: a gate any model passes, so the run pushes.
RUN_OPTIONS = ['--set', 'hparams.max_epochs=1', '--set', 'hparams.use_image=false',
               '--set', 'hparams.challenger=false',
               '--set', 'gate.auc_floor=0', '--set', 'gate.auc_tolerance=1',
               '--set', 'gate.logloss_tolerance=10']
ONE_BEAM_WORKER = {'beam_cpu_request': 1, 'beam_cpu_limit': 1}  # 2 cores here


def _compile(root, repo_copy):
  sizes = [arg for name, value in ONE_BEAM_WORKER.items()
           for arg in ('--set', f'resources.{name}={value}')]
  path = os.path.join(root, 'spec.yaml')
  # The executors read the schema from the repository's copy, as from /pipeline in the image.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(kubeflow_runner, 'IMAGE_REPO_ROOT', repo_copy)
    kubeflow_runner.main([
        '--gcs-root', root, '--pipeline-root', os.path.join(root, 'pipeline-root'),
        '--data-root', os.path.join(root, 'data'),
        '--serving-root', os.path.join(root, 'serving'),
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


class Months:
  """The compiled spec, run month after month against one metadata store and serving root."""

  def __init__(self, root: str):
    self.data_root = os.path.join(root, 'data')
    self.model_root = serving_layout.model_root(os.path.join(root, 'serving'))
    fake_models.save_constant(serving_layout.version_dir(self.model_root, 1))
    self.repo_copy = conftest.copy_repository(os.path.join(root, 'image'))
    self.spec = _compile(root, self.repo_copy)
    self.launcher = kfp_local_launcher.LocalLauncher(self.repo_copy,
                                                     os.path.join(root, 'launcher'))

  def run(self, span: int, only=None) -> kfp_local_launcher.RunResult:
    """Generates span `span`, then runs the spec (`only`: see LocalLauncher.run). The tasks
    must write nothing into the code's directory (read-only to the image's user)."""
    generate_span(self.data_root, span, ROWS)
    code = _files(self.repo_copy)
    run = self.launcher.run(self.spec, only=only)
    assert _files(self.repo_copy) == code
    return run


@pytest.fixture(scope='module')
def months(tmp_path_factory):
  return Months(str(tmp_path_factory.mktemp('kfp')))


@pytest.fixture(scope='module')
def first(months):
  """Spans 1 and 2, against the served constant model (version 1): every task runs."""
  generate_span(months.data_root, 1, ROWS)
  run = months.run(2)
  assert run.failed is None, _failure(run)
  return run


@pytest.fixture(scope='module')
def second(months, first):
  """Span 3: the Evaluator's baseline is now the version the first run pushed."""
  run = months.run(3, only={'SafePusher'})
  assert run.failed is None, _failure(run)
  return run


def test_every_compiled_task_runs_its_component(months, first):
  assert set(first.tasks) == set(months.spec['root']['dag']['tasks'])
  examples = first.artifact('ImageCsvExampleGen', 'examples')
  assert examples['metadata']['spans'] == '1,2'
  assert examples['metadata']['rows_accepted'] == 2 * ROWS
  assert os.listdir(os.path.join(examples['uri'], 'Split-train'))
  # EdgeExport (no output artifact) wrote the pushed version as TFLite beside the base path.
  version = first.artifact('SafePusher', 'pushed_model')['metadata']['pushed_version']
  assert os.path.exists(os.path.join(edge_model.edge_root(months.model_root), version,
                                     edge_model.TFLITE_FILE))


def test_first_month_is_blessed_against_the_served_model_and_pushed(months, first):
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
  assert pushed['pushed_destination'] == serving_layout.version_dir(
      months.model_root, pushed['pushed_version'])
  assert os.path.exists(os.path.join(pushed['pushed_destination'], 'saved_model.pb'))


def test_next_month_compares_with_the_pushed_version_and_pushes_again(first, second):
  assert 'SafePusher' in second.tasks and 'EdgeExport' not in second.tasks
  assert second.artifact('ImageCsvExampleGen', 'examples')['metadata']['spans'] == '1,2,3'
  served = int(second.artifact('ServedModelBaseline', 'model')['metadata']['served_version'])
  pushed = first.artifact('SafePusher', 'pushed_model')['metadata']
  assert served == int(pushed['pushed_version'])
  report = _read(second.artifact('Evaluator', 'evaluation')['uri'], evaluation_report.REPORT_FILE)
  assert f'Baseline: the served model, version {served} (' in report, report
  assert second.artifact('Evaluator', 'blessing')['metadata']['blessed'] == 1
  repushed = second.artifact('SafePusher', 'pushed_model')['metadata']
  assert repushed['pushed'] == 1 and int(repushed['pushed_version']) > served


def test_a_failed_data_gate_stops_training_and_pushing(months):
  """KFP runs no task after a failed one it depends on: every task that transforms, trains,
  evaluates or pushes depends on DataGate, directly or not."""
  tasks = months.spec['root']['dag']['tasks']
  for name in ('Transform', 'Trainer', 'Evaluator', 'SafePusher', 'EdgeExport'):
    assert 'DataGate' in kfp_local_launcher.with_upstream(tasks, [name]), name
