"""The Evaluator's blessing, and its histogram types: encoded whole by Beam, the same histogram
as TFMA's."""
import os
import pickle

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import calibration_histogram
from tensorflow_model_analysis.metrics import metric_types
from tfx.types import standard_artifacts

from components import gated_evaluator

_COMBINER_CLASS = calibration_histogram._CalibrationHistogramCombiner  # pylint: disable=protected-access


def _histogram_combiner():
  """TFMA's combiner behind AUC's histogram (10,000 buckets, unweighted)."""
  computation = calibration_histogram.calibration_histogram(
      eval_config=tfma.EvalConfig(model_specs=[tfma.ModelSpec(label_key='clicked')]),
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
