"""The model benchmark's helpers on tiny data: cohort metrics, tables, peers, data readers."""
import os

import numpy as np
import pandas as pd
import pytest

from benchmarks import model_bench
from components.gate_rule import Estimate
from datagen.generate import generate_span
from models import data_layout
from models import features
from pipeline import summary
from tests.conftest import to_example


def test_by_cohort_splits_rows_and_computes_each_figure():
  labels = np.array([1, 0, 0, 1, 0, 0])
  p = np.array([0.9, 0.2, 0.1, 0.3, 0.4, 0.05])
  is_new = np.array([True, True, False, False, False, True])
  result = model_bench.by_cohort(labels, p, is_new)
  assert set(result) == {model_bench.ALL, features.COHORT_NEW, features.COHORT_ESTABLISHED}
  assert result[model_bench.ALL]['auc'] == pytest.approx(7 / 8)
  new, established = result[features.COHORT_NEW], result[features.COHORT_ESTABLISHED]
  assert (new['auc'], new['rows'], new['clicks']) == (1.0, 3, 1)
  assert new['calibration'] == pytest.approx((0.9 + 0.2 + 0.05) / 3 / (1 / 3))
  assert established['auc'] == pytest.approx(0.5)
  assert established['calibration'] == pytest.approx((0.1 + 0.3 + 0.4) / 3 / (1 / 3))
  assert established['logloss'] == pytest.approx(summary.log_loss(labels[2:5], p[2:5]))


def test_by_cohort_without_a_cohort_key_or_an_empty_group():
  labels, p = np.array([0, 1, 0]), np.array([0.1, 0.8, 0.3])
  assert set(model_bench.by_cohort(labels, p, None)) == {model_bench.ALL}
  assert set(model_bench.by_cohort(labels, p, np.zeros(3, bool))) == {
      model_bench.ALL, features.COHORT_ESTABLISHED}
  assert np.isnan(model_bench.figures(np.zeros(2), np.array([0.1, 0.2]))['calibration'])


def test_new_ads_are_those_absent_from_the_training_rows():
  key = features.cohort_key_feature().name
  month = pd.DataFrame({key: ['a', 'b', 'c', 'a']})
  training = pd.DataFrame({key: ['a', 'c', 'z']})
  assert model_bench.new_ads(month, training).tolist() == [False, True, False, False]


def test_quality_table_cells():
  rows = [
      model_bench.Row('20000, seed 7', 'model', 'all', gate_auc=Estimate(0.7, 0.68, 0.72),
                      gate_gain=Estimate(0.01, -0.002, 0.022),
                      next_month={'auc': 0.69, 'logloss': 0.17561, 'calibration': 1.1234,
                                  'rows': 120, 'clicks': 7}, next_gain=-0.003,
                      oracle_gap=Estimate(-0.01, -0.03, 0.005)),
      model_bench.Row('20000, seed 7', 'oracle', 'new'),
  ]
  lines = model_bench.quality_table(rows).split('\n')
  assert len(lines) == 4
  assert len({line.count('|') for line in lines}) == 1  # every line has the header's columns
  assert lines[2] == ('| 20000, seed 7 | model | all | 0.7000 [0.6800, 0.7200] | '
                      '+0.0100 [-0.0020, +0.0220] | 0.6900 | -0.0100 [-0.0300, +0.0050] | '
                      '-0.0030 | 0.1756 | 1.123 | 120 (7) |')
  assert lines[3] == '| 20000, seed 7 | oracle | new | - | - | - | - | - | - | - | - |'


def _tabular_frame(rng, n):
  """Random tabular fields; the click depends on one categorical and one numeric field."""
  frame = {}
  for feature in model_bench.tabular_features():
    if feature.role == features.CATEGORICAL:
      frame[feature.name] = rng.choice(feature.domain or ('x1', 'x2', 'x3'), n)
    elif feature.role == features.INTEGER:
      frame[feature.name] = rng.integers(feature.value_range[0], feature.value_range[1] + 1, n)
    else:
      frame[feature.name] = rng.uniform(*feature.value_range, n)
  frame = pd.DataFrame(frame)
  signal = next(f for f in features.with_role(features.CATEGORICAL) if f.domain)
  numeric = features.with_role(features.NUMERIC)[0]
  logit = (-1.5 + 2.5 * (frame[signal.name] == signal.domain[0]) +
           0.8 * np.log1p(frame[numeric.name]))
  probability = (1 / (1 + np.exp(-logit))).to_numpy()
  return frame, (rng.random(n) < probability).astype(int), probability


def test_peers_learn_the_tabular_signal_and_accept_unseen_categories():
  rng = np.random.default_rng(0)
  train, train_labels, _ = _tabular_frame(rng, 3000)
  test, test_labels, truth = _tabular_frame(rng, 2000)
  unknown = next(f for f in features.with_role(features.CATEGORICAL) if not f.domain)
  test.loc[:9, unknown.name] = 'never_seen'
  oracle = summary.auc(test_labels, truth)
  for name, peer in model_bench.peers().items():
    peer.fit(train, train_labels)
    p = peer.predict_proba(test)[:, 1]
    assert summary.auc(test_labels, p) > oracle - 0.03, name
    assert abs(p.mean() / test_labels.mean() - 1) < 0.1, name


def test_read_examples_decodes_the_tabular_fields(raw_rows, tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  for split, rows in (('train', raw_rows[:40]), ('validation', raw_rows[40:])):
    os.makedirs(tmp_path / f'Split-{split}')
    with tf.io.TFRecordWriter(str(tmp_path / f'Split-{split}' / 'data.gz'),
                              options='GZIP') as writer:
      for row in rows:
        writer.write(to_example(row).SerializeToString())
  frame = model_bench.read_examples(str(tmp_path), ('train', 'validation'))
  key = features.cohort_key_feature().name
  assert len(frame) == len(raw_rows)
  assert frame[key].tolist() == [row[key] for row in raw_rows]
  assert frame[features.LABEL_KEY].tolist() == [row[features.LABEL_KEY] for row in raw_rows]
  for feature in model_bench.tabular_features():  # float32 in a tf.Example: approx
    assert frame[feature.name].tolist() == pytest.approx([row[feature.name] for row in raw_rows])


def test_read_month_and_serving_inputs(tmp_path):
  root = str(tmp_path)
  generate_span(root, 1, 200)
  month = model_bench.read_month(root, 1)
  truth = pd.read_csv(data_layout.ground_truth_csv(root, 1))
  assert len(month) == 200
  assert month[model_bench.ORACLE].to_numpy() == pytest.approx(truth.iloc[:, 1].to_numpy())
  inputs = model_bench.serving_inputs(month, data_layout.span_dir(root, 1))
  assert list(inputs) == [f.name for f in features.serving_features()]
  assert all(len(values) == 200 for values in inputs.values())
  image = features.image_feature().name
  with open(os.path.join(data_layout.span_dir(root, 1),
                         month[features.IMAGE_PATH_COLUMN][5]), 'rb') as f:
    assert inputs[image][5] == f.read()
