"""The end-of-run summary: what a user wants to know after a run, in words and numbers.

Reads the run's artifacts through MLMD (the same store the runner used): rows read and
rejected, anomalies, the oracle's AUC/log-loss from the generator's ground-truth file (never
read by the pipeline), the Evaluator's report (the new model against each threshold and the
served model, overall and per slice, and why it was blessed or not; see
components/evaluation_report.py) and where the model was pushed.
"""
import csv
import dataclasses
import glob
import os
from typing import Dict, List, Optional

from apache_beam.io.filesystems import FileSystems
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
import numpy as np
from scipy import stats
import tensorflow as tf

from components import data_gate
from components import evaluation_report
from components.image_csv_example_gen.executor import read_rejected_rows
from components.image_csv_example_gen.executor import SPANS_PROPERTY


@dataclasses.dataclass
class RunArtifacts:
  by_type: Dict[str, List[metadata_store_pb2.Artifact]]
  seconds: Dict[str, float] = dataclasses.field(default_factory=dict)  # per component

  def latest(self, type_name: str, uri_part: str = '') -> Optional[metadata_store_pb2.Artifact]:
    found = [a for a in self.by_type.get(type_name, []) if uri_part in a.uri]
    return max(found, key=lambda a: a.id) if found else None


def run_artifacts(connection_config) -> RunArtifacts:
  """Output artifacts of the latest pipeline run recorded in the store."""
  store = metadata_store.MetadataStore(connection_config)
  runs = store.get_contexts_by_type('pipeline_run')
  if not runs:
    return RunArtifacts({})
  run = max(runs, key=lambda c: c.id)
  executions = store.get_executions_by_context(run.id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  ids = sorted({e.artifact_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT})
  type_names = {t.id: t.name for t in store.get_artifact_types()}
  by_type = {}
  for artifact in store.get_artifacts_by_id(ids):
    by_type.setdefault(type_names[artifact.type_id], []).append(artifact)
  seconds = {e.type.rsplit('.', 1)[-1]: (e.last_update_time_since_epoch -
                                         e.create_time_since_epoch) / 1000
             for e in executions}
  return RunArtifacts(by_type, seconds)


def _prop(artifact, name, default=None):
  if artifact is None or name not in artifact.custom_properties:
    return default
  value = artifact.custom_properties[name]
  return value.int_value if value.HasField('int_value') else value.string_value


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Rank-based ROC AUC (ties averaged)."""
  positives = labels == 1
  n_pos, n_neg = positives.sum(), (~positives).sum()
  if n_pos == 0 or n_neg == 0:
    return float('nan')
  ranks = stats.rankdata(scores)
  return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
  p = np.clip(probabilities, 1e-7, 1 - 1e-7)
  return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def read_split_labels(examples_uri: str, split: str) -> Dict[str, int]:
  """impression_id -> clicked for one split of an Examples artifact."""
  files = glob.glob(os.path.join(examples_uri, f'Split-{split}', '*'))
  spec = {'impression_id': tf.io.FixedLenFeature([], tf.string),
          'clicked': tf.io.FixedLenFeature([], tf.int64)}
  result = {}
  for record in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(1024):
    parsed = tf.io.parse_example(record, spec)
    for key, label in zip(parsed['impression_id'].numpy(), parsed['clicked'].numpy()):
      result[key.decode()] = int(label)
  return result


def oracle_metrics(ground_truth_csv: str, labels: Dict[str, int]) -> Optional[Dict[str, float]]:
  """AUC/log-loss of the true click probabilities on the rows in `labels`."""
  if not FileSystems.exists(ground_truth_csv):
    return None
  with FileSystems.open(ground_truth_csv) as f:
    rows = csv.DictReader(line.decode() for line in f)
    truth = {r['impression_id']: float(r['click_probability']) for r in rows}
  keys = [k for k in labels if k in truth]
  y = np.array([labels[k] for k in keys])
  p = np.array([truth[k] for k in keys])
  return {'auc': auc(y, p), 'logloss': log_loss(y, p), 'rows': len(keys)}


def model_metrics(artifacts: RunArtifacts, data_root: str,
                  eval_split: str = 'eval') -> Dict[str, object]:
  """Overall AUC/log-loss of the new model, the baseline (None if none) and the oracle."""
  evaluation = artifacts.latest('ModelEvaluation')
  examples = artifacts.latest('Examples')
  metrics = evaluation_report.evaluation_metrics(evaluation.uri)
  overall = evaluation_report.OVERALL

  def of(model_name):
    values = {m: metrics.get((overall, model_name, name, False))
              for m, name in (('auc', 'auc'), ('logloss', 'binary_crossentropy'))}
    return values if None not in values.values() else None

  # TFMA names models only when there is a baseline to compare with.
  candidate_name = 'candidate' if of('candidate') else ''
  ground_truth = os.path.join(data_root, 'ground_truth', f'span-{_prop(examples, "span")}.csv')
  return {
      'candidate': of(candidate_name),
      'baseline': of('baseline'),
      'oracle': oracle_metrics(ground_truth, read_split_labels(examples.uri, eval_split)),
      'rows': int(metrics.get((overall, candidate_name, 'example_count', False), 0)),
  }


def _fmt(metrics: Optional[Dict[str, float]]) -> str:
  if not metrics:
    return 'n/a'
  return f"AUC {metrics['auc']:.4f}, log-loss {metrics['logloss']:.4f}"


def summarize(artifacts: RunArtifacts, data_root: str, error: Optional[BaseException] = None,
              eval_split: str = 'eval') -> str:
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
      lines.append(f"  rejected ad {row['ad_id']}: {row['reason']}")
    if len(rejected_rows) > 10:
      lines.append(f'  ... {len(rejected_rows) - 10} more in {examples.uri}')

  gate = artifacts.latest('ExampleAnomalies', 'DataGate')
  if gate is not None:
    with open(os.path.join(gate.uri, data_gate.REPORT_FILE)) as f:
      lines.append('Data validation: ' + ' '.join(f.read().split('\n')[2:3]).strip())
  if error is not None:
    lines += ['', 'The run STOPPED:', str(error)]
    return '\n'.join(lines)

  evaluation = artifacts.latest('ModelEvaluation')
  if evaluation is not None:
    metrics = model_metrics(artifacts, data_root, eval_split)
    served = _fmt(metrics['baseline']) if metrics['baseline'] else 'none: nothing is served yet'
    lines += [f"Eval split: {metrics['rows']} rows.",
              f"  new model : {_fmt(metrics['candidate'])}",
              f'  served    : {served}',
              f"  oracle    : {_fmt(metrics['oracle'])} (true click probabilities; best achievable)"]
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
