"""The end-of-run summary: what a user wants to know after a run, in words and numbers.

Reads the run's artifacts through MLMD (the same store the runner used): rows read and
rejected, anomalies, the hyperparameters the model used and where they came from, the
Evaluator's report (the eval protocol, the new model against the rule and the served model,
overall, per cohort and per slice, and why it was blessed or not; see
components/evaluation_report.py), a rollback that made the served model the baseline, and where
the model was pushed. With the sample data, the
oracle's AUC/log-loss on the same eval rows comes from the generator's ground-truth file (never
read by the pipeline); a log of your own has no oracle and the summary says so.
"""
import csv
import dataclasses
import glob
import json
import os
from typing import Dict, List, Optional

from apache_beam.io.filesystems import FileSystems
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
import numpy as np
import tensorflow as tf

from components import data_gate
from components import evaluation_report
from components import evaluation_results
from components import served_baseline
from components.evaluation_results import AUC, EXAMPLE_COUNT, LOGLOSS
from components.image_csv_example_gen import splits
from components.image_csv_example_gen.executor import read_rejected_rows
from components.image_csv_example_gen.executor import rejected_row_name
from components.image_csv_example_gen.executor import SPANS_PROPERTY
from models import data_layout
from models import features
from models import trainer
from monitoring import summary_line


@dataclasses.dataclass
class ComponentRun:
  """One execution of a run and the artifacts it was given and wrote (MLMD's events)."""
  name: str  # the component, e.g. 'Trainer'
  execution: metadata_store_pb2.Execution
  inputs: List[metadata_store_pb2.Artifact]
  outputs: List[metadata_store_pb2.Artifact]


@dataclasses.dataclass
class RunArtifacts:
  by_type: Dict[str, List[metadata_store_pb2.Artifact]]
  seconds: Dict[str, float] = dataclasses.field(default_factory=dict)  # per component
  components: List[ComponentRun] = dataclasses.field(default_factory=list)  # in start order

  def latest(self, type_name: str, uri_part: str = '') -> Optional[metadata_store_pb2.Artifact]:
    found = [a for a in self.by_type.get(type_name, []) if uri_part in a.uri]
    return max(found, key=lambda a: a.id) if found else None


def run_artifacts(connection_config) -> RunArtifacts:
  """The latest pipeline run recorded in the store: its components' executions, inputs and
  outputs, and its output artifacts by type."""
  store = metadata_store.MetadataStore(connection_config)
  runs = store.get_contexts_by_type('pipeline_run')
  if not runs:
    return RunArtifacts({})
  run = max(runs, key=lambda c: c.id)
  executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  artifacts = {a.id: a for a in store.get_artifacts_by_id(sorted({e.artifact_id for e in events}))}
  type_names = {t.id: t.name for t in store.get_artifact_types()}
  by_type = {}
  for artifact_id in sorted({e.artifact_id for e in events
                             if e.type == metadata_store_pb2.Event.OUTPUT}):
    artifact = artifacts[artifact_id]
    by_type.setdefault(type_names[artifact.type_id], []).append(artifact)
  components = []
  for execution in executions:
    mine = [e for e in events if e.execution_id == execution.id]
    components.append(ComponentRun(
        _component_name(execution),
        execution,
        [artifacts[e.artifact_id] for e in mine if e.type == metadata_store_pb2.Event.INPUT],
        [artifacts[e.artifact_id] for e in mine if e.type == metadata_store_pb2.Event.OUTPUT]))
  seconds = {c.name: (c.execution.last_update_time_since_epoch -
                      c.execution.create_time_since_epoch) / 1000 for c in components}
  return RunArtifacts(by_type, seconds, components)


def _component_name(execution: metadata_store_pb2.Execution) -> str:
  return execution.type.rsplit('.', 1)[-1]


def _prop(artifact, name, default=None):
  if artifact is None or name not in artifact.custom_properties:
    return default
  value = artifact.custom_properties[name]
  return value.int_value if value.HasField('int_value') else value.string_value


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


def _oracle(examples, data_root: str) -> Optional[Dict[str, Dict[str, float]]]:
  """The oracle on the eval rows, or None when the data has no ground truth (not sample data)."""
  ground_truth = data_layout.ground_truth_csv(data_root, _prop(examples, 'span'))
  if features.row_id_feature() is None or not FileSystems.exists(ground_truth):
    return None
  return oracle_metrics(ground_truth, read_split_rows(examples.uri, splits.EVAL))


def model_metrics(artifacts: RunArtifacts, data_root: str) -> Dict[str, object]:
  """Overall figures of the new model, the baseline (None if none) and the oracle."""
  results = evaluation_results.Results(artifacts.latest('ModelEvaluation').uri)
  rows = results.new(evaluation_results.OVERALL, EXAMPLE_COUNT)
  return {
      'candidate': results.overall(results.candidate),
      'baseline': results.overall(results.baseline),
      'oracle': _oracle(artifacts.latest('Examples'), data_root),
      'rows': int(rows.value) if rows else 0,
  }


def _fmt(metrics: Optional[Dict[str, float]]) -> str:
  if not metrics:
    return 'n/a'
  return f"AUC {metrics[AUC]:.4f}, log-loss {metrics[LOGLOSS]:.4f}"


def _hparams_lines(artifacts: RunArtifacts) -> List[str]:
  model = artifacts.latest('Model', '/Trainer/')  # not the served baseline's copy
  used = trainer.read_used_hparams(model.uri) if model else None
  if not used:
    return []
  values = ', '.join(f'{k}={v}' for k, v in sorted(used['hparams'].items()))
  calibration = used['calibration']
  return [f"Hyperparameters (from {used['source']}): {values}.",
          f"Training: {used['epochs_trained']} epochs (early stopping on the validation "
          f"log-loss); calibration scale {calibration['scale']:.3f}, "
          f"bias {calibration['bias']:+.3f}."]


def rollback_line(artifacts: RunArtifacts) -> Optional[str]:
  """The rollback that made the baseline the served model, if one did (ServedModelBaseline
  copies its audit record into the baseline's properties)."""
  baseline = max((a for a in artifacts.by_type.get('Model', [])
                  if served_baseline.ROLLBACK_PROPERTY in a.custom_properties),
                 key=lambda a: a.id, default=None)
  if baseline is None:
    return None
  record = json.loads(_prop(baseline, served_baseline.ROLLBACK_PROPERTY))
  return (f"Rollback: the served model is version {record['to']} since {record['who']} rolled "
          f"back from version {record['from']} at {record['when']} (reason: {record['reason']}); "
          f"rolled-back versions are kept in {record['moved_to']}.")


def summarize(artifacts: RunArtifacts, data_root: str,
              error: Optional[BaseException] = None, connection_config=None) -> str:
  """The run summary; with the run's MLMD connection_config it also says how the served
  model did on the new month against what it promised when it was pushed."""
  lines = ['', '=' * 72, 'Run summary', '=' * 72]
  if artifacts.seconds:
    slowest = sorted(artifacts.seconds.items(), key=lambda kv: -kv[1])[:4]
    lines.append(f'Time: {sum(artifacts.seconds.values()):.0f} s in components (' +
                 ', '.join(f'{name} {s:.0f} s' for name, s in slowest) + ').')
  examples = artifacts.latest('Examples')
  if examples is None:
    lines.append('No examples were produced.')
  else:
    span = _prop(examples, 'span', '?')
    spans = _prop(examples, SPANS_PROPERTY, '')
    which = f'spans {spans} (window ending at span {span})' if ',' in spans else f'span {span}'
    accepted = _prop(examples, 'rows_accepted', 0)
    rejected_rows = read_rejected_rows(examples.uri)
    lines.append(f'Data: {which}, {accepted + len(rejected_rows)} rows read, '
                 f'{accepted} accepted, {len(rejected_rows)} rejected.')
    for row in rejected_rows[:10]:
      lines.append(f'  rejected: {rejected_row_name(row)}')
    if len(rejected_rows) > 10:
      lines.append(f'  ... {len(rejected_rows) - 10} more in {examples.uri}')

  gate = artifacts.latest('ExampleAnomalies', 'DataGate')
  if gate is not None:
    with open(os.path.join(gate.uri, data_gate.REPORT_FILE)) as f:
      lines.append('Data validation: ' + ' '.join(f.read().split('\n')[2:3]).strip())
  if error is not None:
    lines += ['', 'The run STOPPED:', f'{type(error).__name__}: {error}']
    return '\n'.join(lines)

  lines += _hparams_lines(artifacts)
  rollback = rollback_line(artifacts)
  if rollback:
    lines.append(rollback)
  evaluation = artifacts.latest('ModelEvaluation')
  if evaluation is not None:
    metrics = model_metrics(artifacts, data_root)
    served = _fmt(metrics['baseline']) if metrics['baseline'] else 'none: nothing is served yet'
    oracle = metrics['oracle']
    lines += [f"Eval split: {metrics['rows']} rows, out of time (see the report below).",
              f"  new model : {_fmt(metrics['candidate'])}",
              f'  served    : {served}']
    if connection_config is not None:
      baseline = artifacts.latest('Model', '/ServedModelBaseline/')
      lines.append(summary_line.served_on_new_month(
          connection_config, evaluation.uri,
          _prop(baseline, served_baseline.SERVED_VERSION_PROPERTY)))
    if oracle is None:
      lines.append('  oracle    : n/a (only the generated sample data has true probabilities)')
    else:
      lines.append(f"  oracle    : {_fmt(oracle[''])} (true click probabilities; best "
                   'achievable)')
      lines += [f'  oracle, {group} ads: {_fmt(values)} on {values[EXAMPLE_COUNT]} rows'
                for group, values in sorted(oracle.items()) if group]
    report_path = FileSystems.join(evaluation.uri, evaluation_report.REPORT_FILE)
    with FileSystems.open(report_path) as f:
      lines += ['', f.read().decode().rstrip(), f'(Report: {report_path})', '']
  pushed = artifacts.latest('PushedModel')
  if pushed is not None and _prop(pushed, 'pushed', 0):
    lines.append(f"Pushed: version {_prop(pushed, 'pushed_version')} to "
                 f"{_prop(pushed, 'pushed_destination')}")
  else:
    lines.append('Pushed: nothing (the model was not blessed).')
  return '\n'.join(lines)
