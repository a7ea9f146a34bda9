"""The end-of-run summary: what a user wants to know after a run, in at most MAX_LINES lines.

Rendered from the run's result (pipeline/run_result.py, read from MLMD): time and memory,
rows read and rejected, the split sizes and how the eval split was cut (out of time, or
random when features.py has no TIME field), the data verdict, the hyperparameters and where
they came from, a rollback that made the served model the baseline, the new model against
the served one and against its challenger (a logistic regression on the same rows: does the
model earn its cost?), the decision and why, and where the model was pushed. The cohort and slice
tables stay in the Evaluator's report (components/evaluation_report.py), which the summary
names. With the sample data, the oracle's figures on the same eval rows come from the
generator's ground-truth file (never read by the pipeline); a log of your own has no oracle
and the summary says so.
"""
import csv
import glob
import os
from typing import Dict, List, Optional

from apache_beam.io.filesystems import FileSystems
import numpy as np
import tensorflow as tf

from components import evaluation_report
from components import evaluation_results
from components.evaluation_results import AUC, CALIBRATION, EXAMPLE_COUNT, LOGLOSS
from components.image_csv_example_gen import splits
from components.image_csv_example_gen.executor import read_rejected_rows
from components.image_csv_example_gen.executor import rejected_row_name
from models import data_layout
from models import features
from monitoring import summary_line
from pipeline import run_result
from pipeline.run_result import RunResult

MAX_LINES = 25  # the console's budget for the summary (issue 24)
REJECTED_SHOWN = 2  # rejected rows named on the console; the rest are in ExampleGen's report
SLOWEST_SHOWN = 4


def read_split_rows(examples_uri: str, split: str) -> Dict[str, tuple]:
  """row id -> (label, cohort or None) for one split of an Examples artifact."""
  row_id, cohort = features.row_id_feature(), features.cohort_feature()
  files = glob.glob(os.path.join(examples_uri, f'Split-{split}', '*'))
  spec = {row_id.name: tf.io.FixedLenFeature([], tf.string),
          features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
  if cohort:
    spec[cohort.name] = tf.io.FixedLenFeature([], tf.string)
  result = {}
  for record in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(1024):
    parsed = {k: v.numpy() for k, v in tf.io.parse_example(record, spec).items()}
    cohorts = parsed[cohort.name] if cohort else [None] * len(parsed[row_id.name])
    for key, label, group in zip(parsed[row_id.name], parsed[features.LABEL_KEY], cohorts):
      result[key.decode()] = (int(label), group.decode() if group else None)
  return result


def oracle_metrics(ground_truth_csv: str, rows: Dict[str, tuple]) -> Dict[str, Dict[str, float]]:
  """evaluation_results.figures of the true click probabilities on `rows`, overall ('') and
  per cohort."""
  with FileSystems.open(ground_truth_csv) as f:
    row_id, probability = data_layout.GROUND_TRUTH_COLUMNS
    truth = {r[row_id]: float(r[probability])
             for r in csv.DictReader(line.decode() for line in f)}
  keys = [k for k in rows if k in truth]
  groups = {'': keys}
  for key in keys:
    if rows[key][1]:
      groups.setdefault(rows[key][1], []).append(key)
  result = {}
  for group, members in groups.items():
    y = np.array([rows[k][0] for k in members])
    p = np.array([truth[k] for k in members])
    result[group] = evaluation_results.figures(y, p)
  return result


def oracle(result: RunResult, data_root: str) -> Optional[Dict[str, Dict[str, float]]]:
  """The oracle on the run's eval rows, or None when the data has no ground truth (not the
  generated sample)."""
  if result.data is None or features.row_id_feature() is None:
    return None
  ground_truth = data_layout.ground_truth_csv(data_root, result.data.span)
  if not FileSystems.exists(ground_truth):
    return None
  return oracle_metrics(ground_truth, read_split_rows(result.data.examples_uri, splits.EVAL))


def _fmt(metrics: Optional[Dict[str, float]]) -> str:
  if not metrics:
    return 'n/a'
  text = f'AUC {metrics[AUC]:.4f}, log-loss {metrics[LOGLOSS]:.4f}'
  return text + (f', calibration {metrics[CALIBRATION]:.3f}' if CALIBRATION in metrics else '')


def _time_line(result: RunResult) -> List[str]:
  if not result.components:
    return []
  slowest = sorted(result.seconds.items(), key=lambda kv: -kv[1])[:SLOWEST_SHOWN]
  line = (f'Time: {sum(result.seconds.values()):.0f} s in components (' +
          ', '.join(f'{name} {s:.0f} s' for name, s in slowest) + ')')
  peaks = [c for c in result.components if c.peak_memory_gib is not None]
  if peaks:
    peak = max(peaks, key=lambda c: c.peak_memory_gib)
    line += f'; peak memory {peak.peak_memory_gib:.1f} GiB (by the end of {peak.name})'
  return [line + '.']


# How the eval split was cut (run_result.Data.split_kind), in words.
SPLIT_WORDS = {
    run_result.OUT_OF_TIME: 'out of time (the end of the latest month)',
    run_result.RANDOM: ('random split (features.py has no TIME field: the eval rows share days '
                        'with the training rows, so these figures overstate next month)'),
}


def _data_lines(result: RunResult) -> List[str]:
  data = result.data
  if data is None:
    return ['No examples were produced.']
  which = (f"spans {','.join(map(str, data.spans))} (window ending at span {data.span})"
           if len(data.spans) > 1 else f'span {data.span}')
  lines = [f'Data: {which}, {data.rows_read} rows read, {data.rows_accepted} accepted, '
           f'{data.rows_rejected} rejected.']
  if data.splits:
    lines.append(f'Splits: {data.splits_text()}.')
  if data.rows_rejected:
    rejected = read_rejected_rows(data.examples_uri)
    lines += [f'  rejected: {rejected_row_name(row)}' for row in rejected[:REJECTED_SHOWN]]
    if len(rejected) > REJECTED_SHOWN:
      lines.append(f'  ... {len(rejected) - REJECTED_SHOWN} more in {data.examples_uri}')
  if result.data_validation_passed is not None:
    lines.append('Data validation: ' + (
        'passed (no schema anomalies; drift checked where there is a previous span).'
        if result.data_validation_passed else 'FAILED (the error below says why).'))
  return lines


def _training_lines(result: RunResult) -> List[str]:
  training = result.training
  if training is None or training.hparams is None:
    return []
  values = ', '.join(f'{k}={v}' for k, v in sorted(training.hparams.items()))
  peer = training.challenger
  return [f'Hyperparameters (from {training.source}): {values}.',
          f"Training: {training.epochs} epoch{'s' if training.epochs != 1 else ''} (early "
          "stopping on the validation log-loss); "
          f"calibration scale {training.calibration['scale']:.3f}, "
          f"bias {training.calibration['bias']:+.3f}" + (
              f"; challenger (LR) {peer['epochs_trained']} epochs in {peer['seconds']:.0f} s"
              if peer else '') + '.']


def rollback_line(result: RunResult) -> Optional[str]:
  """The rollback that made the baseline the served model, if one did."""
  record = result.served.rollback if result.served else None
  if record is None:
    return None
  return (f"Rollback: the served model is version {record['to']} since {record['who']} rolled "
          f"back from version {record['from']} at {record['when']} (reason: {record['reason']}); "
          f"rolled-back versions are kept in {record['moved_to']}.")


def _challenger_words(comparison: Optional[evaluation_results.ChallengerComparison]) -> str:
  """E.g. 'model vs challenger (LR): +0.0123 [+0.0031, +0.0215] AUC, ...'."""
  if comparison is None:
    return 'model vs challenger (LR): n/a (the Model artifact has no challenger)'
  loss = comparison.change.get(LOGLOSS)
  return (f'model vs challenger (LR): {comparison.margin_words()} AUC' +
          (f', {loss.words(signed=True)} log-loss' if loss else '') +
          f' (model minus LR, paired, 95 % over {comparison.resampled}; the LR alone: '
          f'{_fmt(comparison.challenger)})')


def _evaluation_lines(result: RunResult, oracle_figures, served_line: Optional[str]) -> List[str]:
  evaluation = result.evaluation
  served = _fmt(evaluation.served) if evaluation.served else 'none: nothing is served yet'
  lines = [f'Eval split: {evaluation.rows} rows, {SPLIT_WORDS[result.data.split_kind]}.',
           f'  new model : {_fmt(evaluation.new)}',
           f'  served    : {served}']
  if evaluation.change:
    lines.append('  change    : ' + ', '.join(
        f'{evaluation_report.METRIC_LABELS[m]} {e.words(signed=True)}'
        for m, e in evaluation.change.items()) + ' (new minus served, paired, 95 %)')
  lines.append('  ' + _challenger_words(evaluation.challenger))
  if served_line:
    lines.append(f'  {served_line}')
  if oracle_figures is None:
    lines.append('  oracle    : n/a (only the generated sample data has true probabilities)')
  else:
    lines.append(f"  oracle    : {_fmt(oracle_figures[''])} (true click probabilities; best "
                 'achievable)')
    lines += [f'  oracle, {group} ads: {_fmt(values)} on {values[EXAMPLE_COUNT]} rows'
              for group, values in sorted(oracle_figures.items()) if group]
  if evaluation.blessed:
    lines.append('Decision: BLESSED: the rule holds.')
  elif evaluation.blessed is False:
    lines.append('Decision: NOT blessed: ' + ' '.join(evaluation.reasons or ['see the report.']))
  lines.append(f'Report (cohorts, slices, charts): {evaluation.html_path}; as text: '
               f'{evaluation.report_path}')
  return lines


def _push_line(result: RunResult) -> str:
  if result.push is not None and result.push.pushed:
    return f'Pushed: version {result.push.version} to {result.push.destination}'
  return 'Pushed: nothing (the model was not blessed).'


def render(result: RunResult, oracle_figures=None, served_line: Optional[str] = None,
           error: Optional[BaseException] = None) -> str:
  """The summary text; `oracle_figures` from `oracle`, `served_line` from
  monitoring.summary_line; `error`, the exception that stopped the run (Progress has shown
  it in full)."""
  lines = ['', '=' * 24 + ' Run summary ' + '=' * 24]
  lines += _time_line(result) + _data_lines(result)
  if error is not None:
    first = str(error).strip().splitlines()[:1]
    lines.append(f"The run STOPPED: {type(error).__name__}" + (f': {first[0]}' if first else '') +
                 ' (the full message is above and in the log)')
    return '\n'.join(lines)
  lines += _training_lines(result)
  rollback = rollback_line(result)
  if rollback:
    lines.append(rollback)
  if result.evaluation is not None:
    lines += _evaluation_lines(result, oracle_figures, served_line)
  lines.append(_push_line(result))
  return '\n'.join(lines)


def summarize(result: RunResult, data_root: str, error: Optional[BaseException] = None,
              connection_config=None) -> str:
  """The run summary; with the run's MLMD connection_config it also says how the served
  model did on the new month against what it promised when it was pushed."""
  served_line = None
  if connection_config is not None and result.evaluation is not None and error is None:
    served_line = summary_line.served_on_new_month(
        connection_config, result.evaluation.uri,
        result.served.version if result.served else None)
  return render(result, oracle(result, data_root) if error is None else None, served_line,
                error)
