"""What trained the served model, and every pipeline run: read from MLMD as run results.

    python -m monitoring.lineage [--output-root outputs] [--version N] [--metadata-db F]

answers, for the version being served (the newest complete version under
<output-root>/serving/<model>/, or --version), what trained it: the run that pushed it, the
spans and rows it read, the code revision, the hyperparameters and where they came from, and
the metrics its evaluation promised. Each run is read by pipeline/run_result.py, the reader
the run summary and the console use; monitoring's check and report use `Lineage` for the
served model's training statistics and eval split, and for the runs of every month.
"""
import argparse
import dataclasses
import datetime
import os
import sys
from typing import List, Optional

from ml_metadata.proto import metadata_store_pb2
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2

from components import evaluation_report
from components.image_csv_example_gen import splits
from models import serving_layout
from models import storage
from pipeline import run_result
from pipeline.run_result import RunResult

STATS_FILE = 'FeatureStats.pb'
STATISTICS_GEN = 'StatisticsGen'  # the node whose statistics are the training data's


@dataclasses.dataclass
class ServedModel:
  version: str
  model_uri: str  # the Trainer's Model artifact (the SavedModel is under Format-Serving)
  evaluation_uri: Optional[str]
  eval_examples_uri: Optional[str]
  statistics_uri: Optional[str]
  span: Optional[int]  # the latest month it was trained on
  run: RunResult  # the run that trained, evaluated and pushed it


@dataclasses.dataclass
class PipelineRun:
  run_id: int
  time: float  # unix seconds the run started
  span: Optional[int]
  pushed_version: Optional[str]
  evaluation_uri: Optional[str]
  completed: bool


def _statistics_uri(result: RunResult) -> Optional[str]:
  """StatisticsGen's statistics of the Examples (not Transform's of the same rows)."""
  component = result.component(STATISTICS_GEN)
  statistics = component.output('ExampleStatistics') if component else None
  return statistics.uri if statistics else None


class Lineage:
  """Reads one MLMD store (a SQLite file locally, or any connection config)."""

  def __init__(self, connection_config):
    self.connection_config = connection_config

  def served(self, version: str) -> Optional[ServedModel]:
    """The lineage of a pushed version, or None when no run in this store pushed it."""
    run_id = run_result.run_that_pushed(self.connection_config, version)
    if run_id is None:
      return None
    result = run_result.read(self.connection_config, run_id)
    if result.training is None:
      return None
    data = result.data
    return ServedModel(str(version), result.training.model_uri,
                       result.evaluation.uri if result.evaluation else None,
                       data.examples_uri if data else None, _statistics_uri(result),
                       data.span if data else None, result)

  def runs(self) -> List[PipelineRun]:
    """Every pipeline run in the store, oldest first."""
    found = []
    for run_id in run_result.run_ids(self.connection_config):
      result = run_result.read(self.connection_config, run_id)
      pushed = result.push is not None and result.push.pushed
      found.append(PipelineRun(
          run_id=run_id, time=result.started, span=result.data.span if result.data else None,
          pushed_version=result.push.version if pushed else None,
          evaluation_uri=result.evaluation.uri if result.evaluation else None,
          completed=result.push is not None and not result.failed))
    return found


def training_statistics(statistics_uri: str) -> statistics_pb2.DatasetFeatureStatisticsList:
  """StatisticsGen's statistics of the training split."""
  return tfdv.load_stats_binary(os.path.join(statistics_uri, f'Split-{splits.TRAIN}',
                                             STATS_FILE))


def sqlite_config(path: str) -> metadata_store_pb2.ConnectionConfig:
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return config


def describe(served: ServedModel) -> List[str]:
  """What trained the served model, in lines."""
  result = served.run
  lines = [f'Served version {served.version}: pushed by pipeline run {result.run_id} '
           f'(started {_when(result.started)}).']
  data = result.data
  if data is not None:
    lines.append(f"Data: spans {','.join(map(str, data.spans))} (latest {data.span}), "
                 f'{data.rows_read:,} rows read, {data.rows_accepted:,} accepted, '
                 f'{data.rows_rejected:,} rejected.')
    if data.splits:
      lines.append(f'Splits: {data.splits_text()}; the eval split is {data.split_kind}.')
    lines.append('Code revision: ' + (result.code_revision or 'not recorded by this run') +
                 (f'; data and code fingerprint {data.fingerprint[:16]}' if data.fingerprint
                  else '') + '.')
  training = result.training
  if training.hparams is not None:
    values = ', '.join(f'{k}={v}' for k, v in sorted(training.hparams.items()))
    lines += [f'Hyperparameters (from {training.source}): {values}.',
              f'Training: {training.epochs} epochs; model {training.model_uri}.']
  else:
    lines.append(f'Hyperparameters: not recorded with the model ({training.model_uri}).')
  evaluation = result.evaluation
  if evaluation is not None and evaluation.new:
    lines.append(f'Promised (its evaluation, {evaluation.rows:,} eval rows): ' + ', '.join(
        f'{evaluation_report.METRIC_LABELS[m]} {evaluation.new[m]:.4f}'
        for m in evaluation_report.METRIC_LABELS if m in evaluation.new) + '.')
    lines.append(f'Report: {evaluation.report_path}')
  return lines


def _when(seconds: float) -> str:
  return datetime.datetime.fromtimestamp(seconds).strftime('%Y-%m-%d %H:%M:%S')


def served_version(serving_root: str, model_name: str) -> Optional[int]:
  """The version TF Serving serves: the newest complete one."""
  return storage.latest_whole_version(serving_layout.model_root(serving_root, model_name))


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--output-root', default='outputs')
  parser.add_argument('--serving-root', help='default: <output-root>/serving')
  parser.add_argument('--model-name', default=serving_layout.MODEL_NAME)
  parser.add_argument('--version', help='default: the version being served')
  parser.add_argument('--metadata-db', help='default: <output-root>/metadata.db')
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  root = args.output_root.rstrip('/')
  version = args.version or served_version(args.serving_root or f'{root}/serving',
                                           args.model_name)
  if version is None:
    print(f'No model is served under {args.serving_root or root + "/serving"}.')
    return 2
  metadata = args.metadata_db or f'{root}/metadata.db'
  served = Lineage(sqlite_config(metadata)).served(str(version)) if os.path.exists(
      metadata) else None
  if served is None:
    print(f'Version {version} is served, but no pipeline run in {metadata} pushed it.')
    return 1
  print('\n'.join(describe(served)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
