"""The blessing rule, in one place: what the Evaluator decides and the report explains.

On the overall eval slice (out of time, see the ExampleGen's splits.py):
  1. AUC(new) >= auc_floor.
  2. With a served model, paired on the same eval rows with TFMA's 95 % jackknife intervals:
     the lower bound of AUC(new) - AUC(served) >= -auc_tolerance, and
     the upper bound of logloss(new) - logloss(served) <= +logloss_tolerance.
     That is: blessed unless the new model may be worse than the served one by more than the
     tolerance at 95 % confidence, so a difference smaller than the noise decides nothing.
  3. With challenger_check (on by default) and a challenger in the Model artifact (a logistic
     regression on the same rows, models/challenger.py), paired on the same eval rows with a
     95 % interval that resamples ads: the upper bound of AUC(new) - AUC(challenger) >=
     -challenger_auc_tolerance. That is: refused only when the model is worse than the plain
     peer by more than the tolerance at 95 % confidence; a small, noisy eval split, whose
     interval reaches above that, decides nothing.
"""
import dataclasses
from typing import Dict, List, Tuple

from components.evaluation_results import AUC, LOGLOSS, Estimate


@dataclasses.dataclass(frozen=True)
class GateConfig:
  """The rule's values (PipelineConfig.gate; every runner sets them with --set gate.NAME=V)."""
  auc_floor: float = 0.65  # absolute quality floor
  auc_tolerance: float = 0.01  # allowed AUC drop against the served model
  logloss_tolerance: float = 0.01  # allowed log-loss rise against the served model
  # Refuse a model that is worse than its challenger (an LR on the same rows) at 95 %.
  challenger_check: bool = True
  challenger_auc_tolerance: float = 0.01  # allowed AUC shortfall against the challenger


def rule_text(gate: GateConfig) -> str:
  return (f'AUC >= {gate.auc_floor:.2f}; against the served model, paired on the same rows '
          f'with 95 % intervals: AUC change lower bound >= {-gate.auc_tolerance:+.3f} and '
          f'log-loss change upper bound <= {gate.logloss_tolerance:+.3f} (blessed unless '
          'the new model may be worse by more than that).' + (
              ' Against the challenger (a logistic regression on the same rows), paired with '
              'a 95 % interval resampling ads (rows where features.py names no ad): AUC '
              f'margin upper bound >= '
              f'{-gate.challenger_auc_tolerance:+.3f} (refused only when the model is worse '
              'than the challenger by more than that).' if gate.challenger_check else
              ' The challenger is reported, not gated (gate.challenger_check is off).'))


def decide(new: Dict[str, Estimate], diff: Dict[str, Estimate],
           challenger: Dict[str, Estimate], gate: GateConfig) -> Tuple[bool, List[str]]:
  """(blessed, reasons it was not); `diff` is empty without a served model, `challenger`
  (the new model minus its challenger) without a challenger."""
  reasons = []
  auc = new.get(AUC)
  if auc is None:
    return False, ['TFMA computed no AUC (no eval rows, or only one class in them).']
  if auc.value < gate.auc_floor:
    reasons.append(f'AUC is {auc.words()}; the floor is {gate.auc_floor:.4f}.')
  if diff:
    auc_change, loss_change = diff.get(AUC), diff.get(LOGLOSS)
    if auc_change is not None and _lower(auc_change) < -gate.auc_tolerance:
      reasons.append(f'AUC change against the served model is {auc_change.words(True)}: it '
                     f'may be worse by more than {gate.auc_tolerance:.3f} at 95 % confidence.')
    if loss_change is not None and _upper(loss_change) > gate.logloss_tolerance:
      reasons.append(f'log-loss change against the served model is {loss_change.words(True)}:'
                     f' it may be worse by more than {gate.logloss_tolerance:.3f} at 95 % '
                     'confidence.')
  margin = challenger.get(AUC)
  if gate.challenger_check and margin is not None and (
      _upper(margin) < -gate.challenger_auc_tolerance):
    reasons.append(f'AUC margin over the challenger (a logistic regression on the same rows) '
                   f'is {margin.words(True)}: the model is worse than it by more than '
                   f'{gate.challenger_auc_tolerance:.3f} at 95 % confidence, so it does not earn '
                   'its cost (gate.challenger_check=false pushes it anyway).')
  return not reasons, reasons


def _lower(estimate: Estimate) -> float:
  return estimate.value if estimate.lower is None else estimate.lower


def _upper(estimate: Estimate) -> float:
  return estimate.value if estimate.upper is None else estimate.upper
