"""What a check measures, against which threshold, in words; and the model-level thresholds.

Per-field skew and drift thresholds live beside the fields in models/features.py (and so in
the schema's comparators); the thresholds here are about the model's predictions and quality.
"""
import dataclasses
from typing import Optional

SKEW, DRIFT, SCHEMA, PREDICTION, DECAY = 'skew', 'drift', 'schema', 'prediction', 'decay'


@dataclasses.dataclass(frozen=True)
class Thresholds:
  """When the served model's predictions or quality count as moved (any one breaks the check)."""
  prediction_jsd: float = 0.05  # JSD (base 2) of served vs eval prediction histograms
  mean_prediction_change: float = 0.2  # relative change of the mean predicted CTR
  auc_drop: float = 0.03  # observed AUC below the promised one by more than this
  logloss_rise: float = 0.015  # observed log-loss above the promised one by more than this
  # Growth of |calibration - 1| (calibration: mean prediction / mean label) over the promised.
  calibration_change: float = 0.1


@dataclasses.dataclass(frozen=True)
class Measure:
  """One number a check compared with its threshold.

  kind: SKEW, DRIFT, SCHEMA, PREDICTION or DECAY; name: the field or metric; value: what was
  measured (for DECAY the observed metric, `reference` what was promised); broken: whether
  the threshold is broken; words: a sentence for people.
  """
  kind: str
  name: str
  value: Optional[float]
  threshold: Optional[float]
  broken: bool
  words: str
  reference: Optional[float] = None

  def line(self) -> str:
    return f"{'BROKEN' if self.broken else 'ok':6s} {self.kind:10s} {self.name}: {self.words}"
