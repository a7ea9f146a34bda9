"""The TFX Evaluator, gating against the served model and explaining its decision.

Two additions to tfx.components.Evaluator, both in its executor so they hold under every
orchestrator:
* An empty baseline (ServedModelBaseline found nothing served) is dropped before TFMA
  runs; the Evaluator then treats the run as having no baseline and applies only the
  absolute thresholds (change thresholds are rubber-stamped, see the TFX executor).
* After TFMA, `evaluation_report.md` in the ModelEvaluation artifact states the decision
  and each metric against its threshold and the served model (evaluation_report.py).
"""
import os
from typing import Any, Dict, List

import tensorflow_model_analysis as tfma
from tfx import types
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from components import evaluation_report
from components import served_baseline

_BASELINE_KEY = standard_component_specs.BASELINE_MODEL_KEY


def _served_words(baseline: types.Artifact) -> str:
  version = baseline.get_int_custom_property(served_baseline.SERVED_VERSION_PROPERTY)
  path = baseline.get_string_custom_property(served_baseline.SERVED_PATH_PROPERTY)
  return f'the served model, version {version} ({path})'


class Executor(evaluator_executor.Executor):
  """TFX's Evaluator executor, minus an empty baseline, plus the report."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    input_dict = dict(input_dict)
    baselines = [m for m in input_dict.get(_BASELINE_KEY, []) if served_baseline.has_model(m)]
    input_dict[_BASELINE_KEY] = baselines
    super().Do(input_dict, output_dict, exec_properties)

    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY],
                              eval_config)
    # The config TFMA actually ran with: model names, and no change thresholds without a
    # baseline.
    eval_config = tfma.utils.update_eval_config_with_defaults(
        eval_config, has_baseline=bool(baselines), rubber_stamp=True)
    evaluation_uri = artifact_utils.get_single_uri(
        output_dict[standard_component_specs.EVALUATION_KEY])
    report = evaluation_report.render(
        evaluation_uri, eval_config, _served_words(baselines[0]) if baselines else None)
    io_utils.write_string_file(
        os.path.join(evaluation_uri, evaluation_report.REPORT_FILE), report)


class Evaluator(tfx.components.Evaluator):
  """tfx.components.Evaluator with the executor above (same inputs, outputs, id)."""

  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
