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
import json
import os
from typing import Dict, Optional, Sequence

from ml_metadata.proto import metadata_store_pb2
from tfx import types

from pipeline import run_result

SPLIT_NAMES = 'split_names'  # TFX's artifact property, a JSON list


def bytes_written(component: run_result.Component) -> int:
  return sum(tree_bytes(artifact.uri) for artifact in component.outputs)


def bytes_read(component: run_result.Component) -> int:
  return sum(artifact_bytes(artifact, splits_read(component.execution))
             for artifact in component.inputs)


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


def artifact_bytes(artifact: types.Artifact, splits: Optional[Dict[str, bool]]) -> int:
  """The artifact's bytes on disk; of an artifact with splits, those of the splits read:
  the ones `splits` names True, or all but those it names False."""
  properties = artifact.mlmd_artifact.properties
  if splits is None or SPLIT_NAMES not in properties:
    return tree_bytes(artifact.uri)
  names = json.loads(properties[SPLIT_NAMES].string_value)
  included = any(splits.values())
  return sum(tree_bytes(os.path.join(artifact.uri, f'Split-{name}')) for name in names
             if splits.get(name, not included))


def window_bytes(span_dirs: Sequence[str]) -> int:
  """What ExampleGen reads, which is no artifact: the window's CSVs and creatives on disk."""
  return sum(tree_bytes(path) for path in span_dirs)
