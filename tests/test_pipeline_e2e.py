"""End-to-end runs of the real pipeline (LocalDagRunner, SQLite MLMD, Beam) on tiny data."""
import dataclasses
import os

from ml_metadata import metadata_store
import pytest

import local_runner
from datagen.generate import generate_span
from pipeline import config as config_lib

pytestmark = pytest.mark.slow
ROWS = 4000
# Tiny data: a short training budget keeps each run around a minute on 2 cores.
CONFIG = config_lib.PipelineConfig(train_steps=300, epochs=3,
                                   gate=config_lib.GateConfig(auc_floor=0.6))


def _executions(output_root):
  store = metadata_store.MetadataStore(local_runner.metadata_config(output_root))
  return {t.name.rsplit('.', 1)[-1]: len(store.get_executions_by_type(t.name))
          for t in store.get_execution_types()}


def _versions(output_root):
  model_dir = os.path.join(output_root, 'serving', CONFIG.model_name)
  return sorted(os.listdir(model_dir)) if os.path.isdir(model_dir) else []


def test_good_model_is_pushed_and_worse_model_is_not(tmp_path, capsys):
  data, out = str(tmp_path / 'data'), str(tmp_path / 'out')
  generate_span(data, 1, ROWS)
  generate_span(data, 2, ROWS)

  assert local_runner.run(data, out, CONFIG)
  first = capsys.readouterr().out
  versions = _versions(out)
  assert len(versions) == 1, first
  version_dir = os.path.join(out, 'serving', CONFIG.model_name, versions[0])
  assert os.path.exists(os.path.join(version_dir, 'saved_model.pb'))
  assert 'Decision: BLESSED' in first and 'oracle' in first and 'span 2' in first

  # Same data, a handful of training steps: clearly worse than the served model.
  worse = dataclasses.replace(CONFIG, train_steps=2, epochs=1)
  assert local_runner.run(data, out, worse)
  second = capsys.readouterr().out
  assert 'Decision: NOT blessed' in second, second
  assert 'Pushed: nothing' in second
  assert _versions(out) == versions  # nothing new pushed
  with open(os.path.join(out, 'last_run_summary.md')) as f:
    assert 'NOT blessed' in f.read()


def test_drifted_span_stops_before_transform(tmp_path, capsys):
  data, out = str(tmp_path / 'data'), str(tmp_path / 'out')
  generate_span(data, 1, ROWS)
  generate_span(data, 2, ROWS, drift=True)

  assert not local_runner.run(data, out, CONFIG)
  text = capsys.readouterr().out
  assert 'STOPPED' in text
  assert 'advertiser' in text and 'category' in text  # drifted fields named in words
  assert 'rejected' in text  # the rows with missing / corrupt images are reported
  executions = _executions(out)
  assert executions.get('DataGate') == 1
  assert 'Transform' not in executions and 'Trainer' not in executions
  assert _versions(out) == []
