"""Why a model was blessed or not, in words: the new model against each threshold and the
served model, overall and per slice, from TFMA's output.

The gate is TFMA's validation on the overall slice (eval_config thresholds); its verdict
and failures are taken as they are. Per-slice rows are checked against the same thresholds
for information only: small slices are too noisy to block a release on.
"""
from typing import Dict, List, Optional, Tuple

import tensorflow_model_analysis as tfma

REPORT_FILE = 'evaluation_report.md'
OVERALL = ''
# TFMA metric name -> words; the order of the tables.
METRIC_LABELS = {
    'auc': 'AUC',
    'binary_crossentropy': 'log-loss',
    'calibration': 'calibration',
    'mean_label': 'mean label',
    'mean_prediction': 'mean prediction',
}
_SLICE_METRICS = ('auc', 'binary_crossentropy')


def evaluation_metrics(evaluation_uri: str) -> Dict[tuple, float]:
  """(slice, model_name, metric, is_diff) -> value, from TFMA's metrics output."""
  result = {}
  for metrics in tfma.load_metrics(evaluation_uri):
    slice_name = ', '.join(f'{c.column}={c.bytes_value.decode() or c.int64_value}'
                           for c in metrics.slice_key.single_slice_keys) or OVERALL
    for kv in metrics.metric_keys_and_values:
      if kv.value.HasField('double_value'):
        result[(slice_name, kv.key.model_name, kv.key.name, kv.key.is_diff)] = (
            kv.value.double_value.value)
  return result


def _model_names(eval_config: tfma.EvalConfig) -> Tuple[str, Optional[str]]:
  """(candidate, baseline or None) model names as TFMA wrote them."""
  candidate = next(s.name for s in eval_config.model_specs if not s.is_baseline)
  baseline = next((s.name for s in eval_config.model_specs if s.is_baseline), None)
  return candidate, baseline


def _gate_thresholds(eval_config: tfma.EvalConfig) -> Dict[Tuple[str, bool], object]:
  """(metric, is_diff) -> the Generic{Value,Change}Threshold the gate applies overall."""
  candidate, _ = _model_names(eval_config)
  thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(
      eval_config.metrics_specs, eval_config=eval_config)
  result = {}
  for key, per_slice in thresholds.items():
    if key.model_name == candidate:
      for _, threshold in per_slice:
        result[(key.name, key.is_diff)] = threshold
  return result


def _bound_words(threshold, is_diff: bool) -> str:
  if is_diff:
    bound = threshold.absolute.value
    at_least = threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    return f"{'>=' if at_least else '<='} {bound:+.4f}"
  if threshold.HasField('lower_bound'):
    return f'>= {threshold.lower_bound.value:.4f}'
  return f'<= {threshold.upper_bound.value:.4f}'


def _passes(threshold, is_diff: bool, value: float) -> bool:
  if is_diff:
    bound = threshold.absolute.value
    if threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER:
      return value >= bound
    return value <= bound
  if threshold.HasField('lower_bound') and value < threshold.lower_bound.value:
    return False
  return not (threshold.HasField('upper_bound') and value > threshold.upper_bound.value)


def _fmt(value: Optional[float], signed: bool = False) -> str:
  if value is None:
    return '-'
  return f'{value:+.4f}' if signed else f'{value:.4f}'


def _label(metric: str) -> str:
  return METRIC_LABELS.get(metric, metric)


class _Results:
  """TFMA's metrics of the new and the served model, by slice."""

  def __init__(self, metrics: Dict[tuple, float], eval_config: tfma.EvalConfig):
    self.metrics = metrics
    self.candidate, self.baseline = _model_names(eval_config)

  def new(self, slice_name: str, metric: str) -> Optional[float]:
    return self.metrics.get((slice_name, self.candidate, metric, False))

  def served(self, slice_name: str, metric: str) -> Optional[float]:
    if self.baseline is None:
      return None
    return self.metrics.get((slice_name, self.baseline, metric, False))

  def change(self, slice_name: str, metric: str) -> Optional[float]:
    new, old = self.new(slice_name, metric), self.served(slice_name, metric)
    return None if new is None or old is None else new - old


def _blessing_reasons(validation, results: _Results) -> List[str]:
  """Each failed gate threshold in words; empty when the model passed."""
  reasons = []
  for per_slice in validation.metric_validations_per_slice:
    for failure in per_slice.failures:
      name, value = failure.metric_key.name, failure.metric_value.double_value.value
      threshold = failure.metric_threshold
      if failure.metric_key.is_diff:
        reasons.append(f'{_label(name)} changed by {value:+.4f} against the served model '
                       f'({_fmt(results.new(OVERALL, name))} vs '
                       f'{_fmt(results.served(OVERALL, name))}); the gate allows '
                       f'{_bound_words(threshold.change_threshold, True)}.')
      else:
        reasons.append(f'{_label(name)} is {value:.4f}; the gate requires '
                       f'{_bound_words(threshold.value_threshold, False)}.')
  if not validation.validation_ok and not reasons:
    reasons.append(f'TFMA validation failed: {validation}')
  return reasons


def _overall_table(results: _Results, thresholds, failed) -> List[str]:
  def bound(metric, is_diff):
    threshold = thresholds.get((metric, is_diff))
    return '-' if threshold is None else _bound_words(threshold, is_diff)

  lines = ['| metric | new model | threshold | served model | change | allowed change | '
           'result |', '|---|---|---|---|---|---|---|']
  for metric in [m for m in METRIC_LABELS if results.new(OVERALL, m) is not None]:
    gates = [key for key in ((metric, False), (metric, True)) if key in thresholds]
    result = 'FAIL' if any(k in failed for k in gates) else 'pass' if gates else '-'
    lines.append(f'| {_label(metric)} | {_fmt(results.new(OVERALL, metric))} | '
                 f'{bound(metric, False)} | {_fmt(results.served(OVERALL, metric))} | '
                 f'{_fmt(results.change(OVERALL, metric), True)} | {bound(metric, True)} | '
                 f'{result} |')
  return lines


def _slice_table(results: _Results, thresholds) -> List[str]:
  lines = ['| slice | rows | clicks | ' + ' | '.join(
      f'{_label(m)} | served {_label(m)}' for m in _SLICE_METRICS) +
           ' | outside an overall threshold |',
           '|---|---|---|' + '---|---|' * len(_SLICE_METRICS) + '---|']
  for slice_name in sorted({key[0] for key in results.metrics} - {OVERALL}):
    misses = []
    for (metric, is_diff), threshold in sorted(thresholds.items()):
      observed = (results.change if is_diff else results.new)(slice_name, metric)
      if observed is not None and not _passes(threshold, is_diff, observed):
        what = f'{_label(metric)} change' if is_diff else _label(metric)
        misses.append(f'{what} {_fmt(observed, is_diff)}')
    cells = [f'{_fmt(results.new(slice_name, m))} | {_fmt(results.served(slice_name, m))}'
             for m in _SLICE_METRICS]
    rows = results.new(slice_name, 'example_count') or 0
    # With a handful of clicks a slice's AUC says little; the count lets a reader judge.
    clicks = rows * (results.new(slice_name, 'mean_label') or 0)
    lines.append(f'| {slice_name} | {rows:.0f} | {clicks:.0f} | ' + ' | '.join(cells) +
                 f" | {', '.join(misses) or 'none'} |")
  return lines


def render(evaluation_uri: str, eval_config: tfma.EvalConfig,
           served: Optional[str]) -> str:
  """The report in Markdown.

  Args:
    evaluation_uri: The Evaluator's ModelEvaluation artifact.
    eval_config: The EvalConfig TFMA ran with (after update_eval_config_with_defaults).
    served: Words naming the served model compared with, None when nothing was served.
  """
  results = _Results(evaluation_metrics(evaluation_uri), eval_config)
  validation = tfma.load_validation_result(evaluation_uri)
  thresholds = _gate_thresholds(eval_config)
  failed = {(f.metric_key.name, f.metric_key.is_diff)
            for s in validation.metric_validations_per_slice for f in s.failures}

  lines = ['## Evaluation of the new model', '']
  if served:
    lines.append(f'Baseline: {served}.')
  else:
    lines.append('Baseline: none. No complete model version is served yet, so only the '
                 'absolute thresholds apply.')
  if validation.validation_ok:
    lines.append('Decision: BLESSED: every threshold passed.')
  else:
    lines.append('Decision: NOT blessed, because:')
    lines += [f'- {reason}' for reason in _blessing_reasons(validation, results)]
  rows = results.new(OVERALL, 'example_count')
  lines += ['', f'Overall (gated), {rows:.0f} eval rows:' if rows else 'Overall (gated):', '']
  lines += _overall_table(results, thresholds, failed)
  lines += ['', 'Per slice (reported, not gated: small slices are too noisy to gate on):', '']
  lines += _slice_table(results, thresholds)
  return '\n'.join(lines) + '\n'
