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


def write_plots(uri, histograms):
  """TFMA's plots output, as a CalibrationPlot writes it: {(slice column or None, value, model):
  [(upper threshold, clicks, summed predictions, rows)] in prediction order}."""
  with tf.io.TFRecordWriter(os.path.join(uri, 'plots-00000-of-00001.tfrecord')) as writer:
    for (column, value, model), buckets in histograms.items():
      plots = metrics_for_slice_pb2.PlotsForSlice()
      if column:
        plots.slice_key.single_slice_keys.add(column=column, bytes_value=value.encode())
      kv = plots.plot_keys_and_values.add()
      kv.key.model_name = model
      lower = float('-inf')
      for upper, clicks, predictions, rows in buckets:
        kv.value.calibration_histogram_buckets.buckets.add(
            lower_threshold_inclusive=lower, upper_threshold_exclusive=upper,
            total_weighted_label={'value': clicks},
            total_weighted_refined_prediction={'value': predictions},
            num_weighted_examples={'value': rows})
        lower = upper
      writer.write(plots.SerializeToString())


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
  calibration, clicks = results.new(OVERALL, CALIBRATION), results_lib.click_rate(40, 800)
  assert calibration.value == pytest.approx(1.2)  # 0.06 / 0.05, with the click rate's interval
  assert (calibration.lower, calibration.upper) == (0.06 / clicks.upper, 0.06 / clicks.lower)
  assert results.new('device=mobile', AUC).value == 0.68
  assert results.served('device=mobile', AUC) is None
  assert results.slices() == ['device=mobile'] and results.slices('category=') == []
  new, diff, challenger = results.gate_inputs()
  assert set(new) == {AUC, LOGLOSS} and set(diff) == {AUC} and challenger == {}
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


def _challenger_comparison():
  return results_lib.ChallengerComparison(
      name='logistic regression', model={AUC: 0.71}, challenger={AUC: 0.73},
      change={AUC: Estimate(-0.02, -0.035, -0.004), LOGLOSS: Estimate(0.003, 0.001, 0.005)},
      resampled='ads (ad_id)', seconds=1.5)


def test_the_challenger_comparison_is_read_back_and_gated(tmp_path):
  uri = str(tmp_path / 'evaluation')
  _write(uri, _model_rows(None, None, '', 0.71, 0.06))
  assert results_lib.Results(uri).challenger is None
  results_lib.write_challenger(uri, _challenger_comparison())
  results = results_lib.Results(uri)
  assert results.challenger == _challenger_comparison()
  assert results.challenger.margin_words() == '-0.0200 [-0.0350, -0.0040]'
  assert results.gate_inputs()[2] == _challenger_comparison().change


def _month(rng, ads=100, rows_per_ad=120):
  """Rows of `ads` ads, each with its own click-rate effect shared by all its rows."""
  ad = np.repeat(np.arange(ads), rows_per_ad)
  ad_effect = rng.normal(0, 1.0, ads)[ad]
  row_effect = rng.normal(0, 0.5, len(ad))
  truth = 1 / (1 + np.exp(-(-3 + ad_effect + row_effect)))
  labels = (rng.random(len(ad)) < truth).astype(int)
  return ad, row_effect, truth, labels


def test_weighted_auc_with_unit_weights_is_the_auc_ties_included():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 2, 500)
  scores = np.round(rng.random(500) + 0.3 * labels, 1)  # many ties
  weighted = results_lib.WeightedAuc(labels, scores)
  assert weighted(np.ones(500)) == pytest.approx(results_lib.auc(labels, scores))
  # Integer weights are repeated rows.
  weights = rng.integers(0, 3, 500)
  repeated = np.repeat(np.arange(500), weights)
  assert weighted(weights.astype(float)) == pytest.approx(
      results_lib.auc(labels[repeated], scores[repeated]))


def test_a_scorer_against_itself_has_no_change_and_a_one_class_month_none():
  rng = np.random.default_rng(2)
  ad, _, truth, labels = _month(rng)
  assert results_lib.paired_change(labels, truth, truth, ad) == {
      AUC: Estimate(0.0, 0.0, 0.0), LOGLOSS: Estimate(0.0, 0.0, 0.0)}
  assert results_lib.paired_change(np.zeros(10, int), truth[:10], truth[:10], ad[:10]) == {}
  assert results_lib.auc_gap(np.zeros(10, int), truth[:10], truth[:10], ad[:10]) is None


def test_the_interval_brackets_the_change_and_is_wider_when_ads_are_resampled():
  rng = np.random.default_rng(3)
  ad, row_effect, truth, labels = _month(rng)
  # A model that knows only the row-level part: clearly worse than the oracle.
  blind = 1 / (1 + np.exp(-(-3 + row_effect)))
  by_ad = results_lib.paired_change(labels, blind, truth, ad)
  by_row = results_lib.paired_change(labels, blind, truth, np.arange(len(ad)))
  assert by_ad[AUC].value == pytest.approx(
      results_lib.auc(labels, blind) - results_lib.auc(labels, truth))
  assert by_ad[LOGLOSS].value == pytest.approx(
      results_lib.log_loss(labels, blind) - results_lib.log_loss(labels, truth))
  assert by_ad[AUC].lower < by_ad[AUC].value < by_ad[AUC].upper < 0
  assert 0 < by_ad[LOGLOSS].lower < by_ad[LOGLOSS].value < by_ad[LOGLOSS].upper
  assert by_ad[AUC].value == by_row[AUC].value
  # Rows of one ad move together: resampling rows understates the noise.
  for metric in (AUC, LOGLOSS):
    assert (by_ad[metric].upper - by_ad[metric].lower >
            1.5 * (by_row[metric].upper - by_row[metric].lower))
  # The same seed gives the same interval; the benchmark's name gives the AUC's.
  assert results_lib.paired_change(labels, blind, truth, ad) == by_ad
  assert results_lib.auc_gap(labels, blind, truth, ad) == by_ad[AUC]


def test_click_rate_has_the_wilson_interval():
  # Textbook values of the 95 % Wilson score interval.
  assert results_lib.click_rate(0, 10) == Estimate(0.0, 0.0, pytest.approx(0.2775, abs=1e-4))
  half = results_lib.click_rate(5, 10)
  assert (half.lower, half.upper) == (pytest.approx(0.2366, abs=1e-4),
                                      pytest.approx(0.7634, abs=1e-4))
  assert results_lib.click_rate(10, 10).upper == pytest.approx(1.0)


def test_reliability_bins_hold_about_equal_rows_and_never_split_a_bucket():
  # (clicks, summed predictions, rows) per bucket: 100 rows at 0.01, 0.02, ... 0.10, then
  # one empty bucket and one heavy bucket of 500 rows at 0.5.
  histogram = np.array([(i, 100 * 0.01 * i, 100) for i in range(1, 11)] + [(0, 0, 0)] +
                       [(260, 250, 500)], np.float64)
  bins = results_lib.reliability(histogram, bins=5)
  # 1,500 rows, 300 a bin; a bucket goes where its middle row falls: the heavy one alone.
  assert [b.rows for b in bins] == [300, 300, 300, 100, 500]
  assert bins[0].mean_prediction == pytest.approx(0.02)
  assert bins[0].click_rate == results_lib.click_rate(6, 300)
  assert bins[-1].mean_prediction == 0.5 and bins[-1].click_rate.value == 0.52


def test_reliability_from_the_calibration_plot_per_model_and_slice(tmp_path):
  uri = str(tmp_path / 'evaluation')
  _write(uri, _model_rows(None, None, 'candidate', 0.71, 0.06) +
         _model_rows(None, None, 'baseline', 0.70, 0.05))
  buckets = [(0.1, 3, 4.0, 80), (0.2, 10, 7.5, 50), (float('inf'), 0, 0, 0)]
  write_plots(uri, {(None, None, 'candidate'): buckets,
                    ('device', 'mobile', 'candidate'): buckets[:1]})
  results = results_lib.Results(uri)
  overall = results.reliability(OVERALL, results.candidate, bins=2)
  assert [(b.rows, b.mean_prediction, b.click_rate.value) for b in overall] == [
      (80, 0.05, 3 / 80), (50, 0.15, 0.2)]
  assert len(results.reliability('device=mobile', results.candidate)) == 1
  assert results.reliability(OVERALL, results.baseline) is None  # no plot for it
  no_plots = str(tmp_path / 'no_plots')
  _write(no_plots, _model_rows(None, None, '', 0.71, 0.06))
  assert results_lib.Results(no_plots).reliability(OVERALL, '') is None


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


def test_intervals_are_read_clipped_to_where_the_metric_can_lie(tmp_path):
  uri = str(tmp_path / 'evaluation')
  _write(uri, [  # a small slice: TFMA's jackknife intervals reach past the metric's range
      (None, None, 'candidate', AUC, False, Estimate(0.25, -0.2698, 0.7429)),
      (None, None, 'candidate', LOGLOSS, False, Estimate(0.02, -0.01, 0.05)),
      (None, None, 'candidate', AUC, True, Estimate(-0.6, -1.3, 0.1)),
      (None, None, 'candidate', LOGLOSS, True, Estimate(0.4, -0.5, 1.3)),
      (None, None, 'baseline', AUC, False, Estimate(0.85, 0.61, 1.2))])
  results = results_lib.Results(uri)
  assert results.new(OVERALL, AUC) == Estimate(0.25, 0.0, 0.7429)
  assert results.new(OVERALL, LOGLOSS) == Estimate(0.02, 0.0, 0.05)
  assert results.served(OVERALL, AUC) == Estimate(0.85, 0.61, 1.0)
  assert results.change(OVERALL, AUC) == Estimate(-0.6, -1.0, 0.1)  # new minus served
  assert results.change(OVERALL, LOGLOSS) == Estimate(0.4, -0.5, 1.3)  # no bound
