"""ServedModelBaseline: the Evaluator's baseline is the model TF Serving serves right now.

TF Serving serves the newest version directory under `<serving_root>/<model_name>/` (an
integer name, models/serving_layout.py). This component finds the newest *whole* one there
(storage.latest_whole_version, the rule the model server applies too) and copies it into its
output Model artifact under `Format-Serving`, the layout the Evaluator loads a Trainer's model
from, with a manifest written last (storage.write_manifest). After a rollback
(serving/rollback.py) that is the version rolled back to, and the artifact carries the
rollback's audit record (ROLLBACK_PROPERTY) for the run summary. With nothing served, the
artifact stays empty and the Evaluator in components/gated_evaluator.py drops it, so only the
absolute thresholds apply.

Why not a Resolver (LatestBlessedModelStrategy): open-source Kubeflow Pipelines cannot run
TFX Resolver nodes, and the metadata store's last blessed model need not be the one being
served (a failed push, a rollback, a manual push). Why a copy: the evaluation records exactly
the model it was compared with, even if a new version is pushed meanwhile. Every read goes
through Beam FileSystems, so the serving root may be a local path or gs://.
"""
import json
from typing import List, Optional

from absl import logging
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from models import serving_layout
from models import storage

SERVED_VERSION_PROPERTY = 'served_version'
SERVED_PATH_PROPERTY = 'served_path'
ROLLBACK_PROPERTY = 'rollback'  # the audit record (JSON) of the rollback that made it served


def rollback_records(model_root: str) -> List[dict]:
  """The audit records of the rollbacks of a model root, oldest first."""
  pattern = FileSystems.join(serving_layout.rolled_back_root(model_root),
                             '*' + serving_layout.ROLLBACK_RECORD_SUFFIX)
  records = []
  for match in FileSystems.match([pattern])[0].metadata_list:
    with FileSystems.open(match.path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      records.append(json.loads(f.read()))
  return sorted(records, key=lambda record: record['when'])


def highest_version_used(model_root: str) -> Optional[int]:
  """The highest version ever pushed there: served, or moved aside by a rollback."""
  used = (storage.version_numbers(model_root) +
          storage.version_numbers(serving_layout.rolled_back_root(model_root)) +
          [v for record in rollback_records(model_root) for v in record['moved']])
  return max(used, default=None)


def has_model(model: artifact.Artifact) -> bool:
  """Whether a Model artifact holds a complete serving model (an empty baseline does not)."""
  return storage.is_whole(path_utils.serving_model_dir(model.uri))


@component
def ServedModelBaseline(  # pylint: disable=invalid-name
    model: OutputArtifact[standard_artifacts.Model],
    model_root: Parameter[str]):
  """Copies the served model from model_root (`<serving_root>/<model_name>`) into `model`."""
  version = storage.latest_whole_version(model_root)
  if version is None:
    logging.info('No model is served under %s: only absolute thresholds apply.', model_root)
    return
  version_dir = serving_layout.version_dir(model_root, version)
  copy = path_utils.serving_model_dir(model.uri)
  storage.copy_tree(version_dir, copy)
  storage.write_manifest(copy)
  model.set_int_custom_property(SERVED_VERSION_PROPERTY, version)
  model.set_string_custom_property(SERVED_PATH_PROPERTY, version_dir)
  logging.info('Baseline: served version %s from %s.', version, version_dir)
  rollbacks = [r for r in rollback_records(model_root) if r['to'] == version]
  if rollbacks:  # served because a rollback made it so: the run summary says so
    model.set_string_custom_property(ROLLBACK_PROPERTY, json.dumps(rollbacks[-1]))
