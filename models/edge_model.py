"""The edge model: the trained model as TFLite for an app, and what an app feeds it.

A TFLite model cannot hold the Transform graph's vocabulary tables (hash tables from files
are not on TFLite's Flex allowlist) and decoding PNG/JPEG belongs to the app's own image
API, so the app computes two kinds of inputs itself and the graph does the rest:

  <categorical>_id  int64 [batch]    the value's line number (0-based) in vocab/<name>.txt;
                                     a value not there: vocab size + FarmHash
                                     Fingerprint64(UTF-8 value) % the field's OOV buckets
                                     (what Transform's lookup does:
                                     tf.strings.to_hash_bucket_fast; inputs.json records
                                     the count the Transform graph used)
  <image>           float32 [batch, IMAGE_SIZE, IMAGE_SIZE, 3]
                                     the creative decoded to RGB, resized (bilinear) to
                                     IMAGE_SIZE x IMAGE_SIZE, scaled to [0, 1]
  <integer>, <numeric>               the raw value as in ads.csv ([batch], its features.py
                                     dtype); clipping, log, z-score and buckets are in the graph
  output (the only one)  float32 [batch], the calibrated click probability, as
                         serving_default gives it.
The inputs are found by name in the interpreter's input details (predict() shows how).

Names and dtypes derive from models/features.py. The graph needs two Select TF ops (the
Transform graph's bucketize and integer clip): tf.lite.Interpreter from the tensorflow
package links them; an Android app adds the tensorflow-lite-select-tf-ops library.
`encode()` computes the inputs from raw rows exactly as described above (the reference for
an app, and what the parity test feeds).
"""
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Mapping, Sequence

import farmhash
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from models import features
from models import model as model_lib
from models import preprocessing
from models import signatures

TFLITE_FILE = 'model.tflite'
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # `-m models...`
VOCAB_DIR = 'vocab'  # vocab/<categorical field>.txt, one value a line
INPUTS_FILE = 'inputs.json'  # input names, dtypes, shapes and how to compute them
ID_SUFFIX = '_id'
EDGE_SUFFIX = '-edge'
_PREPROCESSED_IN_GRAPH = (features.INTEGER, features.NUMERIC)


def edge_root(model_root: str) -> str:
  """`<serving_root>/<model_name>-edge`: beside TF Serving's model base path, not in it
  (TF Serving would take an integer directory inside it for a version)."""
  return model_root.rstrip('/') + EDGE_SUFFIX


def input_name(feature: features.Feature) -> str:
  return feature.name + ID_SUFFIX if feature.role == features.CATEGORICAL else feature.name


def input_specs() -> List[tf.TensorSpec]:
  specs = []
  for feature in features.model_features():
    if feature.role == features.CATEGORICAL:
      specs.append(tf.TensorSpec([None], tf.int64, name=input_name(feature)))
    elif feature.role == features.IMAGE:
      size = features.IMAGE_SIZE
      specs.append(tf.TensorSpec([None, size, size, 3], tf.float32, name=feature.name))
    else:
      specs.append(tf.TensorSpec([None], features.tf_dtype(feature), name=feature.name))
  return specs


def describe_inputs(transform_graph_dir: str) -> dict:
  """What inputs.json says: each input's name, dtype, shape and how an app computes it, and
  each vocabulary's OOV bucket count as the Transform graph used it."""
  output = tft.TFTransformOutput(transform_graph_dir)
  oov = {f.name: preprocessing.oov_buckets(output, f.name)
         for f in features.with_role(features.CATEGORICAL)}

  def how(feature: features.Feature) -> str:
    if feature.role == features.CATEGORICAL:
      return (f'line number in {VOCAB_DIR}/{feature.name}.txt, else vocabulary size + '
              f'FarmHash Fingerprint64(UTF-8 value) % {oov[feature.name]}')
    if feature.role == features.IMAGE:
      return (f'RGB decoded, resized (bilinear) to {features.IMAGE_SIZE}x'
              f'{features.IMAGE_SIZE}, scaled to [0, 1]')
    return 'the raw value'

  inputs = [{'name': spec.name, 'dtype': spec.dtype.name, 'shape': spec.shape.as_list(),
             'field': feature.name, 'how': how(feature)}
            for spec, feature in zip(input_specs(), features.model_features())]
  return {'inputs': inputs,
          'output': {'name': signatures.PREDICTION_KEY, 'dtype': 'float32', 'shape': [-1],
                     'how': 'the only output'},
          'oov_buckets': oov, 'select_tf_ops': True}


class _EdgeModule(tf.Module):
  """The Keras model behind the part of the Transform graph a TFLite model can hold."""

  def __init__(self, keras_model, tf_transform_output: tft.TFTransformOutput):
    super().__init__()
    self.model = keras_model
    # Given only the integer and numeric fields, the layer computes just their outputs.
    self.tft_layer = tf_transform_output.transform_features_layer()
    specs = input_specs()

    @tf.function(input_signature=specs)
    def serve(*tensors):
      given = {spec.name: tensor for spec, tensor in zip(specs, tensors)}
      inputs = dict(self.tft_layer({
          f.name: tf.reshape(given[f.name], [-1, 1]) for f in features.model_features()
          if f.role in _PREPROCESSED_IN_GRAPH}))
      for feature in features.model_features():
        if feature.role not in _PREPROCESSED_IN_GRAPH:
          inputs[features.transformed_name(feature.name)] = given[input_name(feature)]
      probability = self.model({name: inputs[name] for name in self.model.input_names})
      return {signatures.PREDICTION_KEY: tf.reshape(probability, [-1])}

    self.serve = serve


def load_keras_model(serving_model_dir: str) -> tf.keras.Model:
  return tf.keras.models.load_model(serving_model_dir, compile=False, custom_objects={
      'CrossLayer': model_lib.CrossLayer, 'Calibration': model_lib.Calibration})


def convert(serving_model_dir: str, transform_graph_dir: str) -> bytes:
  """The TFLite flatbuffer of a Trainer's SavedModel and its Transform graph, converted in
  a child process: freezing imports the Transform graph's functions into the process's eager
  context under fixed names (while_cond_function), so a second conversion in one process
  (two pipeline runs in one Python process, as in the tests) would clash with the first."""
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, TFLITE_FILE)
    child = subprocess.run(
        [sys.executable, '-m', __name__, serving_model_dir, transform_graph_dir, out],
        cwd=_REPO_ROOT, capture_output=True, text=True, check=False)
    if child.returncode != 0:
      raise RuntimeError(f'TFLite conversion of {serving_model_dir} failed (exit '
                         f'{child.returncode}):\n{child.stderr[-3000:]}')
    with open(out, 'rb') as f:
      return f.read()


def _convert_here(serving_model_dir: str, transform_graph_dir: str) -> bytes:
  edge = _EdgeModule(load_keras_model(serving_model_dir),
                     tft.TFTransformOutput(transform_graph_dir))
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [edge.serve.get_concrete_function()], edge)
  # Given a subset of the raw fields, the Transform layer fills in the others with empty
  # values and runs its whole graph. The frozen-graph path inlines that graph and drops
  # what the output does not need (the image decode, the vocabulary lookups), which TFLite
  # could not run on empty values; converting a SavedModel would keep them.
  converter.experimental_lower_to_saved_model = False
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS,
                                         tf.lite.OpsSet.SELECT_TF_OPS]
  return converter.convert()


def predict(interpreter: tf.lite.Interpreter, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
  """Runs the edge model on a batch of encoded rows (inputs by name, as encode() gives)."""
  details = interpreter.get_input_details()
  for detail in details:
    interpreter.resize_tensor_input(detail['index'], inputs[detail['name']].shape)
  interpreter.allocate_tensors()
  for detail in details:
    interpreter.set_tensor(detail['index'], inputs[detail['name']])
  interpreter.invoke()
  return interpreter.get_tensor(interpreter.get_output_details()[0]['index'])


def vocabulary_files(transform_graph_dir: str) -> Dict[str, str]:
  """{categorical field: its vocabulary file in the Transform graph}."""
  output = tft.TFTransformOutput(transform_graph_dir)
  return {f.name: output.vocabulary_file_by_name(f.name)
          for f in features.with_role(features.CATEGORICAL)}


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """One categorical field's values (line i is id i) and the OOV buckets after them."""
  values: List[str]
  oov_buckets: int

  def id_of(self, value: str, index: Mapping[str, int]) -> int:
    if value in index:
      return index[value]
    return len(self.values) + farmhash.fingerprint64(value) % self.oov_buckets


def read_vocabularies(bundle_dir: str) -> Dict[str, Vocabulary]:
  """{categorical field: its Vocabulary} from an edge bundle (vocab/ and inputs.json)."""
  with open(os.path.join(bundle_dir, INPUTS_FILE), encoding='utf-8') as f:
    oov = json.load(f)['oov_buckets']
  vocabularies = {}
  for feature in features.with_role(features.CATEGORICAL):
    with open(os.path.join(bundle_dir, VOCAB_DIR, feature.name + '.txt'),
              encoding='utf-8') as f:
      vocabularies[feature.name] = Vocabulary(f.read().splitlines(), oov[feature.name])
  return vocabularies


def encode(rows: Sequence[Mapping], vocabularies: Mapping[str, Vocabulary]
           ) -> Dict[str, np.ndarray]:
  """The edge model's inputs for raw rows (values as in ads.csv, the image as its bytes)."""
  inputs = {}
  for feature, spec in zip(features.model_features(), input_specs()):
    values = [row[feature.name] for row in rows]
    if feature.role == features.CATEGORICAL:
      vocabulary = vocabularies[feature.name]
      index = {value: i for i, value in enumerate(vocabulary.values)}
      inputs[spec.name] = np.array([vocabulary.id_of(v, index) for v in values],
                                   dtype=np.int64)
    elif feature.role == features.IMAGE:
      # The app decodes with its own image API; here TensorFlow's, as the Transform graph.
      inputs[spec.name] = preprocessing.decode_images(tf.constant(values)).numpy()
    else:
      inputs[spec.name] = np.array(values, dtype=spec.dtype.as_numpy_dtype)
  return inputs


if __name__ == '__main__':  # convert()'s child: SAVED_MODEL TRANSFORM_GRAPH OUTPUT
  with open(sys.argv[3], 'wb') as output:
    output.write(_convert_here(sys.argv[1], sys.argv[2]))
