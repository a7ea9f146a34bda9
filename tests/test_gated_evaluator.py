"""The Evaluator's blessing, its histogram types (encoded whole by Beam, the same histogram
as TFMA's), and its pass that scores the eval rows with the model and its challenger."""
import os
import pickle

import apache_beam as beam
import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import calibration_histogram
from tensorflow_model_analysis.metrics import metric_types
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from components import evaluation_report
from components import evaluation_results
from components import gate_rule
from components import gated_evaluator
from components.evaluation_results import AUC, EXAMPLE_COUNT, LOGLOSS, Estimate
from components.image_csv_example_gen import splits
from models import challenger
from models import features
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from tests import evaluator_inputs
from tests import fake_models
from tests.evaluator_inputs import ADS, ROWS

_COMBINER_CLASS = calibration_histogram._CalibrationHistogramCombiner  # pylint: disable=protected-access


def _histogram_combiner():
  """TFMA's combiner behind AUC's histogram (10,000 buckets, unweighted)."""
  computation = calibration_histogram.calibration_histogram(
      eval_config=tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_key=features.LABEL_KEY)]),
      example_weighted=False)[-1]
  return computation.combiner


def _inputs(seed, rows):
  rng = np.random.default_rng(seed)
  predictions = rng.beta(1, 15, size=rows)
  labels = (rng.random(rows) < predictions).astype(np.float32)
  return [metric_types.StandardMetricInputs(
      labels=np.array([label]), predictions=np.array([prediction]),
      example_weights=np.array([1.0])) for label, prediction in zip(labels, predictions)]


def _beam_round_trip(accumulator):
  coder = beam.coders.FastPrimitivesCoder()  # what Beam uses for TFMA's accumulators
  return coder.decode(coder.encode(accumulator))


def _histogram(combiner, parts, round_trip):
  """Accumulates each part, optionally through Beam's coder, merges and extracts."""
  accumulators = []
  for part in parts:
    accumulator = combiner.create_accumulator()
    for element in part:
      accumulator = combiner.add_input(accumulator, element)
    accumulators.append(round_trip(accumulator))
  return round_trip(combiner.extract_output(combiner.merge_accumulators(accumulators)))


def _pickle_round_trip(value):
  copy = pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
  assert type(copy) is type(value)
  return copy


def test_pickled_whole_with_every_bucket_sum():
  buckets = [calibration_histogram.Bucket(3, 1.0, 0.1 + 0.2, 2.0),
             calibration_histogram.Bucket(9, 0.0, 1 / 3, 1.0)]
  accumulator = gated_evaluator.HistogramAccumulator((b.bucket_id, b) for b in buckets)
  assert _pickle_round_trip(accumulator) == accumulator  # float64 sums exactly, not rounded
  assert _pickle_round_trip(gated_evaluator.HistogramAccumulator()) == {}
  assert _pickle_round_trip(gated_evaluator.Histogram(buckets)) == buckets
  assert _pickle_round_trip(gated_evaluator.Histogram()) == []


def test_same_histogram_as_tfma_through_beams_coder(monkeypatch):
  parts = [_inputs(seed, 300) for seed in range(3)]
  expected = _histogram(_histogram_combiner(), parts, round_trip=lambda a: a)
  # Restored after the test: the patch is process-wide.
  for method in ('create_accumulator', 'extract_output'):
    monkeypatch.setattr(_COMBINER_CLASS, method, getattr(_COMBINER_CLASS, method))
  gated_evaluator._use_histogram_accumulator()  # pylint: disable=protected-access
  combiner = _histogram_combiner()
  assert type(combiner.create_accumulator()) is gated_evaluator.HistogramAccumulator
  histogram = _histogram(combiner, parts, round_trip=_beam_round_trip)
  assert histogram == expected
  assert all(type(buckets) is gated_evaluator.Histogram for buckets in histogram.values())


_write_blessing = gated_evaluator._write_blessing  # pylint: disable=protected-access


def _artifact(artifact_type, uri, artifact_id):
  artifact = artifact_type()
  artifact.uri, artifact.id = str(uri), artifact_id
  return artifact


def test_the_blessing_names_the_models_it_judged(tmp_path):
  """As TFX's Evaluator records them (a KFP run hands the baseline over by this id)."""
  model = _artifact(standard_artifacts.Model, tmp_path / 'model', 7)
  baseline = _artifact(standard_artifacts.Model, tmp_path / 'served', 3)
  blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / 'blessing', 9)
  os.makedirs(blessing.uri)
  _write_blessing(blessing, False, model, baseline)
  assert os.listdir(blessing.uri) == ['NOT_BLESSED']
  assert blessing.get_int_custom_property('blessed') == 0
  assert blessing.get_int_custom_property('current_model_id') == 7
  assert blessing.get_string_custom_property('current_model') == model.uri
  assert blessing.get_int_custom_property('baseline_model_id') == 3
  assert blessing.get_string_custom_property('baseline_model') == baseline.uri

  alone = _artifact(standard_artifacts.ModelBlessing, tmp_path / 'alone', 10)
  os.makedirs(alone.uri)
  _write_blessing(alone, True, model, None)
  assert os.listdir(alone.uri) == ['BLESSED'] and alone.get_int_custom_property('blessed') == 1
  assert not alone.has_custom_property('baseline_model_id')


# The model against its challenger: stand-in SavedModels (tests/fake_models.py) in a Model
# artifact laid out as the Trainer writes it, and eval rows (tests/evaluator_inputs.py).


def test_one_pass_scores_each_eval_row_with_both_models(tmp_path):
  examples = evaluator_inputs.eval_examples(tmp_path / 'examples')
  # The model reads the label (AUC 1), the challenger predicts a constant (AUC 0.5): any row
  # whose scores were not kept beside its own label would lower the model's AUC.
  model = evaluator_inputs.model_artifact(tmp_path / 'model', fake_models.save_peeking,
                                          save_challenger=fake_models.save_constant)
  comparison = gated_evaluator.compare_with_challenger(examples, [splits.EVAL], model)
  assert comparison.model[AUC] == 1.0 and comparison.challenger[AUC] == 0.5
  assert comparison.model[EXAMPLE_COUNT] == comparison.challenger[EXAMPLE_COUNT] == ROWS
  assert comparison.change[AUC] == Estimate(0.5, 0.5, 0.5)
  assert comparison.change[LOGLOSS].upper < 0  # the peeking model's log-loss is lower
  key = features.cohort_key_feature()
  assert comparison.resampled == (f'ads ({key.name})' if key else 'rows')
  *_, clusters = gated_evaluator.score_eval_rows(
      [os.path.join(artifact_utils.get_split_uri([examples], splits.EVAL), '*')],
      path_utils.serving_model_dir(model.uri), challenger.challenger_dir(model.uri))
  assert len(set(clusters)) == (ADS if key else ROWS)
  # A Model artifact without a challenger (trained before there were any) is compared with
  # nothing.
  alone = evaluator_inputs.model_artifact(tmp_path / 'alone', fake_models.save_peeking)
  assert gated_evaluator.compare_with_challenger(examples, [splits.EVAL], alone) is None


@pytest.mark.slow
def test_a_model_worse_than_its_challenger_is_refused_and_the_report_says_why(tmp_path):
  """The Executor end to end (TFMA included, ~20 s): a constant model against a challenger
  that reads the label."""
  model = evaluator_inputs.model_artifact(tmp_path / 'model', fake_models.save_constant,
                                          save_challenger=fake_models.save_peeking)
  config = config_lib.PipelineConfig(gate=gate_rule.GateConfig(auc_floor=0.4))
  evaluated = evaluator_inputs.evaluate(tmp_path, model, None, pipeline_lib.eval_config(config),
                                        config.gate)
  evaluation, blessing = evaluated.evaluation, evaluated.blessing
  assert os.listdir(blessing.uri) == ['NOT_BLESSED']
  results = evaluation_results.Results(evaluation.uri)
  assert results.challenger.change[AUC].value == -0.5
  with open(os.path.join(evaluation.uri, evaluation_report.REPORT_FILE)) as f:
    report = f.read()
  assert '- AUC margin over the challenger (a logistic regression on the same rows) is ' \
         '-0.5000 [-0.5000, -0.5000]' in report
  assert 'model vs challenger' in report
