"""The benchmark's ad-resampled interval for the AUC gap between a model and the oracle."""
import numpy as np
import pytest

from benchmarks import auc_interval
from components import evaluation_results


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
  weighted = auc_interval._WeightedAuc(labels, scores)  # pylint: disable=protected-access
  assert weighted(np.ones(500)) == pytest.approx(evaluation_results.auc(labels, scores))
  # Integer weights are repeated rows.
  weights = rng.integers(0, 3, 500)
  repeated = np.repeat(np.arange(500), weights)
  assert weighted(weights.astype(float)) == pytest.approx(
      evaluation_results.auc(labels[repeated], scores[repeated]))


def test_a_scorer_against_itself_has_a_zero_gap_and_a_one_class_month_none():
  rng = np.random.default_rng(2)
  ad, _, truth, labels = _month(rng)
  assert auc_interval.auc_gap(labels, truth, truth, ad) == auc_interval.Estimate(0.0, 0.0, 0.0)
  assert auc_interval.auc_gap(np.zeros(10, int), truth[:10], truth[:10], ad[:10]) is None


def test_the_interval_brackets_the_gap_and_is_wider_when_ads_are_resampled():
  rng = np.random.default_rng(3)
  ad, row_effect, truth, labels = _month(rng)
  # A model that knows only the row-level part: clearly worse than the oracle.
  blind = 1 / (1 + np.exp(-(-3 + row_effect)))
  by_ad = auc_interval.auc_gap(labels, blind, truth, ad)
  by_row = auc_interval.auc_gap(labels, blind, truth, np.arange(len(ad)))
  assert by_ad.value == pytest.approx(
      evaluation_results.auc(labels, blind) - evaluation_results.auc(labels, truth))
  assert by_ad.lower < by_ad.value < by_ad.upper < 0
  assert by_ad.value == by_row.value
  # Rows of one ad move together: resampling rows understates the noise.
  assert by_ad.upper - by_ad.lower > 1.5 * (by_row.upper - by_row.lower)
  # The same seed gives the same interval.
  assert auc_interval.auc_gap(labels, blind, truth, ad) == by_ad
