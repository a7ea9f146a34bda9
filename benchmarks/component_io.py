"""What each component of one pipeline run was given and wrote: its artifacts' bytes on disk.

The scale benchmark (model_bench --scale) divides these by the rows a run read, to tell how
the bytes of a row (its creative above all) are multiplied by the components that copy and
re-read it. MLMD says which artifacts each execution of the run took in and put out (its
INPUT and OUTPUT events) and where they lie (their URIs). An artifact with splits (Examples,
ExampleStatistics) counts only the splits the execution's properties say it reads: the
Evaluator's example_splits, the Trainer's train_args and eval_args, StatisticsGen's and
ExampleValidator's exclude_splits; without such a property, every split (Transform analyzes
the train split and runs every split through its transform). A split read again (the Trainer's
epochs) counts once: these are sizes on disk, not bytes through read calls.
"""
import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

Artifact = metadata_store_pb2.Artifact
Event = metadata_store_pb2.Event
SPLIT_NAMES = 'split_names'  # TFX's artifact property, a JSON list


@dataclasses.dataclass
class ComponentIO:
  """One execution of the run; `name` as summary.RunArtifacts.seconds names it."""
  name: str
  execution: metadata_store_pb2.Execution
  inputs: List[Artifact]
  outputs: List[Artifact]

  def bytes_written(self) -> int:
    return sum(tree_bytes(artifact.uri) for artifact in self.outputs)

  def bytes_read(self) -> int:
    return sum(artifact_bytes(artifact, splits_read(self.execution))
               for artifact in self.inputs)


def run_io(connection_config) -> List[ComponentIO]:
  """The executions of the latest pipeline run in the store, in the order they started."""
  store = metadata_store.MetadataStore(connection_config)
  run = max(store.get_contexts_by_type('pipeline_run'), key=lambda c: c.id)
  executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
  events = store.get_events_by_execution_ids([e.id for e in executions])
  artifacts = {a.id: a for a in store.get_artifacts_by_id({e.artifact_id for e in events})}
  result = []
  for execution in executions:
    mine = [e for e in events if e.execution_id == execution.id]
    result.append(ComponentIO(
        execution.type.rsplit('.', 1)[-1], execution,
        [artifacts[e.artifact_id] for e in mine if e.type == Event.INPUT],
        [artifacts[e.artifact_id] for e in mine if e.type == Event.OUTPUT]))
  return result


def tree_bytes(path: str) -> int:
  """Bytes of the files under `path` (or of `path`, a file); 0 when it does not exist."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(folder, name))
             for folder, _, names in os.walk(path) for name in names)


def splits_read(execution: metadata_store_pb2.Execution) -> Optional[Dict[str, bool]]:
  """{split: read?} as the execution's properties name them; None when they name none."""
  props = {k: v.string_value for k, v in execution.custom_properties.items()}
  if props.get('example_splits') not in (None, '', 'null'):
    return {split: True for split in json.loads(props['example_splits'])}
  named = [split for key in ('train_args', 'eval_args') if props.get(key)
           for split in json.loads(props[key]).get('splits', [])]
  if named:
    return {split: True for split in named}
  if props.get('exclude_splits'):
    return {split: False for split in json.loads(props['exclude_splits'])}
  return None


def artifact_bytes(artifact: Artifact, splits: Optional[Dict[str, bool]]) -> int:
  """The artifact's bytes on disk; of an artifact with splits, those of the splits read:
  the ones `splits` names True, or all but those it names False."""
  if splits is None or SPLIT_NAMES not in artifact.properties:
    return tree_bytes(artifact.uri)
  names = json.loads(artifact.properties[SPLIT_NAMES].string_value)
  included = any(splits.values())
  return sum(tree_bytes(os.path.join(artifact.uri, f'Split-{name}')) for name in names
             if splits.get(name, not included))


def window_bytes(span_dirs: Sequence[str]) -> int:
  """What ExampleGen reads, which is no artifact: the window's CSVs and creatives on disk."""
  return sum(tree_bytes(path) for path in span_dirs)
