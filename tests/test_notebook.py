"""notebooks/explore_run.ipynb, executed on a tiny run's outputs: what it shows is TFDV's
statistics view of the run's data, the model per cohort and slice, and the calibration plot."""
import base64
import os
import re

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor
import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

import local_runner
from components import evaluation_results
from components.image_csv_example_gen import splits
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from pipeline import run_result
from tests import conftest

NOTEBOOK = os.path.join(config_lib.REPO_ROOT, 'notebooks', 'explore_run.ipynb')
pytestmark = pytest.mark.xdist_group(conftest.LOCAL_RUN_GROUP)


@pytest.fixture(scope='module')
def executed(local_run):
  """(the executed notebook, the run's evaluation) on the shared tiny run (conftest.local_run)."""
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


@pytest.mark.slow
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


@pytest.mark.slow
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
