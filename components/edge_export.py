"""EdgeExport: each pushed (so blessed) model also as TFLite, for apps (models/edge_model.py).

Writes, beside TF Serving's model base path and under the pushed version's number:

    <serving_root>/<model_name>-edge/<version>/model.tflite
                                              vocab/<categorical field>.txt
                                              inputs.json

`<model_name>-edge` is not inside `<serving_root>/<model_name>`, so TF Serving never tries to
load it. The version folder appears whole, as a push does (safe_pusher.push: staged beside,
then renamed or copied), through Beam FileSystems, so the serving root may be gs://.
"""
import json
import os
import tempfile

from absl import logging
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components import safe_pusher
from models import edge_model


def export(model_dir: str, transform_graph_dir: str, edge_root: str, version: str) -> str:
  """Writes the edge bundle of a SavedModel as `<edge_root>/<version>/`; returns its path."""
  with tempfile.TemporaryDirectory() as bundle:
    with open(os.path.join(bundle, edge_model.TFLITE_FILE), 'wb') as f:
      f.write(edge_model.convert(model_dir, transform_graph_dir))
    os.makedirs(os.path.join(bundle, edge_model.VOCAB_DIR))
    for name, path in edge_model.vocabulary_files(transform_graph_dir).items():
      tf.io.gfile.copy(path, os.path.join(bundle, edge_model.VOCAB_DIR, f'{name}.txt'))
    with open(os.path.join(bundle, edge_model.INPUTS_FILE), 'w') as f:
      json.dump(edge_model.describe_inputs(transform_graph_dir), f, indent=2)
    return safe_pusher.push(bundle, edge_root, version)


@component
def EdgeExport(  # pylint: disable=invalid-name
    pushed_model: InputArtifact[standard_artifacts.PushedModel],
    transform_graph: InputArtifact[standard_artifacts.TransformGraph],
    edge_root: Parameter[str]):
  """Exports the model SafePusher pushed (its copy in `pushed_model`) to TFLite under
  edge_root, with the pushed version's number; nothing when nothing was pushed.

  No output artifact: what it writes is found by the pushed version, as TF Serving's is.
  """
  if not pushed_model.get_int_custom_property('pushed'):
    logging.info('Nothing was pushed: no edge model to export.')
    return
  version = pushed_model.get_string_custom_property('pushed_version')
  path = export(pushed_model.uri, transform_graph.uri, edge_root, version)
  logging.info('Edge model of version %s written to %s.', version, path)
