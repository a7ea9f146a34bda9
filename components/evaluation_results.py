"""The Evaluator's results, read one way, and the same metrics computed from labels.

TFMA writes a ModelEvaluation's metrics per slice and model, each with its 95 % interval, and
for the new model the paired change against the served one; with a CalibrationPlot in the eval
config, also each model's calibration histogram. `Results` reads them for the gate and the
reports, the run summary, the console and monitoring, under the metric and model names TFMA
uses (defined here once). `figures` computes the same metrics from labels and
probabilities, for what TFMA does not score (the oracle, the benchmark's peers, the served
model on a new month), so that both sides are named and defined alike; `paired_change` gives
the change between two scorers of the same rows with a 95 % interval that resamples ads, and
the Evaluator writes the model's against its challenger (CHALLENGER_FILE) with it.
"""
import dataclasses
import functools
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import stats
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import calibration as tfma_calibration
from tensorflow_model_analysis.metrics import confusion_matrix_metrics
from tensorflow_model_analysis.metrics import cross_entropy_metrics
from tensorflow_model_analysis.metrics import example_count

# The names TFMA writes for the metrics pipeline.eval_config asks for.
AUC = confusion_matrix_metrics.AUC_NAME
LOGLOSS = cross_entropy_metrics.BINARY_CROSSENTROPY_NAME  # Keras' BinaryCrossentropy
MEAN_LABEL = tfma_calibration.MEAN_LABEL_NAME
MEAN_PREDICTION = tfma_calibration.MEAN_PREDICTION_NAME
EXAMPLE_COUNT = example_count.EXAMPLE_COUNT_NAME
# Mean prediction / mean label, TFMA's Calibration metric; derived here from the two means,
# which the eval config computes anyway.
CALIBRATION = tfma_calibration.CALIBRATION_NAME
# What `figures` computes and `Results.overall` reads.
FIGURES = (AUC, LOGLOSS, CALIBRATION, MEAN_PREDICTION, MEAN_LABEL, EXAMPLE_COUNT)

OVERALL = ''  # the overall slice's name
# TFMA names the models only when there is a baseline (the served model); a lone model is ''.
CANDIDATE, BASELINE, LONE = tfma.CANDIDATE_KEY, tfma.BASELINE_KEY, ''


@dataclasses.dataclass(frozen=True)
class Estimate:
  value: float
  lower: Optional[float] = None  # 95 % interval, when TFMA computed one
  upper: Optional[float] = None

  def words(self, signed: bool = False) -> str:
    fmt = '{:+.4f}' if signed else '{:.4f}'
    if self.lower is None:
      return fmt.format(self.value)
    return f'{fmt.format(self.value)} [{fmt.format(self.lower)}, {fmt.format(self.upper)}]'


@dataclasses.dataclass(frozen=True)
class CalibrationBin:
  """Eval rows whose predictions fall in one range: how many, what the model predicted for
  them on average, and how often they were clicked (with its 95 % interval)."""
  rows: float
  mean_prediction: float
  click_rate: Estimate


def click_rate(clicks: float, rows: float, z: float = 1.96) -> Estimate:
  """clicks / rows with its 95 % Wilson interval, which stays inside [0, 1] and is not empty
  at 0 or all clicks, unlike the normal approximation on a few dozen rows."""
  rate = clicks / rows
  centre = (rate + z * z / (2 * rows)) / (1 + z * z / rows)
  half = z / (1 + z * z / rows) * np.sqrt(rate * (1 - rate) / rows + z * z / (4 * rows * rows))
  return Estimate(rate, max(0.0, centre - half), min(1.0, centre + half))


def reliability(histogram: np.ndarray, bins: int) -> List[CalibrationBin]:
  """A reliability diagram's points: adjacent histogram buckets merged into about `bins`
  bins of equal rows, so that each point rests on enough rows to mean something (CTRs
  crowd the predictions near 0, where equal-width bins would be nearly all rows and the rest
  nearly empty). A bucket is never split: it goes to the bin its middle row falls in, so a
  heavy bucket (many rows with one prediction) is one point, and there may be fewer bins.

  Args:
    histogram: Rows of (clicks, summed predictions, rows) in prediction order.
    bins: How many bins at most.
  """
  filled = histogram[histogram[:, 2] > 0]
  middle = np.cumsum(filled[:, 2]) - filled[:, 2] / 2  # rows up to each bucket's middle
  group = np.floor(bins * middle / filled[:, 2].sum()).astype(int)
  result = []
  for index in np.unique(group):
    clicks, predictions, rows = filled[group == index].sum(axis=0)
    result.append(CalibrationBin(rows, predictions / rows, click_rate(clicks, rows)))
  return result


def calibration_histograms(evaluation_uri: str) -> Dict[Tuple[str, str], np.ndarray]:
  """(slice, model_name) -> TFMA's CalibrationPlot buckets as rows of (clicks, summed
  predictions, rows) in prediction order; empty when the eval config had no CalibrationPlot."""
  result = {}
  for plots in tfma.load_plots(evaluation_uri):
    for kv in plots.plot_keys_and_values:
      if kv.value.HasField('calibration_histogram_buckets'):
        buckets = kv.value.calibration_histogram_buckets.buckets
        result[(_slice_name(plots.slice_key), kv.key.model_name)] = np.array(
            [(b.total_weighted_label.value, b.total_weighted_refined_prediction.value,
              b.num_weighted_examples.value) for b in buckets], np.float64).reshape(-1, 3)
  return result


def _slice_name(slice_key) -> str:
  return ', '.join(f'{c.column}={c.bytes_value.decode() or c.int64_value}'
                   for c in slice_key.single_slice_keys) or OVERALL


# Where a metric can lie: TFMA's jackknife interval is mean +- t * standard error, which on a
# small slice reaches past these (e.g. an AUC of 0.25 [-0.27, 0.74]); read here, clipped.
_RANGES = {AUC: (0.0, 1.0), MEAN_LABEL: (0.0, 1.0), MEAN_PREDICTION: (0.0, 1.0),
           LOGLOSS: (0.0, float('inf'))}


def interval_within_range(metric: str, is_diff: bool, lower: float,
                          upper: float) -> Tuple[float, float]:
  """A 95 % interval clipped to where the metric (or a difference of two) can lie."""
  low, high = _RANGES.get(metric, (-float('inf'), float('inf')))
  if is_diff:
    low, high = low - high, high - low
  return max(low, lower), min(high, upper)


def evaluation_metrics(evaluation_uri: str) -> Dict[tuple, Estimate]:
  """(slice, model_name, metric, is_diff) -> Estimate, from TFMA's metrics output."""
  result = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    slice_name = _slice_name(metrics.slice_key)
    for kv in metrics.metric_keys_and_values:
      if not kv.value.HasField('double_value'):
        continue
      bounds = {}
      if kv.HasField('confidence_interval'):
        bounds = dict(zip(('lower', 'upper'), interval_within_range(
            kv.key.name, kv.key.is_diff, kv.confidence_interval.lower_bound.double_value.value,
            kv.confidence_interval.upper_bound.double_value.value)))
      result[(slice_name, kv.key.model_name, kv.key.name, kv.key.is_diff)] = Estimate(
          kv.value.double_value.value, **bounds)
  return result


def model_names(eval_config: tfma.EvalConfig) -> Tuple[str, Optional[str]]:
  """(candidate, baseline or None) model names in the config TFMA ran with."""
  candidate = next(s.name for s in eval_config.model_specs if not s.is_baseline)
  baseline = next((s.name for s in eval_config.model_specs if s.is_baseline), None)
  return candidate, baseline


def _written_names(metrics: Dict[tuple, Estimate]) -> Tuple[str, Optional[str]]:
  """(candidate, baseline or None) model names as TFMA wrote them."""
  written = {key[1] for key in metrics}
  return (CANDIDATE if CANDIDATE in written else LONE,
          BASELINE if BASELINE in written else None)


class Results:
  """TFMA's metrics of the new model (the candidate) and the served model (the baseline).

  The Evaluator passes the config TFMA ran with; a reader afterwards has only the output,
  where the models' names tell whether there was a served model.
  """

  def __init__(self, evaluation_uri: str, eval_config: Optional[tfma.EvalConfig] = None):
    self.uri = evaluation_uri
    self.metrics = evaluation_metrics(evaluation_uri)
    self.candidate, self.baseline = (model_names(eval_config) if eval_config is not None
                                     else _written_names(self.metrics))

  def _get(self, slice_name: str, model: str, metric: str) -> Optional[Estimate]:
    if metric == CALIBRATION:
      return self._calibration(slice_name, model)
    return self.metrics.get((slice_name, model, metric, False))

  def _calibration(self, slice_name: str, model: str) -> Optional[Estimate]:
    """Mean prediction / mean label, with a 95 % interval from the click rate's (the mean
    prediction taken as given): how far from 1 chance alone could put it on these rows."""
    prediction = self.metrics.get((slice_name, model, MEAN_PREDICTION, False))
    label = self.metrics.get((slice_name, model, MEAN_LABEL, False))
    if prediction is None or not label or not label.value:
      return None
    rows, clicks = self.rows_and_clicks(slice_name)
    if not rows:
      return Estimate(prediction.value / label.value)
    rate = click_rate(clicks, rows)
    return Estimate(prediction.value / label.value, prediction.value / rate.upper,
                    prediction.value / rate.lower if rate.lower else float('inf'))

  def new(self, slice_name: str, metric: str) -> Optional[Estimate]:
    return self._get(slice_name, self.candidate, metric)

  def served(self, slice_name: str, metric: str) -> Optional[Estimate]:
    if self.baseline is None:
      return None
    return self._get(slice_name, self.baseline, metric)

  def change(self, slice_name: str, metric: str) -> Optional[Estimate]:
    """The paired change, new minus served, on the same rows."""
    if self.baseline is None:
      return None
    return self.metrics.get((slice_name, self.candidate, metric, True))

  def overall(self, model: Optional[str]) -> Optional[Dict[str, float]]:
    """One model's overall figures (the keys of `figures`), None unless TFMA wrote them all;
    model: self.candidate or self.baseline."""
    if model is None:
      return None
    values = {m: self._get(OVERALL, model, m) for m in FIGURES}
    if None in values.values():
      return None
    result = {m: estimate.value for m, estimate in values.items()}
    result[EXAMPLE_COUNT] = int(result[EXAMPLE_COUNT])
    return result

  @functools.cached_property
  def challenger(self) -> Optional['ChallengerComparison']:
    """The model against its challenger on the eval rows; None where the Evaluator wrote
    none (a Model artifact without a challenger)."""
    return read_challenger(self.uri)

  def gate_inputs(self) -> Tuple[Dict[str, Estimate], Dict[str, Estimate],
                                 Dict[str, Estimate]]:
    """What gate_rule.decide judges: the new model's figures, its paired change against the
    served model and against its challenger (empty where there is none)."""
    metrics = (AUC, LOGLOSS)
    new = {m: self.new(OVERALL, m) for m in metrics if self.new(OVERALL, m)}
    diff = {m: self.change(OVERALL, m) for m in metrics if self.change(OVERALL, m)}
    return new, diff, dict(self.challenger.change) if self.challenger else {}

  def rows_and_clicks(self, slice_name: str) -> Tuple[float, float]:
    """A slice's eval rows and clicks (the same rows for both models); 0, 0 when TFMA wrote
    no count."""
    count, ctr = self.new(slice_name, EXAMPLE_COUNT), self.new(slice_name, MEAN_LABEL)
    rows = count.value if count else 0.0
    return rows, rows * (ctr.value if ctr else 0.0)

  def ranks(self, slice_name: str) -> bool:
    """Whether the slice has clicks and non-clicks: without both, AUC and calibration are
    undefined (not 0), whatever TFMA wrote."""
    rows, clicks = self.rows_and_clicks(slice_name)
    return 0 < round(clicks) < rows

  @functools.cached_property
  def _histograms(self) -> Dict[Tuple[str, str], np.ndarray]:
    return calibration_histograms(self.uri)  # read on first use: only the reports draw it

  def reliability(self, slice_name: str, model: Optional[str],
                  bins: int = 10) -> Optional[List[CalibrationBin]]:
    """One model's reliability diagram in a slice (see `reliability`); None without a
    CalibrationPlot for it. model: self.candidate or self.baseline."""
    histogram = self._histograms.get((slice_name, model))
    if histogram is None or not histogram[:, 2].any():
      return None
    return reliability(histogram, bins)

  def slices(self, prefix: str = '') -> List[str]:
    return sorted({key[0] for key in self.metrics if key[0] != OVERALL and
                   key[0].startswith(prefix)})


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Rank-based ROC AUC (ties averaged); NaN without both classes."""
  positives = labels == 1
  n_pos, n_neg = positives.sum(), (~positives).sum()
  if n_pos == 0 or n_neg == 0:
    return float('nan')
  ranks = stats.rankdata(scores)
  return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
  """Binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7] as Keras clips them."""
  p = np.clip(probabilities, 1e-7, 1 - 1e-7)
  return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def calibration(labels: np.ndarray, probabilities: np.ndarray) -> float:
  """Mean prediction / mean label; NaN without a click."""
  return float(probabilities.mean() / labels.mean()) if labels.any() else float('nan')


def figures(labels, probabilities) -> Dict[str, float]:
  """AUC, log-loss, calibration and their ingredients, under TFMA's names."""
  labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=float)
  return {
      AUC: auc(labels, probabilities),
      LOGLOSS: log_loss(labels, probabilities),
      CALIBRATION: calibration(labels, probabilities),
      MEAN_PREDICTION: float(probabilities.mean()), MEAN_LABEL: float(labels.mean()),
      EXAMPLE_COUNT: int(len(labels)),
  }


# The paired interval of the change between two scorers of the same rows. Rows of the same ad
# share its creative, advertiser and click rate, so they are not independent draws: an
# interval that resamples rows would be too narrow, most of all for new ads. This one is a
# paired Poisson bootstrap over clusters (ads): each resample weights every cluster by a
# Poisson(1) draw, and both scorers are measured on the same weighted rows.
RESAMPLES = 400


class WeightedAuc:
  """AUC of fixed scores under per-row weights, O(rows) per call after one sort."""

  def __init__(self, labels: np.ndarray, scores: np.ndarray):
    # Rows with tied scores form one block; a positive beats the negatives of lower blocks
    # and half those of its own (auc's tie rule).
    _, self._block = np.unique(scores, return_inverse=True)
    self._positive = labels == 1

  def __call__(self, weights: np.ndarray) -> float:
    pos = np.bincount(self._block, weights * self._positive)
    neg = np.bincount(self._block, weights * ~self._positive)
    below = np.cumsum(neg) - neg
    total = pos.sum() * neg.sum()
    return float((pos * (below + neg / 2)).sum() / total) if total else float('nan')


def _row_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
  p = np.clip(probabilities, 1e-7, 1 - 1e-7)
  return -(labels * np.log(p) + (1 - labels) * np.log(1 - p))


def paired_change(labels: np.ndarray, scores: np.ndarray, reference: np.ndarray,
                  clusters: np.ndarray, resamples: int = RESAMPLES,
                  seed: int = 0) -> Dict[str, Estimate]:
  """AUC and log-loss of `scores` minus those of `reference` on all rows, each with the 2.5
  and 97.5 percentiles of that change over `resamples` cluster-weighted resamples; empty
  without both classes. clusters: one id per row (e.g. the ad); each row its own to
  resample rows."""
  labels = np.asarray(labels)
  if len(labels) == 0 or labels.min() == labels.max():
    return {}
  _, cluster = np.unique(clusters, return_inverse=True)
  model, other = WeightedAuc(labels, scores), WeightedAuc(labels, reference)
  loss_change = _row_log_loss(labels, scores) - _row_log_loss(labels, reference)
  rng = np.random.default_rng(seed)
  changes = []
  for _ in range(resamples):
    weights = rng.poisson(1.0, cluster.max() + 1)[cluster].astype(float)
    total = weights.sum()
    changes.append((model(weights) - other(weights),
                    (weights * loss_change).sum() / total if total else float('nan')))
  bounds = np.nanpercentile(np.array(changes), [2.5, 97.5], axis=0)
  values = {AUC: auc(labels, scores) - auc(labels, reference),
            LOGLOSS: float(loss_change.mean())}
  return {metric: Estimate(values[metric], float(bounds[0, i]), float(bounds[1, i]))
          for i, metric in enumerate((AUC, LOGLOSS))}


def auc_gap(labels: np.ndarray, scores: np.ndarray, reference: np.ndarray,
            clusters: np.ndarray, resamples: int = RESAMPLES,
            seed: int = 0) -> Optional[Estimate]:
  """AUC(scores) - AUC(reference) with its 95 % interval (paired_change); None without both
  classes."""
  return paired_change(labels, scores, reference, clusters, resamples, seed).get(AUC)


CHALLENGER_FILE = 'challenger.json'  # in the ModelEvaluation artifact


@dataclasses.dataclass(frozen=True)
class ChallengerComparison:
  """The new model against its challenger (models/challenger.py), both scored by the
  Evaluator on the same eval rows."""
  name: str  # the challenger, in words
  model: Dict[str, float]  # `figures` of the new model on the rows
  challenger: Dict[str, float]  # and of the challenger
  change: Dict[str, Estimate]  # model minus challenger, paired_change
  resampled: str  # what the interval resamples, in words (ads, or rows)
  seconds: float  # the Evaluator's scoring pass over the rows with both models

  def margin_words(self) -> str:
    """E.g. '+0.0123 [+0.0031, +0.0215]', the AUC margin over the challenger."""
    change = self.change.get(AUC)
    return 'n/a (the eval rows lack clicks or non-clicks)' if change is None else (
        change.words(signed=True))


def write_challenger(evaluation_uri: str, comparison: ChallengerComparison) -> None:
  value = dataclasses.asdict(comparison)
  value['change'] = {m: dataclasses.asdict(e) for m, e in comparison.change.items()}
  with tf.io.gfile.GFile(os.path.join(evaluation_uri, CHALLENGER_FILE), 'w') as f:
    json.dump(value, f, indent=2, sort_keys=True)


def read_challenger(evaluation_uri: str) -> Optional[ChallengerComparison]:
  path = os.path.join(evaluation_uri, CHALLENGER_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    value = json.load(f)
  value['change'] = {m: Estimate(**e) for m, e in value['change'].items()}
  return ChallengerComparison(**value)
