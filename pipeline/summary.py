"""The end-of-run summary: what a user wants to know after a run, in words and numbers.

Reads the run's artifacts through MLMD (the same store the runner used): rows read and
rejected, anomalies, the new model's and the baseline's AUC/log-loss from TFMA, the oracle's
from the generator's ground-truth file (never read by the pipeline), the blessing and why,
and where the model was pushed.
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
import tensorflow_model_analysis as tfma

from components.data_gate import REPORT_FILE
from components.image_csv_example_gen.executor import read_rejected_rows

OVERALL = ''


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


def _threshold_words(failure) -> str:
  threshold = failure.metric_threshold
  if failure.metric_key.is_diff:
    bound = threshold.change_threshold.absolute.value
    direction = ('at least' if threshold.change_threshold.direction ==
                 tfma.MetricDirection.HIGHER_IS_BETTER else 'at most')
    return f'change vs the baseline must be {direction} {bound:+.4f}'
  bounds = threshold.value_threshold
  if bounds.HasField('lower_bound'):
    return f'must be at least {bounds.lower_bound.value:.4f}'
  return f'must be at most {bounds.upper_bound.value:.4f}'


def blessing_reasons(evaluation_uri: str) -> List[str]:
  """Each failed threshold in words; empty when the model passed."""
  validation = tfma.load_validation_result(evaluation_uri)
  reasons = []
  for per_slice in validation.metric_validations_per_slice:
    for failure in per_slice.failures:
      what = 'change in ' if failure.metric_key.is_diff else ''
      reasons.append(f'{what}{failure.metric_key.name} is '
                     f'{failure.metric_value.double_value.value:+.4f}: '
                     f'{_threshold_words(failure)}')
  return reasons


def model_metrics(artifacts: RunArtifacts, data_root: str,
                  eval_split: str = 'eval') -> Dict[str, object]:
  """Overall AUC/log-loss of the new model, the baseline (None if none) and the oracle."""
  evaluation = artifacts.latest('ModelEvaluation')
  examples = artifacts.latest('Examples')
  metrics = evaluation_metrics(evaluation.uri)

  def of(model_name):
    values = {m: metrics.get((OVERALL, model_name, name, False))
              for m, name in (('auc', 'auc'), ('logloss', 'binary_crossentropy'))}
    return values if None not in values.values() else None

  # TFMA names models only when there is a baseline to compare with.
  candidate_name = 'candidate' if of('candidate') else ''
  ground_truth = os.path.join(data_root, 'ground_truth', f'span-{_prop(examples, "span")}.csv')
  return {
      'candidate': of(candidate_name),
      'baseline': of('baseline'),
      'oracle': oracle_metrics(ground_truth, read_split_labels(examples.uri, eval_split)),
      'rows': int(metrics.get((OVERALL, candidate_name, 'example_count', False), 0)),
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
    accepted = _prop(examples, 'rows_accepted', 0)
    rejected_rows = read_rejected_rows(examples.uri)
    lines.append(f'Data: span {span}, {accepted + len(rejected_rows)} rows read, '
                 f'{accepted} accepted, {len(rejected_rows)} rejected.')
    for row in rejected_rows[:10]:
      lines.append(f"  rejected ad {row['ad_id']}: {row['reason']}")
    if len(rejected_rows) > 10:
      lines.append(f'  ... {len(rejected_rows) - 10} more in {examples.uri}')

  gate = artifacts.latest('ExampleAnomalies', 'DataGate')
  if gate is not None:
    with open(os.path.join(gate.uri, REPORT_FILE)) as f:
      lines.append('Data validation: ' + ' '.join(f.read().split('\n')[2:3]).strip())
  if error is not None:
    lines += ['', 'The run STOPPED:', str(error)]
    return '\n'.join(lines)

  evaluation = artifacts.latest('ModelEvaluation')
  if evaluation is not None:
    metrics = model_metrics(artifacts, data_root, eval_split)
    lines += [f"Eval split: {metrics['rows']} rows.",
              f"  new model : {_fmt(metrics['candidate'])}",
              f"  baseline  : {_fmt(metrics['baseline']) if metrics['baseline'] else 'none (first model): only the AUC floor applies'}",
              f"  oracle    : {_fmt(metrics['oracle'])} (true click probabilities; best achievable)"]
  blessing = artifacts.latest('ModelBlessing')
  if blessing is not None:
    blessed = bool(_prop(blessing, 'blessed', 0))
    lines.append(f"Decision: {'BLESSED' if blessed else 'NOT blessed'}"
                 f"{': every threshold passed.' if blessed else ', because:'}")
    for reason in blessing_reasons(evaluation.uri):
      lines.append(f'  {reason}')
  pushed = artifacts.latest('PushedModel')
  if pushed is not None and _prop(pushed, 'pushed', 0):
    lines.append(f"Pushed: version {_prop(pushed, 'pushed_version')} to "
                 f"{_prop(pushed, 'pushed_destination')}")
  else:
    lines.append('Pushed: nothing (the model was not blessed).')
  return '\n'.join(lines)
