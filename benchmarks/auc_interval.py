"""A 95 % interval for the AUC gap between two scorers of the same rows, resampling ads.

The benchmark compares the model with the oracle on one month. Rows of the same ad share
its creative, advertiser and click rate, so they are not independent draws: an interval that
resamples rows would be too narrow, most of all for new ads (a few hundred ads, a hundred or
so clicks). This one is a paired Poisson bootstrap over clusters: each resample weights every
cluster (ad) by a Poisson(1) draw, and both scorers are measured on the same weighted rows.
"""
from typing import Optional

import numpy as np

from components import evaluation_results
from components.evaluation_results import Estimate

RESAMPLES = 400


class _WeightedAuc:
  """AUC of fixed scores under per-row weights, O(rows) per call after one sort."""

  def __init__(self, labels: np.ndarray, scores: np.ndarray):
    # Rows with tied scores form one block; a positive beats the negatives of lower blocks
    # and half those of its own (evaluation_results.auc's tie rule).
    _, self._block = np.unique(scores, return_inverse=True)
    self._positive = labels == 1

  def __call__(self, weights: np.ndarray) -> float:
    pos = np.bincount(self._block, weights * self._positive)
    neg = np.bincount(self._block, weights * ~self._positive)
    below = np.cumsum(neg) - neg
    total = pos.sum() * neg.sum()
    return float((pos * (below + neg / 2)).sum() / total) if total else float('nan')


def auc_gap(labels: np.ndarray, scores: np.ndarray, reference: np.ndarray,
            clusters: np.ndarray, resamples: int = RESAMPLES,
            seed: int = 0) -> Optional[Estimate]:
  """AUC(scores) - AUC(reference) on all rows, with the 2.5 and 97.5 percentiles of that gap
  over `resamples` cluster-weighted resamples; None without both classes."""
  if labels.min() == labels.max():
    return None
  _, cluster = np.unique(clusters, return_inverse=True)
  model, oracle = _WeightedAuc(labels, scores), _WeightedAuc(labels, reference)
  value = evaluation_results.auc(labels, scores) - evaluation_results.auc(labels, reference)
  rng = np.random.default_rng(seed)
  gaps = []
  for _ in range(resamples):
    weights = rng.poisson(1.0, cluster.max() + 1)[cluster].astype(float)
    gaps.append(model(weights) - oracle(weights))
  lower, upper = np.nanpercentile(gaps, [2.5, 97.5])
  return Estimate(value, float(lower), float(upper))
