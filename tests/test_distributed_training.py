"""The Trainer's run_fn on a cluster of 2 worker processes (MultiWorkerMirroredStrategy on
127.0.0.1) against the same run_fn in one process, on the same tiny data."""
import glob
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import distributed_bench
from models import distribution
from models import features
from models import model as model_lib
from models import signatures
from models import trainer
from tests.conftest import raw_row
from tests.test_model import _raw_args
from tests.test_model import _write_shards

# Small and fast enough to learn the fixture label (clicked on every 4th row, as `hour` says);
# with the image tower, which fails on the empty batches of a replica that ran dry.
HPARAMS = model_lib.HParams(batch_size=32, learning_rate=0.01, max_epochs=3)
TIMEOUT_S = 600  # a guard against a hung collective, not a time to meet
EPOCHS_LOGGED = re.compile(r'(?:The chief|A non-chief replica) trained (\d+) epochs')


@pytest.fixture(scope='module')
def splits(tmp_path_factory):
  """ExampleGen-like shards of fixture rows: train and validation in 3 files each (so the 2
  workers' shares differ), eval in 2."""
  rng = np.random.default_rng(1)
  rows = [raw_row(i, rng) for i in range(512)]
  root = tmp_path_factory.mktemp('examples')
  found = {}
  for name, part, shards in (('train', rows[:256], 3), ('validation', rows[256:384], 3),
                             ('eval', rows[384:], 2)):
    os.makedirs(root / name)
    _write_shards(root / name, part, shards)
    found[name] = str(root / name / 'shard-*.gz')
  return found


def _fn_args(splits, transform_dir, model_root):
  return {'train_files': [splits['train']], 'eval_files': [splits['validation']],
          'transform_output': transform_dir,
          'serving_model_dir': os.path.join(model_root, 'Format-Serving'),
          'custom_config': {'hparams': HPARAMS.in_use()}}


def test_the_chief_is_worker_0_or_the_chief_task(monkeypatch):
  def config(cluster, task_type, index):
    monkeypatch.setenv(distribution.TF_CONFIG, json.dumps(
        {'cluster': cluster, 'task': {'type': task_type, 'index': index}}))

  monkeypatch.delenv(distribution.TF_CONFIG, raising=False)
  assert distribution.is_chief() and distribution.replicas() == 1
  config({'worker': ['a:1']}, 'worker', 0)  # one task: the single-process path
  assert distribution.cluster() is None
  config({'worker': ['a:1', 'b:1']}, 'worker', 1)
  assert not distribution.is_chief() and distribution.replicas() == 2
  config({'worker': ['a:1', 'b:1']}, 'worker', 0)
  assert distribution.is_chief()
  config({'chief': ['c:1'], 'worker': ['a:1', 'b:1']}, 'worker', 0)  # Vertex AI's pools
  assert not distribution.is_chief() and distribution.replicas() == 3
  config({'chief': ['c:1'], 'worker': ['a:1']}, 'chief', 0)
  assert distribution.is_chief()
  config({'chief': ['c:1'], 'worker': ['a:1'], 'ps': ['p:1']}, 'chief', 0)
  with pytest.raises(ValueError, match='ParameterServerStrategy'):
    distribution.strategy()


def test_a_non_chief_writes_into_a_directory_it_deletes(monkeypatch, tmp_path):
  monkeypatch.setenv('TMPDIR', str(tmp_path / 'tmp'))
  os.makedirs(tmp_path / 'tmp')
  monkeypatch.setattr(distribution.tempfile, 'tempdir', None)  # re-read TMPDIR
  target = str(tmp_path / 'model' / 'Format-Serving')
  monkeypatch.setenv(distribution.TF_CONFIG, json.dumps(
      {'cluster': {'worker': ['a:1', 'b:1']}, 'task': {'type': 'worker', 'index': 1}}))
  with distribution.output_dir(target) as path:
    assert path != target and path.startswith(str(tmp_path / 'tmp'))
    os.makedirs(path)
  assert not os.listdir(tmp_path / 'tmp') and not os.path.exists(tmp_path / 'model')
  monkeypatch.delenv(distribution.TF_CONFIG)
  with distribution.output_dir(target) as path:
    assert path == target


@pytest.mark.sample_fields
@pytest.mark.slow
def test_two_workers_train_one_export_as_good_as_one_process(transformed, splits, tmp_path,
                                                             monkeypatch):
  cluster_dir = tmp_path / 'cluster'
  # Each worker is given its own Model directory (TFX gives all the same one), so a second
  # export would show; the non-chief's TMPDIR must be left empty.
  model_roots = [str(cluster_dir / f'model-{i}') for i in range(2)]
  replicas = distributed_bench.local_cluster(
      [_fn_args(splits, transformed[0], root) for root in model_roots], str(cluster_dir),
      TIMEOUT_S)
  logs = [open(r.log).read() for r in replicas]
  assert [r.returncode for r in replicas] == [0, 0], logs[0][-3000:] + logs[1][-3000:]

  exports = glob.glob(str(cluster_dir / '**' / 'saved_model.pb'), recursive=True)
  # The chief's model and its challenger (models/challenger.py); nothing from the other.
  model_export = os.path.join(model_roots[0], 'Format-Serving', 'saved_model.pb')
  assert sorted(exports) == [
      os.path.join(model_roots[0], 'Challenger-Serving', 'saved_model.pb'), model_export]
  exports = [model_export]
  assert not os.path.exists(model_roots[1])
  assert not os.listdir(replicas[1].tmpdir)
  record = trainer.read_used_hparams(model_roots[0])
  assert record['replicas'] == 2
  # Early stopping decided the same on both workers (else one would wait on the other forever).
  epochs = [int(EPOCHS_LOGGED.search(log).group(1)) for log in logs]
  assert epochs == [record['epochs_trained']] * 2

  monkeypatch.delenv(distribution.TF_CONFIG, raising=False)
  single_root = str(tmp_path / 'single')
  trainer.run_fn(distributed_bench.tfx_fn_args(_fn_args(splits, transformed[0], single_root)))
  single_model = os.path.join(single_root, 'Format-Serving')
  assert trainer.read_used_hparams(single_root)['replicas'] == 1

  cluster_auc = distributed_bench.eval_auc(os.path.dirname(exports[0]), splits['eval'])
  single_auc = distributed_bench.eval_auc(single_model, splits['eval'])
  assert single_auc > 0.9  # it learned, so the comparison means something
  assert abs(cluster_auc - single_auc) <= 0.01, (cluster_auc, single_auc)
  # The cluster's export is calibrated and serves raw fields through serving_default too.
  assert record['calibration'] != {'scale': 1.0, 'bias': 0.0}
  loaded = tf.saved_model.load(os.path.dirname(exports[0]))
  assert set(loaded.signatures) == {signatures.SERVING_SIGNATURE,
                                    signatures.EXAMPLES_SIGNATURE,
                                    signatures.TRANSFORM_SIGNATURE}
  rng = np.random.default_rng(2)
  rows = [raw_row(i, rng) for i in range(4)]
  served = loaded.signatures[signatures.SERVING_SIGNATURE](**_raw_args(rows))[
      signatures.PREDICTION_KEY].numpy()
  clicked = np.array([row[features.LABEL_KEY] for row in rows]) == 1
  np.testing.assert_array_equal(served > 0.5, clicked)
