"""The one reader of the Evaluator's output, and the same metrics computed from labels."""
import os

import numpy as np
import pytest
from sklearn import metrics as sk_metrics
import tensorflow as tf
from tensorflow_model_analysis.proto import metrics_for_slice_pb2

from components import evaluation_results as results_lib
from components.evaluation_results import AUC, CALIBRATION, EXAMPLE_COUNT, LOGLOSS, MEAN_LABEL
from components.evaluation_results import MEAN_PREDICTION, OVERALL, Estimate


def _write(uri, rows):
  """TFMA's metrics output: rows of (slice column or None, value, model, metric, is_diff,
  Estimate)."""
  by_slice = {}
  for column, value, model, metric, is_diff, estimate in rows:
    if (column, value) not in by_slice:
      by_slice[(column, value)] = metrics_for_slice_pb2.MetricsForSlice()
      if column:
        by_slice[(column, value)].slice_key.single_slice_keys.add(
            column=column, bytes_value=value.encode())
    kv = by_slice[(column, value)].metric_keys_and_values.add()
    kv.key.name, kv.key.model_name, kv.key.is_diff = metric, model, is_diff
    kv.value.double_value.value = estimate.value
    if estimate.lower is not None:
      kv.confidence_interval.lower_bound.double_value.value = estimate.lower
      kv.confidence_interval.upper_bound.double_value.value = estimate.upper
  os.makedirs(uri, exist_ok=True)
  with tf.io.TFRecordWriter(os.path.join(uri, 'metrics-00000-of-00001.tfrecord')) as writer:
    for metrics in by_slice.values():
      writer.write(metrics.SerializeToString())


def _model_rows(column, value, model, auc, mean_prediction):
  return [(column, value, model, AUC, False, Estimate(auc, auc - 0.02, auc + 0.02)),
          (column, value, model, LOGLOSS, False, Estimate(0.17)),
          (column, value, model, MEAN_PREDICTION, False, Estimate(mean_prediction)),
          (column, value, model, MEAN_LABEL, False, Estimate(0.05)),
          (column, value, model, EXAMPLE_COUNT, False, Estimate(800))]


def test_new_and_served_model_per_slice_with_intervals_and_paired_change(tmp_path):
  uri = str(tmp_path / 'evaluation')
  _write(uri, _model_rows(None, None, 'candidate', 0.71, 0.06) +
         _model_rows(None, None, 'baseline', 0.70, 0.05) +
         _model_rows('device', 'mobile', 'candidate', 0.68, 0.05) +
         [(None, None, 'candidate', AUC, True, Estimate(0.01, -0.004, 0.024))])
  results = results_lib.Results(uri)
  assert (results.candidate, results.baseline) == ('candidate', 'baseline')
  assert results.new(OVERALL, AUC) == Estimate(0.71, 0.69, 0.73)
  assert results.served(OVERALL, AUC).value == 0.70
  assert results.change(OVERALL, AUC) == Estimate(0.01, -0.004, 0.024)
  assert results.new(OVERALL, CALIBRATION).value == pytest.approx(1.2)
  assert results.new('device=mobile', AUC).value == 0.68
  assert results.served('device=mobile', AUC) is None
  assert results.slices() == ['device=mobile'] and results.slices('category=') == []
  new, diff = results.gate_inputs()
  assert set(new) == {AUC, LOGLOSS} and set(diff) == {AUC}
  assert results.overall(results.baseline) == {
      AUC: 0.70, LOGLOSS: 0.17, CALIBRATION: pytest.approx(1.0), MEAN_PREDICTION: 0.05,
      MEAN_LABEL: 0.05, EXAMPLE_COUNT: 800}


def test_a_lone_model_has_no_served_figures(tmp_path):
  uri = str(tmp_path / 'evaluation')
  _write(uri, _model_rows(None, None, '', 0.71, 0.06))  # TFMA names no model without a baseline
  results = results_lib.Results(uri)
  assert (results.candidate, results.baseline) == ('', None)
  assert results.overall(results.candidate)[AUC] == 0.71
  assert results.overall(results.baseline) is None
  assert results.served(OVERALL, AUC) is None and results.change(OVERALL, AUC) is None
  assert results.gate_inputs()[1] == {}


def test_figures_match_a_pairwise_auc_and_the_textbook_log_loss():
  rng = np.random.default_rng(3)
  labels = (rng.random(400) < 0.2).astype(int)
  scores = np.round(rng.random(400) * 0.5 + 0.3 * labels, 2)  # ties
  pos, neg = scores[labels == 1], scores[labels == 0]
  pairwise = ((pos[:, None] > neg).sum() + (pos[:, None] == neg).sum() / 2) / (len(pos) *
                                                                              len(neg))
  values = results_lib.figures(labels, scores)
  assert values[AUC] == pytest.approx(pairwise)
  assert values[AUC] == pytest.approx(sk_metrics.roc_auc_score(labels, scores))
  assert values[LOGLOSS] == pytest.approx(sk_metrics.log_loss(labels, scores))
  assert values[CALIBRATION] == pytest.approx(scores.mean() / labels.mean())
  assert values[EXAMPLE_COUNT] == 400
  no_clicks = results_lib.figures(np.zeros(3), np.array([0.1, 0.2, 0.0]))
  assert np.isnan(no_clicks[AUC]) and np.isnan(no_clicks[CALIBRATION])
  assert no_clicks[LOGLOSS] == pytest.approx(-np.log([0.9, 0.8, 1 - 1e-7]).mean())
