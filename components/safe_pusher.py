"""SafePusher: the TFX Pusher, except that a polling model server never sees a partial version.

The stock Pusher copies the model into `<base_directory>/<version>/` file by file, so TF
Serving can find the version directory before everything is in it. SafePusher takes the same
inputs (model, model_blessing) and push_destination and records the same PushedModel (custom
properties pushed, pushed_destination, pushed_version); only the copy differs: it goes through
serving/safe_push.py (staging directory, then an atomic rename or a saved_model.pb-last copy).
"""
import time

from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from serving import safe_push

_TIMESTAMP_VERSIONING = (pusher_pb2.Versioning.AUTO, pusher_pb2.Versioning.UNIX_TIMESTAMP)


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
    version = str(int(time.time()))
    serving_path = safe_push.push(model_path, destination.filesystem.base_directory, version)
    io_utils.copy_dir(model_path, pushed_model.uri)
    self._MarkPushed(pushed_model, pushed_destination=serving_path, pushed_version=version)


class SafePusher(tfx.components.Pusher):
  """Drop-in for tfx.components.Pusher (same arguments, inputs and outputs)."""
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
