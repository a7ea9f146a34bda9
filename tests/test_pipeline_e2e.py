"""End-to-end runs of the real pipeline (LocalDagRunner, SQLite MLMD, Beam) on tiny data."""
import dataclasses
import os
import shutil

import pytest

import local_runner
from datagen.generate import generate_span
from models import model as model_lib
from pipeline import config as config_lib
from pipeline import run_result
from pipeline import summary
from tests import fake_models
from tests.conftest import execution_counts

pytestmark = [pytest.mark.slow, pytest.mark.sample_fields]
ROWS = 4000
# Tiny data: a short training budget keeps each run around a minute on 2 cores.
CONFIG = config_lib.PipelineConfig(hparams=model_lib.HParams(max_epochs=3),
                                   gate=config_lib.GateConfig(auc_floor=0.6))


def _versions(output_root):
  model_dir = os.path.join(output_root, 'serving', CONFIG.model_name)
  return sorted(os.listdir(model_dir), key=int) if os.path.isdir(model_dir) else []


def test_gate_against_the_served_model(tmp_path, capsys):
  data, out = str(tmp_path / 'data'), str(tmp_path / 'out')
  generate_span(data, 1, ROWS)
  generate_span(data, 2, ROWS)
  model_root = os.path.join(out, 'serving', CONFIG.model_name)
  # In production before this pipeline ever ran (so MLMD knows nothing of it): a model that
  # predicts a 20% click rate for every impression. Version 5 is still being copied.
  fake_models.save_constant(os.path.join(model_root, '1'), 0.2)
  os.makedirs(os.path.join(model_root, '5', 'variables'))
  shutil.copy(os.path.join(model_root, '1', 'saved_model.pb'), os.path.join(model_root, '5'))

  assert local_runner.run(data, out, CONFIG)
  screen = capsys.readouterr().out
  first = run_result.read(local_runner.metadata_config(out))
  assert first.served.version == 1 and first.data.span == 2
  assert first.evaluation.blessed and first.push.pushed
  assert summary.oracle(first, data) is not None  # the sample has true probabilities
  with open(first.evaluation.report_path) as f:
    report = f.read()
  assert '| category=' in report and '| device=' in report and '| placement=' in report
  # The console: the summary within its budget; the slices stay in the report.
  text = screen[screen.index(' Run summary '):]
  assert len(text.splitlines()) <= summary.MAX_LINES and '| category=' not in text, text
  # The served model's line: version 1 was not pushed by a run this store knows.
  assert 'Served model (version 1) on the new month: AUC ' in screen
  assert 'what it promised is not in this metadata store' in screen
  pushed = _versions(out)[-1]
  assert _versions(out) == ['1', '5', pushed] and first.push.version == pushed
  assert os.path.exists(os.path.join(model_root, pushed, 'saved_model.pb'))
  # The challenger (an LR on the same rows) trained beside the model and was not pushed; the
  # model's paired margin over it on the eval rows is in the run result, report and summary.
  assert first.training.challenger['epochs_trained'] >= 1
  assert os.path.exists(os.path.join(first.training.model_uri, 'Challenger-Serving',
                                     'saved_model.pb'))
  assert not os.path.exists(os.path.join(model_root, pushed, 'Challenger-Serving'))
  margin = first.evaluation.challenger.change['auc']
  assert margin.lower <= margin.value <= margin.upper
  assert first.evaluation.challenger.model['example_count'] == first.evaluation.rows
  assert 'model vs challenger (LR): ' in text and 'model vs challenger (LR): ' in report

  # Same data, an untrained model (tiny learning rate, no calibration): clearly worse than the
  # model now served, beyond the paired intervals' noise.
  worse = dataclasses.replace(CONFIG, hparams=model_lib.HParams(
      max_epochs=1, learning_rate=1e-7, calibrate=False))
  assert local_runner.run(data, out, worse)
  screen = capsys.readouterr().out
  second = run_result.read(local_runner.metadata_config(out))
  assert second.served.version == int(pushed)
  # Pushed by the first run: its evaluation's promise is in MLMD (same span, so no decay).
  assert (f"Served model (version {pushed}) on the new month's eval split: AUC " in screen and
          '(promised ' in screen and 'no decay' in screen), screen
  assert second.evaluation.blessed is False and not second.push.pushed
  assert any('served model' in reason for reason in second.evaluation.reasons), second
  # The untrained model is surely worse than its challenger too, and the gate says so.
  assert any('challenger' in reason for reason in second.evaluation.reasons), second
  assert _versions(out) == ['1', '5', pushed]  # nothing new pushed
  with open(os.path.join(out, 'last_run_summary.md')) as f:
    saved = f.read()
  assert 'NOT blessed' in saved and second.evaluation.report_path in saved


def test_drifted_span_stops_before_transform(tmp_path, capsys):
  data, out = str(tmp_path / 'data'), str(tmp_path / 'out')
  generate_span(data, 1, ROWS)
  generate_span(data, 2, ROWS, drift=True)

  assert not local_runner.run(data, out, CONFIG)
  text = capsys.readouterr().out
  result = run_result.read(local_runner.metadata_config(out))
  assert result.failed == ['DataGate'] and result.data_validation_passed is False
  assert result.data.rows_rejected > 0  # the rows with missing / corrupt images
  assert 'Span 2 failed data validation' in text
  assert 'advertiser' in text and 'category' in text  # drifted fields named in words
  executions = execution_counts(out)
  assert executions.get('DataGate') == 1
  assert 'Transform' not in executions and 'Trainer' not in executions
  assert _versions(out) == []
