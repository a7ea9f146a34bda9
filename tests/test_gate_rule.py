"""The blessing rule: the floor, and paired intervals against the served model and against
the challenger."""
import dataclasses
import json

from components import gate_rule
from components.evaluation_results import AUC, LOGLOSS, Estimate
from components.gate_rule import GateConfig
from pipeline import config as config_lib
from pipeline import options

GATE = GateConfig(auc_floor=0.65, auc_tolerance=0.01, logloss_tolerance=0.01)
NEW = {AUC: Estimate(0.70, 0.68, 0.72), LOGLOSS: Estimate(0.16)}


def test_floor_alone_without_a_served_model():
  assert gate_rule.decide(NEW, {}, {}, GATE) == (True, [])
  blessed, reasons = gate_rule.decide({AUC: Estimate(0.64)}, {}, {}, GATE)
  assert not blessed and 'floor is 0.6500' in reasons[0]


def test_a_difference_inside_the_noise_does_not_block():
  # Point estimate slightly worse, interval reaching above -0.01: not worse at 95 %.
  diff = {AUC: Estimate(-0.004, -0.009, 0.001),
          LOGLOSS: Estimate(0.001, -0.002, 0.004)}
  assert gate_rule.decide(NEW, diff, {}, GATE) == (True, [])


def test_worse_beyond_the_tolerance_at_95_percent_blocks():
  diff = {AUC: Estimate(-0.004, -0.015, 0.007),
          LOGLOSS: Estimate(0.008, 0.002, 0.014)}
  blessed, reasons = gate_rule.decide(NEW, diff, {}, GATE)
  assert not blessed and len(reasons) == 2
  assert 'AUC change' in reasons[0] and '[-0.0150, +0.0070]' in reasons[0]
  assert 'log-loss change' in reasons[1]


def test_without_an_interval_the_point_estimate_decides():
  assert not gate_rule.decide(NEW, {AUC: Estimate(-0.02)}, {}, GATE)[0]
  assert gate_rule.decide(NEW, {AUC: Estimate(-0.005)}, {}, GATE)[0]


def test_a_model_worse_than_its_challenger_at_95_percent_is_refused_in_words():
  worse = {AUC: Estimate(-0.03, -0.045, -0.015), LOGLOSS: Estimate(0.004, 0.001, 0.007)}
  blessed, reasons = gate_rule.decide(NEW, {}, worse, GATE)
  assert not blessed and len(reasons) == 1
  assert 'challenger' in reasons[0] and '[-0.0450, -0.0150]' in reasons[0]
  assert 'by more than 0.010 at 95 % confidence' in reasons[0]
  # The option off: reported, not gated.
  assert gate_rule.decide(NEW, {}, worse, dataclasses.replace(GATE, challenger_check=False)) == (
      True, [])
  assert 'not gated' in gate_rule.rule_text(dataclasses.replace(GATE, challenger_check=False))
  assert 'challenger' in gate_rule.rule_text(GATE) and '-0.010' in gate_rule.rule_text(GATE)


def test_a_challenger_margin_inside_the_noise_or_the_tolerance_does_not_block():
  # Worse at the point estimate, but a small eval split's interval reaches above -0.01.
  noisy = {AUC: Estimate(-0.03, -0.08, 0.02)}
  assert gate_rule.decide(NEW, {}, noisy, GATE) == (True, [])
  # Surely worse, but by less than the tolerance.
  assert gate_rule.decide(NEW, {}, {AUC: Estimate(-0.006, -0.009, -0.003)}, GATE) == (True, [])
  assert gate_rule.decide(NEW, {}, {AUC: Estimate(0.02, 0.01, 0.03)}, GATE) == (True, [])
  # A looser tolerance lets a surely worse model through.
  loose = dataclasses.replace(GATE, challenger_auc_tolerance=0.05)
  assert gate_rule.decide(NEW, {}, {AUC: Estimate(-0.03, -0.045, -0.015)}, loose) == (True, [])


def test_every_runner_sets_the_challenger_option_by_name():
  """`--set gate.challenger_check=false` (pipeline/options.py) reaches the GateConfig that the
  Evaluator is given as JSON."""
  config = options.apply(config_lib.PipelineConfig(), {
      'gate.challenger_check': 'false', 'gate.challenger_auc_tolerance': '0.02'})
  assert config.gate == GateConfig(challenger_check=False, challenger_auc_tolerance=0.02)
  assert GateConfig(**json.loads(json.dumps(dataclasses.asdict(config.gate)))) == config.gate
  assert GateConfig().challenger_check  # on by default
