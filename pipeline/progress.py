"""A line on the console when each component starts and ends, with its key figure.

LocalDagRunner runs the components one after the other in this process and logs
`Component <id> is running.` and `Component <id> is finished.` around each
(tfx/orchestration/local/local_dag_runner.py); `Progress` is a logging handler that turns
those two records into lines. When a component ends, its execution and output artifacts are
read back from MLMD: whether it ran or was reused from the cache, and its key figure (rows
read, anomalies, epochs, AUC and decision, pushed version).
"""
import contextlib
import datetime
import logging
import os
import resource
import time
import traceback
from typing import Callable, Dict, IO, Iterator, List, Optional

from absl import logging as absl_logging
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.example_validator import executor as example_validator_executor
from tfx.dsl.compiler import compiler_utils
from tfx.dsl.compiler import constants as compiler_constants
from tfx.types import artifact_utils

from components import data_gate
from components import served_baseline
from components.evaluation_results import AUC, OVERALL, Results
from components.image_csv_example_gen import executor as example_gen_executor
from components.image_csv_example_gen import splits
from models import trainer
from pipeline.config import REPO_ROOT

# LocalDagRunner's log messages around each component (TFX 1.16).
STARTED = 'Component %s is running.'
FINISHED = 'Component %s is finished.'
STATES = {metadata_store_pb2.Execution.COMPLETE: 'done',
          metadata_store_pb2.Execution.CACHED: 'cached',
          metadata_store_pb2.Execution.FAILED: 'FAILED'}
MAX_ERROR_LINES = 25  # of an exception's message on the console; the log has all of it
_NAME_WIDTH = 20


def _examples(artifact: types.Artifact) -> str:
  accepted = artifact.get_custom_property(example_gen_executor.ROWS_ACCEPTED_PROPERTY) or 0
  rejected = artifact.get_custom_property(example_gen_executor.ROWS_REJECTED_PROPERTY) or 0
  spans = artifact.get_custom_property(example_gen_executor.SPANS_PROPERTY)
  which = f"span{'s' if ',' in (spans or '') else ''} {spans}: " if spans else ''
  line = f'{which}{accepted + rejected} rows read, {accepted} accepted, {rejected} rejected'
  if artifact.has_custom_property(example_gen_executor.split_size_property(splits.EVAL, 1)):
    line += f'; {example_gen_executor.split_sizes_text(artifact)}'
  return line


def _anomalies(artifact: types.Artifact) -> str:
  """ExampleValidator's per-split verdict, or the DataGate's report in a sentence."""
  blessed = artifact.get_custom_property(example_validator_executor.ARTIFACT_PROPERTY_BLESSED_KEY)
  if blessed is not None:
    failed = sorted(split for split, value in dict(blessed).items() if not value)
    return f"anomalies in split {', '.join(failed)}" if failed else 'no anomalies'
  report = os.path.join(artifact.uri, data_gate.REPORT_FILE)
  if not os.path.exists(report):
    return ''
  with open(report) as f:
    lines = [line.strip('_ ') for line in f.read().splitlines()[1:] if line.strip()]
  return ' '.join(lines)


def _model(artifact: types.Artifact) -> str:
  """The Trainer's epochs, or which served version the baseline copied."""
  used = trainer.read_used_hparams(artifact.uri)
  if used:
    epochs = used['epochs_trained']
    return f"{epochs} epoch{'s' if epochs != 1 else ''} trained"
  version = artifact.get_custom_property(served_baseline.SERVED_VERSION_PROPERTY)
  return f'served version {version}' if version is not None else 'no model is served yet'


def _evaluation(artifact: types.Artifact) -> str:
  results = Results(artifact.uri)
  new, served = results.new(OVERALL, AUC), results.served(OVERALL, AUC)
  if new is None:
    return ''
  return f'AUC {new.value:.4f}' + (
      f' (served model {served.value:.4f})' if served is not None else '')


def _blessing(artifact: types.Artifact) -> str:
  blessed = artifact.get_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY)
  return 'BLESSED' if blessed == evaluator_constants.BLESSED_VALUE else 'NOT blessed'


def _pushed(artifact: types.Artifact) -> str:
  if artifact.get_custom_property('pushed'):
    return f"pushed version {artifact.get_custom_property('pushed_version')}"
  return 'nothing pushed'


# Output type -> its figure, in the order they are printed.
FIGURES: Dict[str, Callable[[types.Artifact], str]] = {
    'Examples': _examples, 'ExampleAnomalies': _anomalies, 'Model': _model,
    'ModelEvaluation': _evaluation, 'ModelBlessing': _blessing, 'PushedModel': _pushed}


def key_figure(artifacts: List[types.Artifact]) -> str:
  order = list(FIGURES)
  known = sorted((a for a in artifacts if a.type_name in FIGURES),
                 key=lambda a: order.index(a.type_name))
  return ', '.join(text for text in (FIGURES[a.type_name](a) for a in known) if text)


def where_raised(error: BaseException) -> str:
  """'file:line in function' of the innermost frame in this repository's code (else the
  innermost frame), so that an exception without a message still says something."""
  frames = traceback.extract_tb(error.__traceback__)
  if not frames:
    return ''
  ours = [f for f in frames if f.filename.startswith(REPO_ROOT + os.sep) and
          '.venv' not in f.filename]
  frame = (ours or frames)[-1]
  name = os.path.relpath(frame.filename, REPO_ROOT) if ours else frame.filename
  return f'{name}:{frame.lineno} in {frame.name}'


def error_paragraph(error: BaseException) -> List[str]:
  """The exception's type and message (capped at MAX_ERROR_LINES) and where it was raised."""
  lines = [line.rstrip() for line in str(error).strip().splitlines() if line.strip()]
  first = f'{type(error).__name__}: {lines[0]}' if lines else (
      f'{type(error).__name__} (the exception has no message)')
  rest = lines[1:MAX_ERROR_LINES]
  if len(lines) > MAX_ERROR_LINES:
    rest.append(f'... {len(lines) - MAX_ERROR_LINES} more lines in the log')
  where = where_raised(error)
  return [first] + rest + ([f'(raised at {where})'] if where else [])


class Progress(logging.Handler):
  """Prints a line when each component starts and ends; `failed` reports a stopped run."""

  def __init__(self, console: IO[str], connection_config, pipeline_name: str,
               clock: Callable[[], float] = time.time):
    super().__init__(level=logging.INFO)
    self.console = console
    self.connection_config = connection_config
    self.pipeline_name = pipeline_name
    self.clock = clock
    self.running: Optional[str] = None  # the component that started and has not ended
    self.started = 0.0

  def line(self, text: str) -> None:
    self.console.write(text + '\n')
    self.console.flush()

  def _component_line(self, node_id: str, what: str, detail: str = '') -> None:
    stamp = datetime.datetime.fromtimestamp(self.clock()).strftime('%H:%M:%S')
    self.line(f'{stamp}  {node_id:<{_NAME_WIDTH}} {what}' + (f'  {detail}' if detail else ''))

  def emit(self, record: logging.LogRecord) -> None:
    if record.msg not in (STARTED, FINISHED) or not record.args:
      return
    node_id = record.args[0]
    if record.msg == STARTED:
      self.running, self.started = node_id, self.clock()
      self._component_line(node_id, 'started')
      return
    seconds = self.clock() - self.started
    self.running = None
    try:
      state, figure = self.outcome(node_id)
    except Exception as e:  # pylint: disable=broad-except
      # A figure is no reason to stop a run: say why it is missing; the log has the rest.
      traceback.print_exc()  # to the log
      state, figure = 'done', f'(no figure: {type(e).__name__}: {e})'
    self._component_line(node_id, f'{state:<7}{seconds:6.1f} s', figure)
    # The run's components share this process: its peak after each says which raised it.
    absl_logging.info('%s %s; peak memory of the run so far: %.2f GiB', node_id, state,
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)

  def outcome(self, node_id: str):
    """(state word, key figure) of the latest execution of node_id, from MLMD."""
    store = metadata_store.MetadataStore(self.connection_config)
    context = store.get_context_by_type_and_name(
        compiler_constants.NODE_CONTEXT_TYPE_NAME,
        compiler_utils.node_context_name(self.pipeline_name, node_id))
    if context is None:
      return 'done', ''
    execution = max(store.get_executions_by_context(context.id), key=lambda e: e.id)
    state = STATES.get(execution.last_known_state, 'done')
    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
           if e.type == metadata_store_pb2.Event.OUTPUT]
    artifacts = store.get_artifacts_by_id(ids)
    kinds = {t.id: t for t in store.get_artifact_types_by_id({a.type_id for a in artifacts})}
    return state, key_figure([artifact_utils.deserialize_artifact(kinds[a.type_id], a)
                              for a in artifacts])

  def failed(self, error: BaseException, log: Optional[str]) -> None:
    """The failing component, its error in one paragraph, and where the full log is."""
    if self.running:
      self._component_line(self.running, f"{'FAILED':<7}{self.clock() - self.started:6.1f} s")
      head = f'The run stopped: {self.running} failed.'
    else:
      head = 'The run stopped outside a component.'
    self.line('')
    self.line(head)
    for text in error_paragraph(error):
      self.line(f'  {text}')
    if log:
      self.line(f'  Full log: {log}')


@contextlib.contextmanager
def watching(progress: Progress) -> Iterator[Progress]:
  """Feeds TFX's (absl's) log records to `progress` while the block runs, at INFO level, which
  is also what the log gets."""
  logger = absl_logging.get_absl_logger()
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  logger.addHandler(progress)
  try:
    yield progress
  finally:
    logger.removeHandler(progress)
    absl_logging.set_verbosity(verbosity)
