"""A month with one line of every bad kind, in the new span and the one before, runs to a
pushed model with every line accounted for (the real pipeline: LocalDagRunner, MLMD, Beam).

The months are generated sample data with test_rows.dirty_lines put among the rows (the same
lines the ExampleGen, check_csv and batch scoring tests read). What each line became is read
from MLMD and the artifacts (ExampleGen's row counts and rejected-rows report, DataGate's
statistics), through the run's result (pipeline/run_result.py), never from console wording.
"""
import csv
import dataclasses
import os
from typing import Dict, Optional

import pytest
import tensorflow_data_validation as tfdv

import local_runner
from components import data_gate
from components.image_csv_example_gen import executor
from datagen import generate
from models import data_layout
from models import model as model_lib
from models import serving_layout
from pipeline import config as config_lib
from pipeline import run_result
from tests import test_rows

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    generate.sample_fields_problem() is not None, reason=str(generate.sample_fields_problem()))]
ROWS = 400  # good rows a span: the bad lines stay under max_rejected_fraction (5 %)
# This run is about accounting for lines, not model quality: one epoch, and no AUC floor, so
# that the model (a few clicks a span) is pushed whatever its AUC.
CONFIG = config_lib.PipelineConfig(hparams=model_lib.HParams(max_epochs=1),
                                   gate=config_lib.GateConfig(auc_floor=0.0))


@dataclasses.dataclass
class DirtySpan:
  csv_path: str
  rows_read: int
  rows_good: int  # to be accepted: the generated rows and the one with a quoted newline
  rejected: Dict[int, str]  # line number -> words of its reason


def _dirty_span(data: str, span: int) -> DirtySpan:
  """A generated span with one line of every bad kind (and a quoted newline) among its rows."""
  generate.generate_span(data, span, ROWS)
  csv_path = data_layout.ads_csv(data, span)
  with open(csv_path, newline='') as f:
    header, *good = list(csv.reader(f))
  lines: Dict[int, Optional[str]] = test_rows.write_dirty_csv(
      data_layout.span_dir(data, span), header, good,
      test_rows.dirty_lines(dict(zip(header, good[0])), header))
  rejected = {line: words for line, words in lines.items() if words is not None}
  return DirtySpan(csv_path, rows_read=len(good) + len(lines),
                   rows_good=len(good) + len(lines) - len(rejected), rejected=rejected)


@pytest.fixture(scope='module')
def dirty_run(tmp_path_factory):
  """Two dirty months and one run over them; (data root, output root, {span: DirtySpan})."""
  root = tmp_path_factory.mktemp('dirty')
  data, out = str(root / 'data'), str(root / 'out')
  spans = {span: _dirty_span(data, span) for span in (1, 2)}
  assert local_runner.run(data, out, CONFIG)
  return data, out, spans


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
  model_root = serving_layout.model_root(os.path.join(out, 'serving'), CONFIG.model_name)
  assert os.listdir(model_root) == [push.version]
  assert os.path.exists(os.path.join(model_root, push.version, 'saved_model.pb'))
