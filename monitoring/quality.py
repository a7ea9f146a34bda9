"""The served model's predictions and quality: prediction drift against its eval data, and
decay on a new labelled month against what its evaluation promised when it was pushed.

The model is called through its `serving_examples` signature on tf.Examples, the way the
Evaluator called it; a labelled month's CSV becomes tf.Examples by ExampleGen's row rules
(models/rows.py: rows it would reject, such as a missing creative, are left out and counted).
"""
from typing import Dict, List, Optional, Sequence, Tuple

from apache_beam.io.filesystems import FileSystems
import numpy as np
import tensorflow as tf

from components import evaluation_results
from components.evaluation_results import AUC, CALIBRATION, LOGLOSS, MEAN_LABEL, MEAN_PREDICTION
from models import data_layout
from models import features
from models import rows
from models import signatures
from monitoring.measures import DECAY, PREDICTION, Measure, Thresholds

QUALITY = (AUC, LOGLOSS, CALIBRATION)  # what decay compares, in the report's order
LABELS = {AUC: 'AUC', LOGLOSS: 'log-loss', CALIBRATION: 'calibration'}  # measure names
_BATCH = 512
_BINS = 20


def jensen_shannon(values: np.ndarray, reference: np.ndarray, bins: int = _BINS) -> float:
  """JSD (base 2, 0 to 1) of two samples, on bins holding equal shares of the reference."""
  edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
  edges[0], edges[-1] = -np.inf, np.inf
  p = np.histogram(values, edges)[0] + 1e-9
  q = np.histogram(reference, edges)[0] + 1e-9
  p, q = p / p.sum(), q / q.sum()
  m = (p + q) / 2
  return float((np.sum(p * np.log2(p / m)) + np.sum(q * np.log2(q / m))) / 2)


def prediction_drift(served: np.ndarray, reference: np.ndarray,
                     thresholds: Thresholds) -> List[Measure]:
  """Served predictions vs the served model's predictions on its eval data."""
  jsd = jensen_shannon(served, reference)
  mean, ref_mean = float(np.mean(served)), float(np.mean(reference))
  change = mean / ref_mean - 1 if ref_mean else float('inf')
  return [
      Measure(PREDICTION, 'prediction distribution', jsd, thresholds.prediction_jsd,
              jsd > thresholds.prediction_jsd,
              f'Jensen-Shannon divergence {jsd:.3f} between served predictions and the eval '
              f'predictions, threshold {thresholds.prediction_jsd:g}'),
      Measure(PREDICTION, 'mean predicted CTR', mean, thresholds.mean_prediction_change,
              abs(change) > thresholds.mean_prediction_change,
              f'{mean:.4f} served vs {ref_mean:.4f} on the eval data ({change:+.1%}), '
              f'threshold {thresholds.mean_prediction_change:.0%} either way',
              reference=ref_mean),
  ]


def promised(evaluation_uri: str) -> Optional[Dict[str, float]]:
  """What the Evaluator measured for the model it evaluated (the candidate): what that
  model promised if it was pushed."""
  results = evaluation_results.Results(evaluation_uri)
  return results.overall(results.candidate)


def decay(observed: Dict[str, float], promised_metrics: Dict[str, float],
          thresholds: Thresholds) -> List[Measure]:
  """The served model on a new labelled month against what its evaluation promised."""
  auc, ll, cal = (observed[m] for m in QUALITY)
  p_auc, p_ll, p_cal = (promised_metrics[m] for m in QUALITY)
  return [
      Measure(DECAY, LABELS[AUC], auc, thresholds.auc_drop, p_auc - auc > thresholds.auc_drop,
              f'{auc:.4f} observed vs {p_auc:.4f} promised ({auc - p_auc:+.4f}), allowed '
              f'drop {thresholds.auc_drop:g}', reference=p_auc),
      Measure(DECAY, LABELS[LOGLOSS], ll, thresholds.logloss_rise,
              ll - p_ll > thresholds.logloss_rise,
              f'{ll:.4f} observed vs {p_ll:.4f} promised ({ll - p_ll:+.4f}), allowed rise '
              f'{thresholds.logloss_rise:g}', reference=p_ll),
      # Calibration decays when it moves away from 1, not when it comes closer than promised.
      Measure(DECAY, LABELS[CALIBRATION], cal, thresholds.calibration_change,
              abs(cal - 1) - abs(p_cal - 1) > thresholds.calibration_change,
              f'{cal:.3f} observed vs {p_cal:.3f} promised (mean prediction / mean label; '
              f'{observed[MEAN_PREDICTION]:.4f} predicted, {observed[MEAN_LABEL]:.4f} '
              f'clicked): its distance from 1 changed by {abs(cal - 1) - abs(p_cal - 1):+.3f}, '
              f'allowed growth {thresholds.calibration_change:g}', reference=p_cal),
  ]


def labelled_examples(data_root: str, span: int) -> Tuple[List[bytes], np.ndarray, int]:
  """(serialized tf.Examples, labels, rows left out) of a labelled month, read by the row
  rules ExampleGen applies (models/rows.py)."""
  return accepted_examples(data_layout.ads_csv(data_root, span))


def accepted_examples(csv_path: str) -> Tuple[List[bytes], np.ndarray, int]:
  """(serialized tf.Examples, labels, rows left out) of one labelled file in the log's
  format, read by the row rules ExampleGen applies (models/rows.py)."""
  parser = rows.RowParser(rows.check_headers([csv_path]))
  examples, labels, rejected = [], [], 0
  for record in rows.data_records(csv_path):
    example, refusal = parser.parse(csv_path, record)
    if refusal:
      rejected += 1
      continue
    examples.append(example.SerializeToString())
    labels.append(example.features.feature[features.LABEL_KEY].int64_list.value[0])
  return examples, np.array(labels), rejected


def split_examples(examples_uri: str, split: str) -> List[bytes]:
  """The serialized tf.Examples of one split of an Examples artifact."""
  files = [m.path for m in FileSystems.match(
      [FileSystems.join(examples_uri, f'Split-{split}', '*')])[0].metadata_list]
  return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def score(model_dir: str, examples: Sequence[bytes]) -> np.ndarray:
  """Click probabilities of serialized tf.Examples from the model's examples signature."""
  serve = tf.saved_model.load(model_dir).signatures[signatures.EXAMPLES_SIGNATURE]
  out = [serve(examples=tf.constant(examples[start:start + _BATCH]))[signatures.PREDICTION_KEY]
         .numpy().reshape(-1) for start in range(0, len(examples), _BATCH)]
  return np.concatenate(out) if out else np.zeros(0)
