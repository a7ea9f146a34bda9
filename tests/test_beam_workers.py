"""Every Beam step on worker processes (--beam-workers): the DirectRunner's multi_processing
mode runs ExampleGen, StatisticsGen, DataGate, Transform, the Evaluator and batch scoring
through the Fn API harness that Dataflow's runner v2 uses, so what running in the caller's
process hides (functions that do not pickle, module state, a lambda reading a __main__
global) fails here as it would on Dataflow."""
import csv
import glob
import os

import pytest

import local_runner
from batch import score
from datagen.generate import generate_span
from models import serving_layout
from pipeline import run_result
from tests import conftest

# Rows per month: with fewer, two months of the generator drift apart by chance and DataGate
# rightly stops the run.
ROWS = 1000
WORKERS = '2'


def _output(result, node, type_name):
  artifact = result.component(node).output(type_name)
  assert artifact is not None, (node, type_name)
  return artifact


@pytest.mark.slow
@pytest.mark.sample_fields  # datagen's months
def test_beam_steps_run_on_worker_processes(tmp_path):
  data, out = str(tmp_path / 'data'), str(tmp_path / 'out')
  for span in (1, 2):  # two months: DataGate's drift check runs its Beam pipeline
    generate_span(data, span, ROWS)

  # The challenger's comparison is no Beam step: left out, to save its training.
  run = conftest.run_local_runner(data, out, '--beam-workers', WORKERS,
                                  '--set', 'hparams.challenger=false')
  assert run.returncode == 0, run.stdout + run.stderr
  result = run_result.read(local_runner.metadata_config(out))
  assert {c.state for c in result.components} == {'done'}, result.components
  assert result.data.rows_read == 2 * ROWS and result.data.rows_accepted > 0
  assert sum(size.rows for size in result.data.splits.values()) == result.data.rows_accepted
  statistics = _output(result, 'StatisticsGen', 'ExampleStatistics').uri
  assert sorted(os.path.basename(p) for p in glob.glob(f'{statistics}/Split-*/FeatureStats.pb')
                if os.path.getsize(p)) == ['FeatureStats.pb'] * 3
  drift = _output(result, 'DataGate', 'ExampleAnomalies').uri
  for span in (1, 2):
    assert os.path.getsize(os.path.join(drift, 'statistics', f'span-{span}', 'FeatureStats.pb'))
  assert result.data_validation_passed
  graph = _output(result, 'Transform', 'TransformGraph').uri
  assert os.path.exists(os.path.join(graph, 'transform_fn', 'saved_model.pb'))
  assert result.evaluation.rows == result.data.splits['eval'].rows
  assert result.evaluation.blessed and result.push.pushed

  scores = str(tmp_path / 'scores')
  score.main(['--data-root', data, '--output', scores, '--beam-workers', WORKERS,
              '--model-base-path', serving_layout.model_root(os.path.join(out, 'serving'))])
  manifest = score.read_manifest(os.path.join(scores, 'span-2'))
  assert manifest['rows_read'] == manifest['rows_scored'] + manifest['rows_rejected'] == ROWS
  scored = []
  for path in glob.glob(os.path.join(scores, 'span-2', f'{score.SCORES_PREFIX}-*.csv')):
    with open(path, newline='') as f:
      scored += [row['impression_id'] for row in csv.DictReader(f)]
  assert len(set(scored)) == len(scored) == manifest['rows_scored'] > 0
