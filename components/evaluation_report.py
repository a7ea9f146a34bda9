"""Why a model was blessed or not, in words: the new model against the gate (gate_rule.py), the
served model and its challenger (a logistic regression on the same rows), overall, per cohort
(new vs established ads) and per slice, from TFMA's output and the Evaluator's challenger pass.

Only the overall slice gates; cohort and slice rows are reported, not gated: small groups are
too noisy to block a release on.
"""
from typing import List, Optional, Tuple

from components import gate_rule
from components.evaluation_results import AUC, CALIBRATION, EXAMPLE_COUNT, LOGLOSS, MEAN_LABEL
from components.evaluation_results import MEAN_PREDICTION, OVERALL, Estimate
from components.evaluation_results import Results
from models import challenger as challenger_lib
from models import features

REPORT_FILE = 'evaluation_report.md'
TITLE = 'Evaluation of the new model'
# TFMA metric name -> words; the order of the tables.
METRIC_LABELS = {
    AUC: 'AUC',
    LOGLOSS: 'log-loss',
    CALIBRATION: 'calibration (mean prediction / mean label)',
    MEAN_LABEL: 'mean label (CTR)',
    MEAN_PREDICTION: 'mean prediction',
}
_GROUP_METRICS = (AUC, LOGLOSS, CALIBRATION)
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
    # With a handful of clicks a group's AUC says little; the count lets a reader judge.
    rows, clicks = results.rows_and_clicks(slice_name)
    cells = [f'{_words(results.new(slice_name, m))} | {_words(results.served(slice_name, m))}'
             if results.ranks(slice_name) or m == LOGLOSS else 'n/a | n/a'
             for m in _GROUP_METRICS]
    lines.append(f'| {slice_name} | {rows:.0f} | {clicks:.0f} | ' + ' | '.join(cells) + ' |')
  return lines


_CHALLENGER_METRICS = (AUC, LOGLOSS, CALIBRATION)


def challenger_line(results: Results) -> str:
  """One line: the model's AUC margin over its challenger, e.g. 'model vs challenger (LR):
  +0.0123 [+0.0031, +0.0215] AUC, paired on the eval rows, 95 % interval resampling ads'."""
  comparison = results.challenger
  if comparison is None:
    return ('model vs challenger (LR): n/a (this Model artifact has no challenger: it was '
            'trained before the Trainer fitted one)')
  return (f'model vs challenger (LR): {comparison.margin_words()} AUC, paired on the same '
          f'eval rows, 95 % interval resampling {comparison.resampled}')


def _challenger_table(results: Results) -> List[str]:
  comparison = results.challenger
  lines = ['| metric | new model | challenger | new minus challenger, paired (95 %) |',
           '|---|---|---|---|']
  for metric in _CHALLENGER_METRICS:
    change = comparison.change.get(metric)
    lines.append(f'| {_label(metric)} | {comparison.model[metric]:.4f} | '
                 f'{comparison.challenger[metric]:.4f} | {_words(change, True)} |')
  return lines


def groups(results: Results) -> Tuple[List[str], List[str]]:
  """The cohort slices (new vs established ads) and the other slices."""
  cohort = features.cohort_feature()
  cohorts = results.slices(f'{cohort.name}=') if cohort is not None else []
  return cohorts, [s for s in results.slices() if s not in cohorts]


def verdict(gate, eval_fraction: float, served: Optional[str], blessed: bool,
            reasons: List[str]) -> str:
  """Markdown paragraphs: the protocol, the rule, the baseline and the decision with its
  reasons (the arguments of `render`)."""
  paragraphs = [protocol_text(eval_fraction), f'Rule: {gate_rule.rule_text(gate)}']
  if served:
    paragraphs.append(f'Baseline: {served}.')
  else:
    paragraphs.append('Baseline: none. No complete model version is served yet, so only the '
                      'AUC floor applies.')
  if blessed:
    paragraphs.append('Decision: BLESSED: the rule holds.')
  else:
    paragraphs.append('Decision: NOT blessed, because:\n\n' +
                      '\n'.join(f'- {reason}' for reason in reasons))
  return '\n\n'.join(paragraphs) + '\n'


def tables(results: Results) -> str:
  """Markdown tables: overall (gated), per cohort and per slice (reported)."""
  rows = results.new(OVERALL, EXAMPLE_COUNT)
  lines = [f'Overall (gated), {rows.value:.0f} eval rows:' if rows else 'Overall (gated):', '']
  lines += _overall_table(results)
  lines += ['', f'Against the challenger, a {challenger_lib.NAME} on the same training rows '
            '(does the model earn its cost?): ' + challenger_line(results) + '.']
  if results.challenger is not None:
    lines += [''] + _challenger_table(results)
  cohorts, others = groups(results)
  if cohorts:
    lines += ['', f'Cohorts: ads first seen in the eval period ({features.COHORT_NEW}) vs '
              f'ads seen before ({features.COHORT_ESTABLISHED}); reported, not gated:', '']
    lines += _group_table(results, cohorts)
  if others:
    lines += ['', 'Per slice (reported, not gated: small slices are too noisy to gate on):', '']
    lines += _group_table(results, others)
  return '\n'.join(lines) + '\n'


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
  return f'## {TITLE}\n\n' + verdict(gate, eval_fraction, served, blessed, reasons) + '\n' + (
      tables(results))
