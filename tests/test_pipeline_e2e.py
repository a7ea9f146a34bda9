"""End-to-end runs of the real pipeline (LocalDagRunner, SQLite MLMD, Beam) on tiny data."""
import dataclasses
import os
import shutil

from ml_metadata import metadata_store
import pytest

import local_runner
from components import evaluation_report
from datagen import generate
from datagen.generate import generate_span
from models import model as model_lib
from pipeline import config as config_lib
from tests import fake_models

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    generate.sample_fields_problem() is not None, reason=str(generate.sample_fields_problem()))]
ROWS = 4000
# Tiny data: a short training budget keeps each run around a minute on 2 cores.
CONFIG = config_lib.PipelineConfig(hparams=model_lib.HParams(max_epochs=3),
                                   gate=config_lib.GateConfig(auc_floor=0.6))


def _executions(output_root):
  store = metadata_store.MetadataStore(local_runner.metadata_config(output_root))
  return {t.name.rsplit('.', 1)[-1]: len(store.get_executions_by_type(t.name))
          for t in store.get_execution_types()}


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
  first = capsys.readouterr().out
  assert f"Baseline: the served model, version 1 ({os.path.join(model_root, '1')})" in first
  assert 'Decision: BLESSED' in first and 'oracle' in first and 'span 2' in first
  assert '| category=' in first and '| device=' in first and '| placement=' in first
  # The served model's line: version 1 was not pushed by a run this store knows.
  assert 'Served model (version 1) on the new month: AUC ' in first
  assert 'what it promised is not in this metadata store' in first
  pushed = _versions(out)[-1]
  assert _versions(out) == ['1', '5', pushed]
  assert os.path.exists(os.path.join(model_root, pushed, 'saved_model.pb'))

  # Same data, an untrained model (tiny learning rate, no calibration): clearly worse than the
  # model now served, beyond the paired intervals' noise.
  worse = dataclasses.replace(CONFIG, hparams=model_lib.HParams(
      max_epochs=1, learning_rate=1e-7, calibrate=False))
  assert local_runner.run(data, out, worse)
  second = capsys.readouterr().out
  assert f'Baseline: the served model, version {pushed} (' in second
  # Pushed by the first run: its evaluation's promise is in MLMD (same span, so no decay).
  assert (f"Served model (version {pushed}) on the new month's eval split: AUC " in second and
          '(promised ' in second and 'no decay' in second), second
  assert 'Decision: NOT blessed' in second, second
  assert 'change against the served model is' in second and '95 % confidence' in second
  assert 'Pushed: nothing' in second
  assert _versions(out) == ['1', '5', pushed]  # nothing new pushed
  with open(os.path.join(out, 'last_run_summary.md')) as f:
    saved = f.read()
  assert 'NOT blessed' in saved and evaluation_report.REPORT_FILE in saved


def test_drifted_span_stops_before_transform(tmp_path, capsys):
  data, out = str(tmp_path / 'data'), str(tmp_path / 'out')
  generate_span(data, 1, ROWS)
  generate_span(data, 2, ROWS, drift=True)

  assert not local_runner.run(data, out, CONFIG)
  text = capsys.readouterr().out
  assert 'STOPPED' in text and 'Span 2 failed data validation' in text
  assert 'advertiser' in text and 'category' in text  # drifted fields named in words
  assert 'rejected' in text  # the rows with missing / corrupt images are reported
  executions = _executions(out)
  assert executions.get('DataGate') == 1
  assert 'Transform' not in executions and 'Trainer' not in executions
  assert _versions(out) == []
