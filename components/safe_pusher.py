"""SafePusher: the TFX Pusher, except that a polling model server never sees a partial version.

The stock Pusher copies the model into `<base_directory>/<version>/` file by file, so TF
Serving can find the version directory before everything is in it. SafePusher takes the same
inputs (model, model_blessing) and push_destination and records the same PushedModel (custom
properties pushed, pushed_destination, pushed_version); only the copy differs (push()).

push() publishes the model as every version is published (models/storage.py): copied complete
to `<base>/.push-<version>-<token>/`, a name no server takes for a version, then its manifest
(every file with its size and SHA-256, assets/ included) is written last, then it moves into
place: on local disk in one rename, which POSIX makes atomic; on GCS (and other object stores),
which cannot rename, file by file with saved_model.pb and then the manifest last, and the
staging copy is deleted. A server that polls meanwhile finds no saved_model.pb (TF Serving
cannot load a version without it) or a version that its manifest does not match yet, so it is
never served half-written; the local server, the baseline, rollback and batch scoring check the
manifest before they use a version (storage.check).
The version is the push's unix time, or one more than the highest version ever used under
the base (next_version), so a push after a rollback is served as usual.
Every file operation goes through Beam FileSystems, so the base may be a local path or gs://.
"""
import time

from apache_beam.io.filesystems import FileSystems
from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from components import served_baseline
from models import serving_layout
from models import storage

_TIMESTAMP_VERSIONING = (pusher_pb2.Versioning.AUTO, pusher_pb2.Versioning.UNIX_TIMESTAMP)


def push(model_dir: str, base_dir: str, version: str) -> str:
  """Publishes model_dir as base_dir/version and returns that path; an existing one is kept."""
  target = serving_layout.version_dir(base_dir, version)
  if FileSystems.exists(target) or storage.relative_files(target):
    return target  # (a directory on an object store exists only as the prefix of its files)
  storage.publish(storage.stage(model_dir, target), target)
  return target


def next_version(base_dir: str) -> int:
  """The stock Pusher's version, the push's unix time, raised above every version ever used
  there (rolled-back ones included): the newest push is always the one TF Serving serves,
  whatever the clocks say."""
  highest = served_baseline.highest_version_used(base_dir)
  return max(int(time.time()), (highest or 0) + 1)


class Executor(pusher_executor.Executor):
  """The stock executor's Do with the copy replaced (blessing check, versioning and the
  archive copy in the PushedModel artifact are the stock ones)."""

  def Do(self, input_dict, output_dict, exec_properties):
    self._log_startup(input_dict, output_dict, exec_properties)
    pushed_model = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(pushed_model)
      return
    model_path = self.GetModelPath(input_dict)
    destination = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
        pusher_pb2.PushDestination())
    if (destination.WhichOneof('destination') != 'filesystem' or
        destination.filesystem.versioning not in _TIMESTAMP_VERSIONING):
      raise NotImplementedError(f'SafePusher pushes to a filesystem only: {destination}')
    base = destination.filesystem.base_directory
    version = str(next_version(base))
    serving_path = push(model_path, base, version)
    io_utils.copy_dir(model_path, pushed_model.uri)
    self._MarkPushed(pushed_model, pushed_destination=serving_path, pushed_version=version)


class SafePusher(tfx.components.Pusher):
  """Drop-in for tfx.components.Pusher (same arguments, inputs and outputs)."""
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
