"""Why a model was blessed or not, in words: the new model against the gate (gate_rule.py) and
the served model, overall, per cohort (new vs established ads) and per slice, from TFMA's output.

Only the overall slice gates; cohort and slice rows are reported, not gated: small groups are
too noisy to block a release on.
"""
from typing import Dict, List, Optional, Tuple

import tensorflow_model_analysis as tfma

from components import gate_rule
from components.gate_rule import Estimate
from models import features

REPORT_FILE = 'evaluation_report.md'
OVERALL = ''
CALIBRATION = 'calibration'  # mean prediction / mean label, derived from TFMA's two means
# TFMA metric name -> words; the order of the tables.
METRIC_LABELS = {
    gate_rule.AUC: 'AUC',
    gate_rule.LOGLOSS: 'log-loss',
    CALIBRATION: 'calibration (mean prediction / mean label)',
    'mean_label': 'mean label (CTR)',
    'mean_prediction': 'mean prediction',
}
_GROUP_METRICS = (gate_rule.AUC, gate_rule.LOGLOSS, CALIBRATION)
PROTOCOL = {
    True: ('Eval data: the last {eval:.0%} of the latest month\'s time range, which neither '
           'the new model (trained on the earlier rows of the window) nor the served model '
           '(trained on earlier months) has seen: an out-of-time holdout that looks like next '
           'month.'),
    False: ('Eval data: a random {eval:.0%} of the rows (features.py has no TIME field), '
            'which shares creatives and days with the training rows: these figures overstate '
            'what next month will show.'),
}


def protocol_text(eval_fraction: float) -> str:
  return PROTOCOL[features.time_feature() is not None].format(eval=eval_fraction)


def _slice_name(slice_key) -> str:
  return ', '.join(f'{c.column}={c.bytes_value.decode() or c.int64_value}'
                   for c in slice_key.single_slice_keys) or OVERALL


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
        bounds = {'lower': kv.confidence_interval.lower_bound.double_value.value,
                  'upper': kv.confidence_interval.upper_bound.double_value.value}
      result[(slice_name, kv.key.model_name, kv.key.name, kv.key.is_diff)] = Estimate(
          kv.value.double_value.value, **bounds)
  return result


def model_names(eval_config: tfma.EvalConfig) -> Tuple[str, Optional[str]]:
  """(candidate, baseline or None) model names as TFMA wrote them."""
  candidate = next(s.name for s in eval_config.model_specs if not s.is_baseline)
  baseline = next((s.name for s in eval_config.model_specs if s.is_baseline), None)
  return candidate, baseline


class Results:
  """TFMA's metrics of the new and the served model, by slice."""

  def __init__(self, evaluation_uri: str, eval_config: tfma.EvalConfig):
    self.metrics = evaluation_metrics(evaluation_uri)
    self.candidate, self.baseline = model_names(eval_config)

  def _get(self, slice_name: str, model: str, metric: str) -> Optional[Estimate]:
    if metric == CALIBRATION:
      prediction = self.metrics.get((slice_name, model, 'mean_prediction', False))
      label = self.metrics.get((slice_name, model, 'mean_label', False))
      if prediction is None or not label or not label.value:
        return None
      return Estimate(prediction.value / label.value)
    return self.metrics.get((slice_name, model, metric, False))

  def new(self, slice_name: str, metric: str) -> Optional[Estimate]:
    return self._get(slice_name, self.candidate, metric)

  def served(self, slice_name: str, metric: str) -> Optional[Estimate]:
    if self.baseline is None:
      return None
    return self._get(slice_name, self.baseline, metric)

  def change(self, slice_name: str, metric: str) -> Optional[Estimate]:
    if self.baseline is None:
      return None
    return self.metrics.get((slice_name, self.candidate, metric, True))

  def gate_inputs(self) -> Tuple[Dict[str, Estimate], Dict[str, Estimate]]:
    metrics = (gate_rule.AUC, gate_rule.LOGLOSS)
    new = {m: self.new(OVERALL, m) for m in metrics if self.new(OVERALL, m)}
    diff = {m: self.change(OVERALL, m) for m in metrics if self.change(OVERALL, m)}
    return new, diff

  def slices(self, prefix: str = '') -> List[str]:
    return sorted({key[0] for key in self.metrics if key[0] != OVERALL and
                   key[0].startswith(prefix)})


def _words(estimate: Optional[Estimate], signed: bool = False) -> str:
  return '-' if estimate is None else estimate.words(signed)


def _label(metric: str) -> str:
  return METRIC_LABELS.get(metric, metric)


def _overall_table(results: Results) -> List[str]:
  lines = ['| metric (95 % interval) | new model | served model | change, paired |',
           '|---|---|---|---|']
  for metric in [m for m in METRIC_LABELS if results.new(OVERALL, m) is not None]:
    lines.append(f'| {_label(metric)} | {_words(results.new(OVERALL, metric))} | '
                 f'{_words(results.served(OVERALL, metric))} | '
                 f'{_words(results.change(OVERALL, metric), True)} |')
  return lines


def _group_table(results: Results, slice_names: List[str]) -> List[str]:
  lines = ['| group | rows | clicks | ' + ' | '.join(
      f'{_label(m).split(" (")[0]} | served' for m in _GROUP_METRICS) + ' |',
           '|---|---|---|' + '---|---|' * len(_GROUP_METRICS)]
  for slice_name in slice_names:
    count = results.new(slice_name, 'example_count')
    rows = count.value if count else 0
    ctr = results.new(slice_name, 'mean_label')
    # With a handful of clicks a group's AUC says little; the count lets a reader judge.
    clicks = rows * (ctr.value if ctr else 0)
    # Without clicks (or without non-clicks) AUC and calibration are undefined, not 0.
    defined = 0 < round(clicks) < rows
    cells = [f'{_words(results.new(slice_name, m))} | {_words(results.served(slice_name, m))}'
             if defined or m == gate_rule.LOGLOSS else 'n/a | n/a' for m in _GROUP_METRICS]
    lines.append(f'| {slice_name} | {rows:.0f} | {clicks:.0f} | ' + ' | '.join(cells) + ' |')
  return lines


def render(results: Results, gate, eval_fraction: float, served: Optional[str],
           blessed: bool, reasons: List[str]) -> str:
  """The report in Markdown.

  Args:
    results: TFMA's metrics of the evaluation.
    gate: The GateConfig the decision used.
    eval_fraction: The share of the latest month held out (for the protocol sentence).
    served: Words naming the served model compared with, None when nothing was served.
    blessed, reasons: gate_rule.decide's verdict.
  """
  lines = ['## Evaluation of the new model', '', protocol_text(eval_fraction),
           f'Rule: {gate_rule.rule_text(gate)}']
  if served:
    lines.append(f'Baseline: {served}.')
  else:
    lines.append('Baseline: none. No complete model version is served yet, so only the '
                 'AUC floor applies.')
  if blessed:
    lines.append('Decision: BLESSED: the rule holds.')
  else:
    lines.append('Decision: NOT blessed, because:')
    lines += [f'- {reason}' for reason in reasons]
  rows = results.new(OVERALL, 'example_count')
  lines += ['', f'Overall (gated), {rows.value:.0f} eval rows:' if rows else 'Overall (gated):',
            '']
  lines += _overall_table(results)
  cohort = features.cohort_feature()
  if cohort is not None and results.slices(f'{cohort.name}='):
    lines += ['', f'Cohorts: ads first seen in the eval period ({features.COHORT_NEW}) vs '
              f'ads seen before ({features.COHORT_ESTABLISHED}); reported, not gated:', '']
    lines += _group_table(results, results.slices(f'{cohort.name}='))
  others = [s for s in results.slices() if cohort is None or not s.startswith(f'{cohort.name}=')]
  if others:
    lines += ['', 'Per slice (reported, not gated: small slices are too noisy to gate on):', '']
    lines += _group_table(results, others)
  return '\n'.join(lines) + '\n'
