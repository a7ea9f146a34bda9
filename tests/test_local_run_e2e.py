"""One run of local_runner.py, in its own process as a user starts it, over two generated months
with one line of every bad kind in each (tests/test_rows.py's lines, which the ExampleGen,
check_csv and batch scoring tests read too), and what it must show:
* the console: one screen per run (a line per component, a summary within its budget, the
  log file), TFX caching on a rerun, a failure in words, and the lineage command;
* every line accounted for: accepted or rejected by file, line and reason, counted from MLMD
  and the artifacts (ExampleGen's row counts and rejected-rows report, DataGate's
  statistics) through the run result (pipeline/run_result.py), never from console wording;
  drift computed on the accepted rows; the model pushed;
* notebooks/explore_run.ipynb executed on it: TFDV's statistics view, the model per cohort
  and slice, the calibration plot.
One file, so that `make test` (pytest-xdist, --dist loadfile) runs the pipeline once for all.
"""
import base64
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from typing import Dict

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2
import tensorflow_data_validation as tfdv

import local_runner
from components import data_gate
from components import evaluation_results
from components.image_csv_example_gen import executor
from components.image_csv_example_gen import splits
from models import serving_layout
from pipeline import cache_keys
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from pipeline import run_result
from pipeline import summary
from tests import conftest

pytestmark = [pytest.mark.slow, pytest.mark.sample_fields]
ROWS = 1200  # good rows a span; the bad lines stay under max_rejected_fraction (5 %)
NOTEBOOK = os.path.join(config_lib.REPO_ROOT, 'notebooks', 'explore_run.ipynb')
BEFORE_MODEL = ['ImageCsvExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
                'DataGate', 'Transform', 'Trainer']
EVERY_RUN = ['ServedModelBaseline', 'Evaluator', 'SafePusher', 'EdgeExport']
NOISE = re.compile(r'INFO|WARNING|Warning:|absl|tensorflow/|Epoch 1/')


@dataclasses.dataclass
class LocalRun:
  data: str  # data root: spans 1 and 2
  out: str  # output root
  spans: Dict[int, conftest.DirtySpan]
  process: subprocess.CompletedProcess  # the runner's exit code, screen and stderr
  code_revision: str  # of the checkout when the run started ('' outside a git checkout)


@pytest.fixture(scope='module')
def local_run(tmp_path_factory) -> LocalRun:
  """The run every test here reads: local_runner.py over two generated months with one line
  of every bad kind in each. A test leaves its roots as it found them (runs after it go to a
  copy of the output root)."""
  root = tmp_path_factory.mktemp('local_run')
  data, out = str(root / 'data'), str(root / 'out')
  spans = {span: conftest.dirty_span(data, span, ROWS) for span in (1, 2)}
  revision = cache_keys.code_revision(conftest.REPO)
  return LocalRun(data, out, spans, conftest.run_local_runner(data, out), revision)


# ---------------------------------------------------------------------- the console

def _states_of_latest_run(out):
  """{node id: state} of the latest pipeline run, from its run result."""
  return {c.name: c.state for c in run_result.read(local_runner.metadata_config(out)).components}


def _component_lines(text, node, word):
  return [line for line in text.splitlines() if re.match(rf'\d\d:\d\d:\d\d  {node} +{word}',
                                                           line)]


def _summary_lines(text):
  """The summary's lines on the console: from its title to the log's line."""
  lines = text.rstrip().splitlines()
  start = next(i for i, line in enumerate(lines) if ' Run summary ' in line)
  return lines[start:-2]  # a blank line and the log's path end the screen


def _log_path(text):
  """The run's log, named on the first line and on the last one."""
  lines = text.rstrip().splitlines()
  paths = [re.search(r'(/\S+/logs/run-\d{8}-\d{6}\.log)$', lines[i]) for i in (0, -1)]
  assert paths[0] and paths[1] and paths[0][1] == paths[1][1], text
  return paths[0][1]


def test_one_screen_per_run_and_caching(local_run, tmp_path):
  data, first = local_run.data, local_run.process
  assert first.returncode == 0, first.stdout + first.stderr
  # The runs after the module's one go to a copy of its output root (its metadata store names
  # the shared run's artifacts, which stay where they are), so the other tests still read it. The
  # tuned values' path is a Trainer parameter, part of its cache key: the shared run's.
  out = str(tmp_path / 'out')
  same_trainer = ['--set', f'tuned_hparams_uri={local_runner.tuned_hparams_uri(local_run.out)}']
  rows_read = sum(span.rows_read for span in local_run.spans.values())
  screen = first.stdout
  for node in BEFORE_MODEL + EVERY_RUN:  # one line per component, when it ends
    assert len(_component_lines(screen, node, '')) == 1, (node, screen)
    assert len(_component_lines(screen, node, r'done +\d+\.\d s')) == 1, (node, screen)
  assert len(_summary_lines(screen)) <= summary.MAX_LINES, screen
  assert not NOISE.search(screen + first.stderr), screen + first.stderr
  with open(_log_path(screen)) as f:
    log = f.read()
  assert 'Component Trainer is running.' in log and 'FutureWarning' in log
  result = run_result.read(local_runner.metadata_config(local_run.out))
  assert _states_of_latest_run(local_run.out) == {n: 'done' for n in BEFORE_MODEL + EVERY_RUN}
  assert all(c.peak_memory_gib > 0.1 for c in result.components)
  assert result.data.spans == [1, 2] and result.data.rows_read == rows_read
  assert sum(size.rows for size in result.data.splits.values()) == result.data.rows_accepted
  assert result.anomalous_splits == [] and result.data_validation_passed
  assert result.training.epochs == 1 and result.served.version is None
  assert result.evaluation.blessed and result.push.pushed
  pushed = result.push.version
  # What trained the served model, from MLMD, by one command.
  lineage = subprocess.run([sys.executable, '-m', 'monitoring.lineage',
                            '--output-root', local_run.out],
                           capture_output=True, text=True, cwd=config_lib.REPO_ROOT,
                           env=dict(os.environ, PYTHONPATH=config_lib.REPO_ROOT), check=False)
  assert lineage.returncode == 0, lineage.stdout + lineage.stderr
  assert lineage.stdout.startswith(f'Served version {pushed}: pushed by pipeline run '
                                   f'{result.run_id} '), lineage.stdout
  assert f'{rows_read:,} rows read' in lineage.stdout and 'max_epochs=1' in lineage.stdout
  revision = local_run.code_revision
  assert result.code_revision == revision
  assert f'Code revision: {revision or "not recorded by this run"}' in lineage.stdout

  shutil.copytree(local_run.out, out)
  second = conftest.run_local_runner(data, out, *same_trainer)
  assert second.returncode == 0, second.stdout + second.stderr
  states = _states_of_latest_run(out)
  assert states == {**{n: 'cached' for n in BEFORE_MODEL},
                    **{n: 'done' for n in EVERY_RUN}}, states
  for node in BEFORE_MODEL:
    assert len(_component_lines(second.stdout, node, 'cached')) == 1, second.stdout
  assert os.path.basename(_log_path(second.stdout)) != os.path.basename(_log_path(screen))
  # The baseline was read again: it is now the model the first run pushed.
  assert run_result.read(local_runner.metadata_config(out)).served.version == int(pushed)

  # Changed data under the same root: ExampleGen must read it again, not reuse the cache.
  csv_path = local_run.spans[2].csv_path
  with open(csv_path, 'rb') as f:
    shared = f.read()
  lines = shared.decode('utf-8', 'replace').splitlines()
  try:
    with open(csv_path, 'w') as f:
      f.write('\n'.join(lines[:1] + ['broken,row' if i % 5 == 0 else line
                                     for i, line in enumerate(lines[1:])]) + '\n')
    third = conftest.run_local_runner(data, out, *same_trainer)
  finally:
    with open(csv_path, 'wb') as f:  # the run's data as it was
      f.write(shared)
  assert third.returncode == 1
  assert _states_of_latest_run(out) == {'ImageCsvExampleGen': 'FAILED'}
  screen = third.stdout
  assert len(_component_lines(screen, 'ImageCsvExampleGen', r'FAILED +\d+\.\d s')) == 1, screen
  assert 'The run stopped: ImageCsvExampleGen failed.' in screen
  assert '  ValueError: ImageCsvExampleGen rejected' in screen
  assert f'  Full log: {_log_path(screen)}' in screen
  assert 'The run STOPPED: ValueError: ImageCsvExampleGen rejected' in screen
  assert len(_summary_lines(screen)) <= summary.MAX_LINES, screen
  assert not NOISE.search(screen + third.stderr), screen + third.stderr


# ----------------------------------------------------------------- every line counted

@pytest.fixture(scope='module')
def dirty_run(local_run):
  """(data root, output root, {span: DirtySpan}) of the local run."""
  assert local_run.process.returncode == 0, local_run.process.stdout + local_run.process.stderr
  return local_run.data, local_run.out, local_run.spans


def test_every_line_is_accepted_or_rejected_by_name(dirty_run):
  _, out, spans = dirty_run
  data = run_result.read(local_runner.metadata_config(out)).data
  report = executor.read_rejected_rows(data.examples_uri)
  assert data.rows_rejected == len(report)
  # Each bad line by file, line number, key and reason; nothing else rejected.
  for span, dirty in spans.items():
    named = {int(row['line_number']): row['reason'] for row in report
             if row['source_file'] == dirty.csv_path and row['key']}
    assert sorted(named) == sorted(dirty.rejected), span
    for line, words in dirty.rejected.items():
      assert words in named[line], (span, line)
  assert data.rows_accepted == sum(dirty.rows_good for dirty in spans.values())
  assert data.rows_read == sum(dirty.rows_read for dirty in spans.values())
  assert sum(size.rows for size in data.splits.values()) == data.rows_accepted


def test_drift_is_computed_on_the_accepted_rows(dirty_run):
  _, out, spans = dirty_run
  result = run_result.read(local_runner.metadata_config(out))
  assert result.data_validation_passed
  drift = result.component('DataGate').output('ExampleAnomalies')
  for span, dirty in spans.items():
    stats = tfdv.load_stats_binary(data_gate.statistics_path(drift.uri, span))
    assert stats.datasets[0].num_examples == dirty.rows_good, span


def test_the_model_is_pushed(dirty_run):
  _, out, _ = dirty_run
  push = run_result.read(local_runner.metadata_config(out)).push
  assert push.pushed
  model_root = serving_layout.model_root(os.path.join(out, 'serving'),
                                        config_lib.PipelineConfig().model_name)
  assert os.listdir(model_root) == [push.version]
  assert os.path.exists(os.path.join(model_root, push.version, 'saved_model.pb'))


# ------------------------------------------------------------------------ the notebook

@pytest.fixture(scope='module')
def executed(local_run):
  """(the executed notebook, the run's evaluation) on the local run."""
  data, out, run = local_run.data, local_run.out, local_run.process
  assert run.returncode == 0, run.stdout + run.stderr
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  os.environ.update(ADCLICK_OUTPUT_ROOT=out, ADCLICK_DATA_ROOT=data)  # the kernel inherits it
  try:
    ExecutePreprocessor(timeout=300).preprocess(
        notebook, {'metadata': {'path': os.path.dirname(NOTEBOOK)}})
  finally:
    for name in ('ADCLICK_OUTPUT_ROOT', 'ADCLICK_DATA_ROOT'):
      os.environ.pop(name)
  evaluation = run_result.read(local_runner.metadata_config(out)).evaluation
  return notebook, evaluation_results.Results(evaluation.uri)


def _outputs(notebook, mime):
  return [output['data'][mime] for cell in notebook.cells if cell.cell_type == 'code'
          for output in cell.outputs if mime in output.get('data', {})]


def test_tfdv_statistics_view_of_the_eval_and_training_rows(executed):
  notebook, _ = executed
  views = [html for html in _outputs(notebook, 'text/html') if '<facets-overview' in html]
  assert len(views) == 1
  statistics = statistics_pb2.DatasetFeatureStatisticsList.FromString(
      base64.b64decode(re.search(r'proto-input="([A-Za-z0-9+/=]+)"', views[0])[1]))
  assert [d.name for d in statistics.datasets] == [splits.EVAL, splits.TRAIN]
  for dataset in statistics.datasets:
    assert dataset.num_examples > 0
    assert {'category', 'device', 'clicked'} <= {f.path.step[0] for f in dataset.features}


def test_slices_and_calibration_plot_of_the_run(executed):
  notebook, results = executed
  charts = _outputs(notebook, 'image/svg+xml')
  cohorts = results.slices('cohort=')
  others = [s for s in results.slices() if s not in cohorts]
  assert cohorts and others
  # One AUC chart per kind of group, a point per group that has clicks and non-clicks;
  # no model was served before this first run, so the new model alone.
  for kind, groups in (('cohort', cohorts), ('slice', others)):
    chart = next(svg for svg in charts if f'id="{kind}:new_model:' in svg)
    for group in groups:
      assert chart.count(f'id="{kind}:new_model:{group}"') == results.ranks(group), group
    assert 'served_model' not in chart
  tables = '\n'.join(_outputs(notebook, 'text/markdown'))
  for group in cohorts + others:
    assert f'| {group} |' in tables
  calibration = next(svg for svg in charts if 'id="calibration:new_model:' in svg)
  assert calibration.count('id="calibration:new_model:') == sum(
      results.ranks(group) for group in [evaluation_results.OVERALL] + cohorts + others)
  # The reliability diagram, where the run's eval config asks TFMA for a CalibrationPlot.
  plotted = any(m.class_name == 'CalibrationPlot' for spec in pipeline_lib.eval_config(
      config_lib.PipelineConfig()).metrics_specs for m in spec.metrics)
  assert sum('id="reliability:new_model"' in svg for svg in charts) == plotted
  assert len(charts) == 3 + plotted
