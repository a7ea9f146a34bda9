"""The Evaluator's inputs as the pipeline hands them over, for the tests of
components/gated_evaluator.py and its reports: eval rows in an Examples artifact, Model
artifacts holding test stand-in SavedModels (tests/fake_models.py), the served model as
ServedModelBaseline marks it, and the executor's run on them.

The rows follow models/features.py: the label (a click every fifth row), two values of each
slice field, the cohort key (ADS ads) and the derived cohort where the log has them."""
import dataclasses
import json
import os
from typing import Callable, Optional

import tensorflow as tf
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import path_utils
from tfx.utils import proto_utils

from components import gate_rule
from components import gated_evaluator
from components import served_baseline
from components.image_csv_example_gen import splits
from models import challenger
from models import features
from tests import conftest

ROWS, ADS = 240, 7
# {slice field: the values the rows take}, the derived cohort apart (COHORTS).
SLICES = {f.name: conftest.field_values(f, 2) for f in features.example_features()
          if f.slice and f.role != features.DERIVED}
COHORTS = (features.COHORT_NEW, features.COHORT_ESTABLISHED)
SERVED_VERSION, SERVED_PATH = 42, '/serving/42'


def eval_row(i: int) -> dict:
  """Row i of the eval split: a click every fifth row; every fourth row's ad is new."""
  row = {features.LABEL_KEY: int(i % 5 == 0)}
  row.update({name: values[i % len(values)] for name, values in SLICES.items()})
  key, cohort = features.cohort_key_feature(), features.cohort_feature()
  if key is not None:
    row[key.name] = f'ad_{i % ADS}'
  if cohort is not None:
    row[cohort.name] = COHORTS[i % 4 != 0]
  return row


def eval_examples(uri, rows: int = ROWS) -> standard_artifacts.Examples:
  """An Examples artifact with an eval split of `rows` eval_row()s, as ExampleGen writes it."""
  examples = standard_artifacts.Examples()
  examples.uri = str(uri)
  examples.split_names = artifact_utils.encode_split_names([splits.EVAL])
  examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
  examples_utils.set_file_format(
      examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
  split_dir = artifact_utils.get_split_uri([examples], splits.EVAL)
  os.makedirs(split_dir)
  with tf.io.TFRecordWriter(os.path.join(split_dir, 'data.gz'), options='GZIP') as writer:
    for i in range(rows):
      writer.write(conftest.to_example(eval_row(i)).SerializeToString())
  return examples


def model_artifact(uri, save_model: Optional[Callable[[str], str]], artifact_id: int = 7,
                   save_challenger: Optional[Callable[[str], str]] = None):
  """A Model artifact laid out as the Trainer writes it, with `save_model`'s SavedModel (none:
  an empty one, as ServedModelBaseline leaves it when nothing is served) and optionally the
  challenger's."""
  model = standard_artifacts.Model()
  model.uri, model.id = str(uri), artifact_id
  if save_model is not None:
    save_model(path_utils.serving_model_dir(model.uri))
  if save_challenger is not None:
    save_challenger(challenger.challenger_dir(model.uri))
  return model


def served(baseline):
  """Marks a baseline Model artifact as ServedModelBaseline marks the served version's copy."""
  baseline.set_int_custom_property(served_baseline.SERVED_VERSION_PROPERTY, SERVED_VERSION)
  baseline.set_string_custom_property(served_baseline.SERVED_PATH_PROPERTY, SERVED_PATH)
  return baseline


@dataclasses.dataclass
class Evaluated:
  evaluation: standard_artifacts.ModelEvaluation
  blessing: standard_artifacts.ModelBlessing

  @property
  def blessed(self) -> bool:
    return os.path.exists(os.path.join(self.blessing.uri, 'BLESSED'))


def evaluate(tmp, model, baseline, eval_config, gate: gate_rule.GateConfig,
             eval_fraction: float = splits.SplitConfig.eval_fraction) -> Evaluated:
  """The Evaluator's executor on eval_examples() under tmp, as the pipeline runs it."""
  evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
  evaluation.uri, blessing.uri = str(tmp / 'evaluation'), str(tmp / 'blessing')
  os.makedirs(blessing.uri)
  gated_evaluator.Executor().Do(
      {standard_component_specs.EXAMPLES_KEY: [eval_examples(tmp / 'examples')],
       standard_component_specs.MODEL_KEY: [model],
       standard_component_specs.BASELINE_MODEL_KEY: [] if baseline is None else [baseline]},
      {standard_component_specs.EVALUATION_KEY: [evaluation],
       standard_component_specs.BLESSING_KEY: [blessing]},
      {standard_component_specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config),
       standard_component_specs.EXAMPLE_SPLITS_KEY: json.dumps([splits.EVAL]),
       gated_evaluator.GATE_KEY: json.dumps(dataclasses.asdict(gate)),
       gated_evaluator.EVAL_FRACTION_KEY: eval_fraction})
  return Evaluated(evaluation, blessing)
