"""One pipeline run as MLMD recorded it, read once into typed fields.

The console lines (pipeline/progress.py), the run summary (pipeline/summary.py), the lineage
of the served model (monitoring/lineage.py) and the benchmarks all read a run through `read`
(or `component` for one node while the run goes on) and render or measure these fields; none
of them walks MLMD or parses a component's Markdown. Tests assert these fields, not wording.

What comes from where: each component's state and seconds from its execution, the run's
peak memory when it ended from the property Progress records on it (PEAK_MEMORY_PROPERTY);
rows and split sizes from ExampleGen's Examples properties; the data verdict from DataGate's
execution (it raises on bad data, so a finished DataGate passed); hyperparameters from the
Trainer's Model (and how its challenger trained); the evaluation, the model against its
challenger included, through components/evaluation_results.py, and the gate's
reasons by gate_rule from the gate the Evaluator's execution recorded; the blessing, the
served baseline (and any rollback) and the pushed version from their artifacts' properties.
"""
import dataclasses
import json
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.example_validator import executor as example_validator_executor
from tfx.dsl.compiler import compiler_utils
from tfx.dsl.compiler import constants as compiler_constants
from tfx.types import artifact_utils

from components import evaluation_report
from components import evaluation_report_html
from components import evaluation_results
from components import gate_rule
from components import gated_evaluator
from components import served_baseline
from components.evaluation_results import OVERALL, Estimate
from components.image_csv_example_gen import executor as example_gen_executor
from components.image_csv_example_gen import splits as splits_lib
from models import features
from models import trainer
from pipeline import cache_keys

_INPUT, _OUTPUT = metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.OUTPUT
STATES = {metadata_store_pb2.Execution.COMPLETE: 'done',
          metadata_store_pb2.Execution.CACHED: 'cached',
          metadata_store_pb2.Execution.FAILED: 'FAILED',
          metadata_store_pb2.Execution.RUNNING: 'running'}
# On each execution, set by Progress when the component ends: the run process's peak RSS so
# far in GiB. The components share the process, so it only grows; where it jumps, that
# component raised it. Absent where nothing watched the run (Kubeflow).
PEAK_MEMORY_PROPERTY = 'peak_memory_gib'
OUT_OF_TIME, RANDOM = 'out of time', 'random'  # how the eval split was cut


@dataclasses.dataclass
class Component:
  """One node's execution in the run and the artifacts it was given and wrote."""
  name: str  # the node id, e.g. 'Trainer'
  state: str  # 'done', 'cached', 'FAILED' or 'running'
  seconds: float
  peak_memory_gib: Optional[float]
  execution: metadata_store_pb2.Execution
  inputs: List[types.Artifact]
  outputs: List[types.Artifact]

  def output(self, type_name: str) -> Optional[types.Artifact]:
    return next((a for a in self.outputs if a.type_name == type_name), None)


@dataclasses.dataclass(frozen=True)
class SplitSize:
  rows: int
  clicks: int  # rows with label 1


@dataclasses.dataclass
class Data:
  """What ExampleGen read."""
  span: Optional[int]  # the latest month
  spans: List[int]  # the window read
  rows_read: int
  rows_accepted: int
  rows_rejected: int
  splits: Dict[str, SplitSize]  # train, validation, eval (empty if not recorded)
  split_kind: str  # OUT_OF_TIME, or RANDOM when features.py has no TIME field
  examples_uri: str
  fingerprint: Optional[str]  # of the data and the code read (pipeline/cache_keys.py)

  def splits_text(self) -> str:
    """E.g. 'train 2,100 rows (95 with label 1), validation 300 (14), eval 600 (31)'."""
    parts = []
    for split, size in self.splits.items():
      parts.append(f'{split} {size.rows:,} rows ({size.clicks:,} with label 1)' if not parts
                   else f'{split} {size.rows:,} ({size.clicks:,})')
    return ', '.join(parts)


@dataclasses.dataclass
class Training:
  """The trained Model, and what it was trained with (None where the Trainer wrote no
  models/trainer.py HPARAMS_FILE)."""
  model_uri: str
  hparams: Optional[Dict[str, object]] = None
  source: Optional[str] = None  # where the hyperparameters came from, in words
  epochs: Optional[int] = None
  calibration: Optional[Dict[str, float]] = None  # the Platt scale and bias
  # How its challenger (models/challenger.py) was trained: epochs_trained, seconds, ...;
  # None where the Trainer fitted none.
  challenger: Optional[Dict[str, object]] = None


@dataclasses.dataclass
class Evaluation:
  uri: str
  report_path: str  # the Markdown report (cohorts and slices)
  html_path: str  # the same as a page with charts (reliability diagram, AUC per group)
  rows: int  # eval rows
  new: Optional[Dict[str, float]]  # evaluation_results.FIGURES of the new model
  served: Optional[Dict[str, float]]  # of the served model on the same rows; None if none
  change: Dict[str, Estimate]  # new minus served, paired (AUC, log-loss)
  cohorts: Dict[str, Optional[Dict[str, float]]]  # cohort slice -> the new model's figures
  blessed: Optional[bool]
  reasons: List[str]  # why it was not blessed (gate_rule, from the recorded gate)
  # The new model against its challenger on the same eval rows; None where there was none.
  challenger: Optional[evaluation_results.ChallengerComparison] = None


@dataclasses.dataclass
class Served:
  """The model served when the run started (ServedModelBaseline), the run's baseline."""
  version: Optional[int]  # None: nothing was served
  rollback: Optional[dict]  # the audit record, when a rollback made it the served one


@dataclasses.dataclass
class Push:
  pushed: bool
  version: Optional[str]
  destination: Optional[str]


@dataclasses.dataclass
class RunResult:
  run_id: int  # the pipeline_run context; 0 when the store has no run
  started: float  # unix seconds
  components: List[Component]  # in start order
  data: Optional[Data] = None
  anomalous_splits: Optional[List[str]] = None  # ExampleValidator's; None: it did not run
  data_validation_passed: Optional[bool] = None  # None: DataGate did not run
  training: Optional[Training] = None
  served: Optional[Served] = None
  evaluation: Optional[Evaluation] = None
  push: Optional[Push] = None
  # cache_keys.CODE_REVISION_PROPERTY; None (or '') where not recorded
  code_revision: Optional[str] = None

  def component(self, name: str) -> Optional[Component]:
    return next((c for c in self.components if c.name == name), None)

  @property
  def seconds(self) -> Dict[str, float]:
    return {c.name: c.seconds for c in self.components}

  @property
  def failed(self) -> List[str]:
    return [c.name for c in self.components if c.state == 'FAILED']


def _prop(artifact: Optional[types.Artifact], name: str, default=None):
  if artifact is None or not artifact.has_custom_property(name):
    return default
  return artifact.get_custom_property(name)


def _exec_prop(execution: metadata_store_pb2.Execution, name: str):
  if name not in execution.custom_properties:
    return None
  value = execution.custom_properties[name]
  return getattr(value, value.WhichOneof('value')) if value.WhichOneof('value') else None


class _Reader:
  """One MLMD store, the types and node names it knows read once."""

  def __init__(self, connection_config):
    self.store = metadata_store.MetadataStore(connection_config)
    self.artifact_types = {t.id: t for t in self.store.get_artifact_types()}
    self.nodes = {}  # execution id -> node id
    for context in self.store.get_contexts_by_type(compiler_constants.NODE_CONTEXT_TYPE_NAME):
      for execution in self.store.get_executions_by_context(context.id):
        self.nodes[execution.id] = context.name.split('.', 1)[-1]

  def name(self, execution: metadata_store_pb2.Execution) -> str:
    """The node id; without node contexts (a store written by hand), the type's last part."""
    return self.nodes.get(execution.id) or execution.type.rsplit('.', 1)[-1]

  def components(self, executions) -> List[Component]:
    executions = sorted(executions, key=lambda e: e.id)
    events = self.store.get_events_by_execution_ids([e.id for e in executions])
    ids = sorted({e.artifact_id for e in events})
    artifacts = {a.id: artifact_utils.deserialize_artifact(self.artifact_types[a.type_id], a)
                 for a in self.store.get_artifacts_by_id(ids)} if ids else {}
    result = []
    for execution in executions:
      mine = [e for e in events if e.execution_id == execution.id]
      peak = _exec_prop(execution, PEAK_MEMORY_PROPERTY)
      result.append(Component(
          self.name(execution), STATES.get(execution.last_known_state, 'unknown'),
          (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000,
          float(peak) if peak is not None else None, execution,
          [artifacts[e.artifact_id] for e in mine if e.type == _INPUT],
          [artifacts[e.artifact_id] for e in mine if e.type == _OUTPUT]))
    return result


def data_of(examples: types.Artifact) -> Data:
  """ExampleGen's figures, from its Examples' properties."""
  accepted = _prop(examples, example_gen_executor.ROWS_ACCEPTED_PROPERTY, 0)
  rejected = _prop(examples, example_gen_executor.ROWS_REJECTED_PROPERTY, 0)
  spans = _prop(examples, example_gen_executor.SPANS_PROPERTY, '')
  sizes = {}
  for split in splits_lib.NAMES:
    counts = [_prop(examples, example_gen_executor.split_size_property(split, label))
              for label in (0, 1)]
    if None not in counts:
      sizes[split] = SplitSize(rows=sum(counts), clicks=counts[1])
  return Data(span=_prop(examples, 'span'), spans=[int(s) for s in spans.split(',') if s],
              rows_read=accepted + rejected, rows_accepted=accepted, rows_rejected=rejected,
              splits=sizes, split_kind=OUT_OF_TIME if features.time_feature() else RANDOM,
              examples_uri=examples.uri,
              fingerprint=_prop(examples, cache_keys.DATA_PROPERTY))


def _training(model: types.Artifact) -> Training:
  used = trainer.read_used_hparams(model.uri)
  if not used:
    return Training(model.uri)
  return Training(model.uri, hparams=used['hparams'], source=used['source'],
                  epochs=used['epochs_trained'], calibration=used['calibration'],
                  challenger=trainer.read_challenger_info(model.uri))


def _served(model: types.Artifact) -> Served:
  version = _prop(model, served_baseline.SERVED_VERSION_PROPERTY)
  rollback = _prop(model, served_baseline.ROLLBACK_PROPERTY)
  return Served(version=version, rollback=json.loads(rollback) if rollback else None)


def _figures(results: evaluation_results.Results, slice_name: str) -> Optional[Dict[str, float]]:
  """The new model's figures on one slice (those TFMA wrote), None if it wrote none."""
  values = {m: results.new(slice_name, m) for m in evaluation_results.FIGURES}
  found = {m: e.value for m, e in values.items() if e is not None}
  return found or None


def _evaluation(evaluator: Component) -> Optional[Evaluation]:
  artifact = evaluator.output('ModelEvaluation')
  if artifact is None:
    return None
  results = evaluation_results.Results(artifact.uri)
  rows = results.new(OVERALL, evaluation_results.EXAMPLE_COUNT)
  blessing = evaluator.output('ModelBlessing')
  blessed = None if blessing is None else _prop(
      blessing, evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY) == (
          evaluator_constants.BLESSED_VALUE)
  gate = _exec_prop(evaluator.execution, gated_evaluator.GATE_KEY)
  reasons = (gate_rule.decide(*results.gate_inputs(),
                              gate_rule.GateConfig(**json.loads(gate)))[1]
             if gate and blessed is False else [])
  cohort = features.cohort_feature()
  cohorts = {name: _figures(results, name)
             for name in results.slices(f'{cohort.name}=')} if cohort else {}
  return Evaluation(
      uri=artifact.uri, report_path=f'{artifact.uri}/{evaluation_report.REPORT_FILE}',
      html_path=f'{artifact.uri}/{evaluation_report_html.HTML_FILE}',
      rows=int(rows.value) if rows else 0, new=results.overall(results.candidate),
      served=results.overall(results.baseline), change=results.gate_inputs()[1], cohorts=cohorts,
      blessed=blessed, reasons=reasons, challenger=results.challenger)


def _push(pushed: types.Artifact) -> Push:
  return Push(pushed=bool(_prop(pushed, 'pushed', 0)),
              version=_prop(pushed, 'pushed_version'),
              destination=_prop(pushed, 'pushed_destination'))


def _trainer_and_baseline(components: List[Component]):
  """(the component that trained a Model, the one that copied the served one): the trainer
  is given Examples, the baseline nothing."""
  with_model = [c for c in components if c.output('Model') is not None]
  trainer_c = next((c for c in with_model if any(a.type_name == 'Examples' for a in c.inputs)),
                   None)
  baseline = next((c for c in with_model if c is not trainer_c), None)
  return trainer_c, baseline


def from_components(run_id: int, started: float, components: List[Component]) -> RunResult:
  """The run's typed fields from its components' executions and artifacts."""
  result = RunResult(run_id, started, components)
  revision = cache_keys.CODE_REVISION_PROPERTY
  result.code_revision = next((_prop(a, revision) for c in components for a in c.outputs
                               if a.has_custom_property(revision)), None)
  for component in components:
    examples = component.output('Examples')  # ExampleGen's, not Transform's
    if examples is not None and examples.has_custom_property(
        example_gen_executor.ROWS_ACCEPTED_PROPERTY):
      result.data = data_of(examples)
    anomalies = component.output('ExampleAnomalies')
    blessed = anomalies and anomalies.get_json_value_custom_property(
        example_validator_executor.ARTIFACT_PROPERTY_BLESSED_KEY)
    if blessed:  # ExampleValidator's: {split: 1 when it has no anomalies}
      result.anomalous_splits = sorted(split for split, ok in dict(blessed).items() if not ok)
    if component.name == 'DataGate':
      result.data_validation_passed = component.state in ('done', 'cached')
    if component.output('ModelEvaluation') is not None:
      result.evaluation = _evaluation(component)
    if component.output('PushedModel') is not None:
      result.push = _push(component.output('PushedModel'))
  trained_by, baseline = _trainer_and_baseline(components)
  if trained_by is not None:
    result.training = _training(trained_by.output('Model'))
  if baseline is not None:
    result.served = _served(baseline.output('Model'))
  return result


def read(connection_config, run_id: Optional[int] = None) -> RunResult:
  """A pipeline run (by its pipeline_run context id; the latest when None) from MLMD."""
  reader = _Reader(connection_config)
  runs = reader.store.get_contexts_by_type(compiler_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME)
  if run_id is not None:
    runs = [r for r in runs if r.id == run_id]
  if not runs:
    return RunResult(0, 0.0, [])
  run = max(runs, key=lambda c: c.id)
  return from_components(run.id, run.create_time_since_epoch / 1000,
                         reader.components(reader.store.get_executions_by_context(run.id)))


def run_ids(connection_config) -> List[int]:
  """Every pipeline run in the store, oldest first."""
  store = metadata_store.MetadataStore(connection_config)
  return sorted(c.id for c in store.get_contexts_by_type(
      compiler_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME))


def run_that_pushed(connection_config, version) -> Optional[int]:
  """The pipeline_run context id of the run that pushed `version`, None if none did."""
  store = metadata_store.MetadataStore(connection_config)
  pushed = [a for a in store.get_artifacts_by_type('PushedModel')
            if 'pushed_version' in a.custom_properties and
            a.custom_properties['pushed_version'].string_value == str(version)]
  if not pushed:
    return None
  producers = [e.execution_id for e in store.get_events_by_artifact_ids([pushed[-1].id])
               if e.type == _OUTPUT]
  runs = [c.id for c in store.get_contexts_by_execution(producers[0])
          if c.type == compiler_constants.PIPELINE_RUN_CONTEXT_TYPE_NAME] if producers else []
  return max(runs, default=None)


def component(connection_config, pipeline_name: str, node_id: str) -> Optional[Component]:
  """The latest execution of one node (while its run goes on), or None if it has none."""
  reader = _Reader(connection_config)
  context = reader.store.get_context_by_type_and_name(
      compiler_constants.NODE_CONTEXT_TYPE_NAME,
      compiler_utils.node_context_name(pipeline_name, node_id))
  executions = reader.store.get_executions_by_context(context.id) if context else []
  if not executions:
    return None
  return reader.components([max(executions, key=lambda e: e.id)])[0]


def record_peak_memory(connection_config, execution: metadata_store_pb2.Execution,
                       gib: float) -> None:
  """Sets PEAK_MEMORY_PROPERTY on a finished execution."""
  store = metadata_store.MetadataStore(connection_config)
  execution.custom_properties[PEAK_MEMORY_PROPERTY].double_value = round(gib, 3)
  store.put_executions([execution])
