"""The TFX Evaluator, gating against the served model and the challenger with paired intervals,
and explaining it.

Four additions to tfx.components.Evaluator, all in its executor so they hold under every
orchestrator:
* An empty baseline (ServedModelBaseline found nothing served) is dropped before TFMA
  runs; the Evaluator then treats the run as having no baseline.
* TFMA computes every metric with 95 % jackknife intervals (eval_config) and is given no
  threshold: the blessing is decided once, by gate_rule.py from the GateConfig (the floor and
  the paired intervals of the change against the served model), and written the way TFX
  writes it (BLESSED / NOT_BLESSED file and the `blessed` property the Pusher reads).
* The new model against its challenger (models/challenger.py: a logistic regression the
  Trainer fitted on the same rows, in the Model artifact beside Format-Serving): one streaming
  pass scores the eval rows with both, keeping each row's label, the two scores and its ad
  (the cohort_key field of features.py), and the paired change with its 95 % interval over
  ads (evaluation_results.paired_change) is written to the ModelEvaluation artifact
  (evaluation_results.CHALLENGER_FILE), where the gate and the reports read it.
* `evaluation_report.md` in the ModelEvaluation artifact states the protocol, the rule, the
  decision and each metric overall, per cohort and per slice (evaluation_report.py);
  `evaluation_report.html` beside it adds the charts: the reliability diagram and AUC per
  cohort and per slice, new vs served (evaluation_report_html.py).
And one change to how TFMA's AUC histograms travel between Beam stages (HistogramAccumulator,
Histogram: pickled whole, not bucket by bucket),
which changes no figure.
"""
import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import calibration_histogram
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import json_utils
from tfx.utils import path_utils
from tfx.utils import proto_utils

from components import evaluation_report
from components import evaluation_report_html
from components import evaluation_results
from components import gate_rule
from components import served_baseline
from models import challenger as challenger_lib
from models import features
from models import signatures

_BASELINE_KEY = standard_component_specs.BASELINE_MODEL_KEY
GATE_KEY = 'gate'  # JSON of the GateConfig fields
EVAL_FRACTION_KEY = 'eval_fraction'


def _served_words(baseline: types.Artifact) -> str:
  version = baseline.get_int_custom_property(served_baseline.SERVED_VERSION_PROPERTY)
  path = baseline.get_string_custom_property(served_baseline.SERVED_PATH_PROPERTY)
  return f'the served model, version {version} ({path})'


def _write_blessing(blessing: types.Artifact, blessed: bool, model: types.Artifact,
                    baseline: Optional[types.Artifact]) -> None:
  """The verdict and the models it judged, as TFX's Evaluator writes them; TFX's executor
  writes neither when TFMA has no threshold, which it returns early on."""
  blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                      model.uri)
  blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
  if baseline is not None:
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                        baseline.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY,
                                     baseline.id)
  for name in (constants.BLESSED_FILE_NAME, constants.NOT_BLESSED_FILE_NAME):
    path = os.path.join(blessing.uri, name)
    if io_utils.fileio.exists(path):
      io_utils.fileio.remove(path)
  name = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
  io_utils.write_string_file(os.path.join(blessing.uri, name), '')
  blessing.set_int_custom_property(
      constants.ARTIFACT_PROPERTY_BLESSED_KEY,
      constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE)


def _bucket_arrays(buckets) -> tuple:
  ids = np.array([b.bucket_id for b in buckets], np.int64)
  sums = np.array([(b.weighted_labels, b.weighted_predictions, b.weighted_examples)
                   for b in buckets], np.float64).reshape(-1, 3)
  return ids, sums


def _buckets(ids: np.ndarray, sums: np.ndarray) -> List[calibration_histogram.Bucket]:
  return [calibration_histogram.Bucket(i, labels, predictions, examples)
          for i, (labels, predictions, examples) in zip(ids.tolist(), sums.tolist())]


class HistogramAccumulator(dict):
  """TFMA's calibration-histogram accumulator ({bucket id: Bucket}), pickled as two arrays.

  AUC is computed from a histogram of up to 10,000 prediction buckets per slice, model and
  jackknife partition, and the jackknife hands each partition's histogram to 21 merges.
  Beam encodes a plain dict or list entry by entry, pickling every Bucket on its own: 6.9
  million pickles for 10,481 eval rows, most of the Evaluator's time (and more buckets fill
  as rows grow). A subclass is pickled whole, through __reduce__: one call per histogram.
  The buckets and their float64 sums are unchanged, so is every figure.
  """

  def __reduce__(self):
    return (_accumulator_from_arrays, _bucket_arrays(self.values()))


def _accumulator_from_arrays(ids: np.ndarray, sums: np.ndarray) -> HistogramAccumulator:
  return HistogramAccumulator((b.bucket_id, b) for b in _buckets(ids, sums))


class Histogram(list):
  """The combiner's output (its buckets in id order, one per slice and jackknife sample),
  pickled whole for the same reason."""

  def __reduce__(self):
    return (_histogram_from_arrays, _bucket_arrays(self))


def _histogram_from_arrays(ids: np.ndarray, sums: np.ndarray) -> Histogram:
  return Histogram(_buckets(ids, sums))


_HISTOGRAM_COMBINER = calibration_histogram._CalibrationHistogramCombiner  # pylint: disable=protected-access
_TFMA_EXTRACT_OUTPUT = _HISTOGRAM_COMBINER.extract_output


def _extract_histograms(combiner, accumulator) -> Dict[Any, Histogram]:
  return {key: Histogram(buckets)
          for key, buckets in _TFMA_EXTRACT_OUTPUT(combiner, accumulator).items()}


def _use_histogram_accumulator() -> None:
  """Makes TFMA's histogram combiner use the two classes above in this process.

  Its other methods keep the accumulator they are given (add_input fills it in place,
  merge_accumulators merges into the first), so every histogram of the run is one. A runner
  whose workers are other processes that never import this module keeps TFMA's plain types.
  """
  _HISTOGRAM_COMBINER.create_accumulator = lambda self: HistogramAccumulator()
  _HISTOGRAM_COMBINER.extract_output = _extract_histograms


SCORING_BATCH = 1024  # eval rows a model scores at a time in the challenger pass


def _score(model_dir: str):
  """The examples signature of a SavedModel: serialized tf.Examples -> probabilities."""
  serve = tf.saved_model.load(model_dir).signatures[signatures.EXAMPLES_SIGNATURE]
  return lambda batch: np.reshape(serve(batch)[signatures.PREDICTION_KEY].numpy(), -1).astype(
      np.float32)


def _row_spec() -> Dict[str, tf.io.FixedLenFeature]:
  """The label, and the ad (the cohort_key field) where features.py declares one."""
  label = features.label_feature()
  spec = {label.name: tf.io.FixedLenFeature([], features.tf_dtype(label))}
  key = features.cohort_key_feature()
  if key is not None:
    dtype = features.tf_dtype(key)
    spec[key.name] = tf.io.FixedLenFeature([], dtype, default_value='' if dtype == tf.string
                                           else 0)
  return spec


def score_eval_rows(file_patterns: List[str], model_dir: str, challenger_dir: str
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(labels, the model's scores, the challenger's, each row's cluster: its ad, else the
  row itself), in one streaming pass over the eval files, batch by batch: what is kept is
  a label, two float32 scores and a cluster a row."""
  model, challenger = _score(model_dir), _score(challenger_dir)
  spec, key = _row_spec(), features.cohort_key_feature()
  files = [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
  kept = {name: [np.zeros(0, dtype)] for name, dtype in (
      ('labels', np.int64), ('scores', np.float32), ('reference', np.float32),
      ('clusters', object))}
  for batch in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(SCORING_BATCH):
    parsed = tf.io.parse_example(batch, spec)
    kept['labels'].append(parsed[features.LABEL_KEY].numpy())
    kept['scores'].append(model(batch))
    kept['reference'].append(challenger(batch))
    if key is not None:
      kept['clusters'].append(parsed[key.name].numpy())
  labels, scores, reference, clusters = (np.concatenate(kept[name]) for name in kept)
  cluster = (np.unique(clusters, return_inverse=True)[1] if key is not None
             else np.arange(len(labels)))
  return labels, scores, reference, cluster


def compare_with_challenger(examples: types.Artifact, splits: List[str],
                            model: types.Artifact) -> Optional[
                                evaluation_results.ChallengerComparison]:
  """The new model against the challenger in its Model artifact on the eval rows; None
  where the artifact has none (a model trained before challengers, or a stand-in)."""
  challenger_dir = challenger_lib.challenger_dir(model.uri)
  if not tf.io.gfile.exists(challenger_dir):
    return None
  started = time.time()
  patterns = [os.path.join(artifact_utils.get_split_uri([examples], split), '*')
              for split in splits]
  labels, scores, reference, clusters = score_eval_rows(
      patterns, path_utils.serving_model_path(model.uri), challenger_dir)
  key = features.cohort_key_feature()
  return evaluation_results.ChallengerComparison(
      name=challenger_lib.NAME, model=evaluation_results.figures(labels, scores),
      challenger=evaluation_results.figures(labels, reference),
      change=evaluation_results.paired_change(labels, scores, reference, clusters),
      resampled=f'ads ({key.name})' if key else 'rows',
      seconds=round(time.time() - started, 2))


class Executor(evaluator_executor.Executor):
  """TFX's Evaluator executor, minus an empty baseline, plus the challenger pass, the paired
  gate and the report."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    input_dict = dict(input_dict)
    baselines = [m for m in input_dict.get(_BASELINE_KEY, []) if served_baseline.has_model(m)]
    input_dict[_BASELINE_KEY] = baselines
    exec_properties = dict(exec_properties)
    gate = gate_rule.GateConfig(**json.loads(exec_properties.pop(GATE_KEY)))
    eval_fraction = exec_properties.pop(EVAL_FRACTION_KEY)
    _use_histogram_accumulator()
    super().Do(input_dict, output_dict, exec_properties)

    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY],
                              eval_config)
    # The config TFMA actually ran with: it names the models only when there is a baseline.
    eval_config = tfma.utils.update_eval_config_with_defaults(
        eval_config, has_baseline=bool(baselines), rubber_stamp=True)
    evaluation_uri = artifact_utils.get_single_uri(
        output_dict[standard_component_specs.EVALUATION_KEY])
    comparison = compare_with_challenger(
        artifact_utils.get_single_instance(input_dict[standard_component_specs.EXAMPLES_KEY]),
        json_utils.loads(exec_properties.get(standard_component_specs.EXAMPLE_SPLITS_KEY) or
                         'null') or ['eval'],
        artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY]))
    if comparison is not None:
      evaluation_results.write_challenger(evaluation_uri, comparison)
    results = evaluation_results.Results(evaluation_uri, eval_config)
    blessed, reasons = gate_rule.decide(*results.gate_inputs(), gate)
    _write_blessing(
        artifact_utils.get_single_instance(output_dict[standard_component_specs.BLESSING_KEY]),
        blessed, artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY]),
        baselines[0] if baselines else None)
    verdict = (results, gate, eval_fraction,
               _served_words(baselines[0]) if baselines else None, blessed, reasons)
    io_utils.write_string_file(os.path.join(evaluation_uri, evaluation_report.REPORT_FILE),
                               evaluation_report.render(*verdict))
    io_utils.write_string_file(os.path.join(evaluation_uri, evaluation_report_html.HTML_FILE),
                               evaluation_report_html.render(*verdict))


class GatedEvaluatorSpec(standard_component_specs.EvaluatorSpec):
  PARAMETERS = {
      **standard_component_specs.EvaluatorSpec.PARAMETERS,
      GATE_KEY: component_spec.ExecutionParameter(type=str),
      EVAL_FRACTION_KEY: component_spec.ExecutionParameter(type=float),
  }


class GatedEvaluator(base_beam_component.BaseBeamComponent):
  """tfx.components.Evaluator's inputs and outputs, the executor above, and the gate's values.

  Named apart from TFX's own Evaluator; the pipeline gives its node the id `Evaluator`, the
  step's name in MLMD, the console and the KFP graph.
  """

  SPEC_CLASS = GatedEvaluatorSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
               baseline_model: types.BaseChannel, eval_config: tfma.EvalConfig,
               example_splits: List[str], gate: Dict[str, float], eval_fraction: float):
    super().__init__(spec=GatedEvaluatorSpec(
        examples=examples, model=model, baseline_model=baseline_model,
        eval_config=eval_config, example_splits=json_utils.dumps(example_splits),
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        gate=json.dumps(gate, sort_keys=True), eval_fraction=eval_fraction))
