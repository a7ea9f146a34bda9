"""Fakes for the monitoring tests: a tiny model fit on one generated month, and the MLMD
lineage and Evaluator output a pipeline run that pushed it would have left."""
import csv
import json
import os
from typing import Dict, List

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
import numpy as np
import tensorflow as tf
from tensorflow_model_analysis.proto import metrics_for_slice_pb2

from components import safe_pusher
from components.image_csv_example_gen import splits
from models import features
from models import serving_layout
from models import signatures
from models import trainer
from monitoring import lineage as lineage_lib

# The month-1 model sees these fields only: blind to the category mix, as a model is to any
# shift it was not trained on.
MODEL_FIELDS = ('placement', 'device', 'country')
# What the Trainer records beside a model it trained (models/trainer.py HPARAMS_FILE).
TRAINED_WITH = {'hparams': {'learning_rate': 0.01, 'max_epochs': 3}, 'source': 'a stand-in run',
                'epochs_trained': 2, 'calibration': {'scale': 1.0, 'bias': 0.0}}


def _logit(p):
  return float(np.log(p / (1 - p)))


def save_month_model(path: str, ads_csv: str) -> str:
  """A logistic model fit on one month's rows (smoothed log-odds per value of MODEL_FIELDS),
  with the pipeline's examples signature."""
  with open(ads_csv) as f:
    rows = list(csv.DictReader(f))
  clicked = np.array([int(r[features.LABEL_KEY]) for r in rows])
  base = clicked.mean()
  module = tf.Module()
  module.scale = tf.Variable(1.0)  # a variables/ directory, as a trained model has
  module.tables = {}
  for name in MODEL_FIELDS:
    values = sorted({r[name] for r in rows})
    effects = []
    for value in values:
      mine = clicked[[r[name] == value for r in rows]]
      effects.append(_logit((mine.sum() + 20 * base) / (len(mine) + 20)) - _logit(base))
    module.tables[name] = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(values, np.array(effects, np.float32)), 0.0)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='examples')])
  def serve(examples):
    parsed = tf.io.parse_example(examples, {
        name: tf.io.FixedLenFeature([], tf.string, default_value='') for name in MODEL_FIELDS})
    logit = _logit(base) + tf.add_n([module.tables[n].lookup(parsed[n]) for n in MODEL_FIELDS])
    return {signatures.PREDICTION_KEY: module.scale * tf.sigmoid(logit)}

  tf.saved_model.save(module, path, signatures={signatures.EXAMPLES_SIGNATURE: serve})
  return path


def write_evaluation(uri: str, values: Dict[str, float], model_name: str = '') -> None:
  """TFMA's metrics output, overall slice only, of one model ('' when the evaluation had no
  baseline, else 'candidate' or 'baseline')."""
  metrics = metrics_for_slice_pb2.MetricsForSlice()
  for name, value in values.items():
    kv = metrics.metric_keys_and_values.add()
    kv.key.name = name
    kv.key.model_name = model_name
    kv.value.double_value.value = value
  os.makedirs(uri, exist_ok=True)
  with tf.io.TFRecordWriter(os.path.join(uri, 'metrics-00000-of-00001.tfrecord')) as writer:
    writer.write(metrics.SerializeToString())


def write_examples(uri: str, split: str, examples: List[bytes]) -> None:
  os.makedirs(os.path.join(uri, f'Split-{split}'))
  with tf.io.TFRecordWriter(os.path.join(uri, f'Split-{split}', 'data.gz'),
                            options='GZIP') as writer:
    for example in examples:
      writer.write(example)


def writable_config(path: str) -> metadata_store_pb2.ConnectionConfig:
  """A SQLite MLMD store at `path`, created if missing."""
  config = lineage_lib.sqlite_config(path)
  config.sqlite.connection_mode = (
      metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
  return config


class FakeStore:
  """An MLMD store holding what the pipeline records, written by hand."""

  def __init__(self, path: str):
    self.store = metadata_store.MetadataStore(writable_config(path))
    self.run_type = self.store.put_context_type(metadata_store_pb2.ContextType(name='pipeline_run'))

  def artifact(self, type_name: str, uri: str, **properties) -> metadata_store_pb2.Artifact:
    type_id = self.store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
    artifact = metadata_store_pb2.Artifact(type_id=type_id, uri=uri)
    for name, value in properties.items():
      if isinstance(value, int):
        artifact.custom_properties[name].int_value = value
      else:
        artifact.custom_properties[name].string_value = value
    artifact.id = self.store.put_artifacts([artifact])[0]
    return artifact

  def execution(self, type_name: str, run: metadata_store_pb2.Context, inputs=(),
                outputs=()) -> None:
    type_id = self.store.put_execution_type(metadata_store_pb2.ExecutionType(name=type_name))
    execution = metadata_store_pb2.Execution(
        type_id=type_id, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    events = [(a, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT))
              for a in inputs] + [
                  (a, metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT))
                  for a in outputs]
    self.store.put_execution(execution, events, [run])

  def new_run(self, name: str) -> metadata_store_pb2.Context:
    run_id = self.store.put_contexts([metadata_store_pb2.Context(type_id=self.run_type,
                                                                 name=name)])[0]
    return self.store.get_contexts_by_id([run_id])[0]


def pushed_run(root: str, store: FakeStore, span: int, version: str, model_dir: str,
               training_statistics, eval_examples: List[bytes],
               promised: Dict[str, float], serving_root: str) -> None:
  """Records a run on `span` that trained, evaluated and pushed model_dir as `version`."""
  run = store.new_run(f'run-{span}')
  base = os.path.join(root, f'run-{span}')
  examples = store.artifact('Examples', os.path.join(base, 'examples'), span=span,
                            spans=str(span), rows_accepted=len(eval_examples) * 5,
                            rows_rejected=1)
  write_examples(examples.uri, splits.EVAL, eval_examples)
  store.execution('ImageCsvExampleGen', run, [], [examples])
  stats = store.artifact('ExampleStatistics', os.path.join(base, 'statistics'))
  os.makedirs(os.path.join(stats.uri, f'Split-{splits.TRAIN}'))
  with open(os.path.join(stats.uri, f'Split-{splits.TRAIN}', lineage_lib.STATS_FILE),
            'wb') as f:
    f.write(training_statistics.SerializeToString())
  store.execution('StatisticsGen', run, [examples], [stats])
  model = store.artifact('Model', os.path.join(base, 'model'))
  tf.io.gfile.makedirs(model.uri)
  with open(os.path.join(model.uri, trainer.HPARAMS_FILE), 'w') as f:
    json.dump(TRAINED_WITH, f)
  store.execution('Trainer', run, [examples], [model])
  evaluation = store.artifact('ModelEvaluation', os.path.join(base, 'evaluation'))
  write_evaluation(evaluation.uri, promised)
  blessing = store.artifact('ModelBlessing', os.path.join(base, 'blessing'), blessed=1)
  store.execution('Evaluator', run, [examples, model], [evaluation, blessing])
  pushed = store.artifact('PushedModel', os.path.join(base, 'pushed'), pushed=1,
                          pushed_version=version)
  store.execution('Pusher', run, [model, blessing], [pushed])
  safe_pusher.push(model_dir, serving_layout.model_root(serving_root), version)
