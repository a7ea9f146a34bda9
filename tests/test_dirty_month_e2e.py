"""A month with one line of every bad kind, in the new span and the one before, runs to a
pushed model with every line accounted for (the real pipeline: local_runner.py, MLMD, Beam;
the run is conftest.local_run, which other end-to-end files read too).

The months are generated sample data with test_rows.dirty_lines put among the rows (the same
lines the ExampleGen, check_csv and batch scoring tests read). What each line became is read
from MLMD and the artifacts (ExampleGen's row counts and rejected-rows report, DataGate's
statistics), through the run's result (pipeline/run_result.py), never from console wording.
"""
import os

import pytest
import tensorflow_data_validation as tfdv

import local_runner
from components import data_gate
from components.image_csv_example_gen import executor
from datagen import generate
from models import serving_layout
from pipeline import config as config_lib
from pipeline import run_result
from tests import conftest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(conftest.LOCAL_RUN_GROUP),
              pytest.mark.skipif(generate.sample_fields_problem() is not None,
                                 reason=str(generate.sample_fields_problem()))]


@pytest.fixture(scope='module')
def dirty_run(local_run):
  """The shared local run (conftest.local_run): two dirty months and one run over them;
  (data root, output root, {span: DirtySpan})."""
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
