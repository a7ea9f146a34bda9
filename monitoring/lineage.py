"""What MLMD knows about the served model and about every pipeline run.

The served version (a directory under `<serving_root>/<model_name>/`) leads through MLMD to:
the PushedModel whose pushed_version it is -> the Pusher's input Model and ModelBlessing ->
the Evaluator that wrote that blessing (its ModelEvaluation holds the metrics it promised; its
Examples hold the eval split) -> the Trainer that wrote that Model (its Examples) -> the
StatisticsGen statistics of those Examples (the training data's statistics).
"""
import dataclasses
import os
from typing import List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2

from components.image_csv_example_gen import splits

_INPUT, _OUTPUT = metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.OUTPUT
STATS_FILE = 'FeatureStats.pb'
STATISTICS_GEN = 'StatisticsGen'  # the end of the component's execution type name


@dataclasses.dataclass
class ServedModel:
  version: str
  model_uri: str  # the Trainer's Model artifact (the SavedModel is under Format-Serving)
  evaluation_uri: Optional[str]
  eval_examples_uri: Optional[str]
  statistics_uri: Optional[str]
  span: Optional[int]  # the latest month it was trained on


@dataclasses.dataclass
class PipelineRun:
  run_id: int
  time: float  # unix seconds the run started
  span: Optional[int]
  pushed_version: Optional[str]
  evaluation_uri: Optional[str]
  completed: bool


class Lineage:
  """Reads one MLMD store (a SQLite file locally, or any connection config)."""

  def __init__(self, connection_config):
    self.store = metadata_store.MetadataStore(connection_config)
    self._types = {t.id: t.name for t in self.store.get_artifact_types()}

  def _of_type(self, artifacts, name: str) -> List[metadata_store_pb2.Artifact]:
    return [a for a in artifacts if self._types.get(a.type_id) == name]

  def _producer(self, artifact_id: int) -> Optional[int]:
    events = [e for e in self.store.get_events_by_artifact_ids([artifact_id]) if e.type == _OUTPUT]
    return events[0].execution_id if events else None

  def _artifacts(self, execution_id: int, event_type) -> List[metadata_store_pb2.Artifact]:
    ids = [e.artifact_id for e in self.store.get_events_by_execution_ids([execution_id])
           if e.type == event_type]
    return list(self.store.get_artifacts_by_id(ids)) if ids else []

  def _consumers(self, artifact_id: int, type_suffix: str) -> List[int]:
    """Executions of a component type (named by the end of its type name) that read it."""
    ids = [e.execution_id for e in self.store.get_events_by_artifact_ids([artifact_id])
           if e.type == _INPUT]
    types = {t.id: t.name for t in self.store.get_execution_types()}
    return [e.id for e in self.store.get_executions_by_id(ids)
            if types.get(e.type_id, '').endswith(type_suffix)]

  def served(self, version: str) -> Optional[ServedModel]:
    """The lineage of a pushed version, or None when no run in this store pushed it."""
    pushed = [a for a in self.store.get_artifacts_by_type('PushedModel')
              if _prop(a, 'pushed_version') == str(version)]
    if not pushed:
      return None
    pusher = self._producer(pushed[-1].id)
    inputs = self._artifacts(pusher, _INPUT)
    model = self._of_type(inputs, 'Model')[0]
    blessing = self._of_type(inputs, 'ModelBlessing')
    evaluation_uri = eval_examples_uri = None
    if blessing:
      evaluator = self._producer(blessing[0].id)
      evaluation = self._of_type(self._artifacts(evaluator, _OUTPUT), 'ModelEvaluation')
      examples = self._of_type(self._artifacts(evaluator, _INPUT), 'Examples')
      evaluation_uri = evaluation[0].uri if evaluation else None
      eval_examples_uri = examples[0].uri if examples else None
    trainer = self._producer(model.id)
    train_examples = self._of_type(self._artifacts(trainer, _INPUT), 'Examples')
    statistics_uri = span = None
    if train_examples:
      span = _prop(train_examples[0], 'span')
      # StatisticsGen's, not Transform's pre-transform statistics of the same Examples.
      for execution in self._consumers(train_examples[0].id, STATISTICS_GEN):
        stats = self._of_type(self._artifacts(execution, _OUTPUT), 'ExampleStatistics')
        if stats:
          statistics_uri = stats[0].uri
    return ServedModel(str(version), model.uri, evaluation_uri, eval_examples_uri,
                       statistics_uri, span)

  def runs(self) -> List[PipelineRun]:
    """Every pipeline run in the store, oldest first."""
    result = []
    for context in sorted(self.store.get_contexts_by_type('pipeline_run'), key=lambda c: c.id):
      executions = self.store.get_executions_by_context(context.id)
      ids = {e.artifact_id for e in self.store.get_events_by_execution_ids(
          [e.id for e in executions]) if e.type == _OUTPUT}
      outputs = list(self.store.get_artifacts_by_id(sorted(ids))) if ids else []
      examples = self._of_type(outputs, 'Examples')
      pushed = [a for a in self._of_type(outputs, 'PushedModel') if _prop(a, 'pushed')]
      evaluation = self._of_type(outputs, 'ModelEvaluation')
      states = {e.last_known_state for e in executions}
      failed = metadata_store_pb2.Execution.FAILED in states
      done = bool(pushed or self._of_type(outputs, 'PushedModel')) and not failed
      result.append(PipelineRun(
          run_id=context.id, time=context.create_time_since_epoch / 1000,
          span=_prop(examples[0], 'span') if examples else None,
          pushed_version=_prop(pushed[0], 'pushed_version') if pushed else None,
          evaluation_uri=evaluation[0].uri if evaluation else None, completed=done))
    return result


def _prop(artifact, name: str):
  if name in artifact.custom_properties:
    value = artifact.custom_properties[name]
    return value.int_value if value.HasField('int_value') else value.string_value
  if name in artifact.properties:
    value = artifact.properties[name]
    return value.int_value if value.HasField('int_value') else value.string_value
  return None


def training_statistics(statistics_uri: str) -> statistics_pb2.DatasetFeatureStatisticsList:
  """StatisticsGen's statistics of the training split."""
  return tfdv.load_stats_binary(os.path.join(statistics_uri, f'Split-{splits.TRAIN}',
                                             STATS_FILE))


def sqlite_config(path: str) -> metadata_store_pb2.ConnectionConfig:
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
  return config


