"""A one-trial Tuner search through the real pipeline, then a monthly run that reuses it."""
import dataclasses
import json

import pytest

import local_runner
from components.evaluation_results import CALIBRATION
from datagen.generate import generate_span
from models import model as model_lib
from pipeline import config as config_lib
from pipeline import run_result
from tests.conftest import execution_counts

pytestmark = [pytest.mark.slow, pytest.mark.sample_fields]
ROWS = 1500


def test_tune_once_then_reuse_the_stored_values(tmp_path):
  data, out = str(tmp_path / 'data'), str(tmp_path / 'out')
  for span in (1, 2):
    generate_span(data, span, ROWS)
  store = str(tmp_path / 'tuned' / 'hparams.json')
  config = config_lib.PipelineConfig(
      tune=True, tuner_trials=1, tuned_hparams_uri=store,
      hparams=model_lib.HParams(max_epochs=1, challenger=False),
      gate=config_lib.GateConfig(auc_floor=0.0))

  assert local_runner.run(data, out, config)
  with open(store) as f:
    tuned = json.load(f)['hparams']
  assert set(tuned) == set(config.tuner.search_space)
  first = run_result.read(local_runner.metadata_config(out))
  assert first.training.source == f"this run's Tuner search, stored at {store}"
  assert execution_counts(out)['Tuner'] == 1
  # Calibration is fitted and reported; cohorts are reported next to the overall figures.
  assert first.training.calibration['scale'] > 0 and CALIBRATION in first.evaluation.new
  assert 'cohort=established' in first.evaluation.cohorts
  # hparams.challenger=False: no challenger trained, so none compared.
  assert first.training.challenger is None and first.evaluation.challenger is None

  assert local_runner.run(data, out, dataclasses.replace(config, tune=False))
  second = run_result.read(local_runner.metadata_config(out))
  assert second.training.source == f'an earlier Tuner search, read from {store}'
  assert {name: second.training.hparams[name] for name in tuned} == tuned
  assert execution_counts(out)['Tuner'] == 1  # no second search
