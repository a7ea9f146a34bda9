"""One line on the console for each component when it ends, with its state, time and key
figure.

LocalDagRunner runs the components one after the other in this process and logs
`Component <id> is running.` and `Component <id> is finished.` around each
(tfx/orchestration/local/local_dag_runner.py); `Progress` is a logging handler that turns
those two records into the line (on a terminal the component's name shows while it runs, and
the line replaces it). When a component ends, its execution is read back from MLMD as a run
result (pipeline/run_result.py): whether it ran or was reused from the cache, and its key
figure (rows read and split sizes, anomalies, epochs, AUC and decision, pushed version). The
run's peak memory so far is recorded on the execution for the summary and the log.
"""
import contextlib
import datetime
import logging
import os
import time
import traceback
from typing import Callable, IO, Iterator, List, Optional

from absl import logging as absl_logging

from components.evaluation_results import AUC
from pipeline import memory
from pipeline import run_result
from pipeline.config import REPO_ROOT
from pipeline.run_result import RunResult

# LocalDagRunner's log messages around each component (TFX 1.16).
STARTED = 'Component %s is running.'
FINISHED = 'Component %s is finished.'
MAX_ERROR_LINES = 25  # of an exception's message on the console; the log has all of it
_NAME_WIDTH = 20
_CLEAR_LINE = '\r\x1b[K'  # back to the start of a terminal line and clear it


def _examples(result: RunResult) -> str:
  data = result.data
  which = (f"span{'s' if len(data.spans) > 1 else ''} {','.join(map(str, data.spans))}: "
           if data.spans else '')
  line = (f'{which}{data.rows_read} rows read, {data.rows_accepted} accepted, '
          f'{data.rows_rejected} rejected')
  return line + (f'; {data.splits_text()}' if data.splits else '')


def _anomalies(result: RunResult) -> str:
  failed = result.anomalous_splits
  return f"anomalies in split {', '.join(failed)}" if failed else 'no anomalies'


def _training(result: RunResult) -> str:
  epochs = result.training.epochs
  if epochs is None:
    return ''
  return f"{epochs} epoch{'s' if epochs != 1 else ''} trained"


def _served(result: RunResult) -> str:
  version = result.served.version
  return f'served version {version}' if version is not None else 'no model is served yet'


def _evaluation(result: RunResult) -> str:
  evaluation = result.evaluation
  parts = []
  if evaluation.new:
    parts.append(f'AUC {evaluation.new[AUC]:.4f}' + (
        f' (served model {evaluation.served[AUC]:.4f})' if evaluation.served else ''))
  if evaluation.blessed is not None:
    parts.append('BLESSED' if evaluation.blessed else 'NOT blessed')
  return ', '.join(parts)


def _pushed(result: RunResult) -> str:
  return f'pushed version {result.push.version}' if result.push.pushed else 'nothing pushed'


# A run result's field -> its figure, in the order they are printed.
FIGURES = (('data', _examples), ('anomalous_splits', _anomalies),
           ('training', _training), ('served', _served), ('evaluation', _evaluation),
           ('push', _pushed))


def key_figure(component: run_result.Component) -> str:
  """The component's figure, from the run result of that component alone."""
  result = run_result.from_components(0, 0.0, [component])
  if result.data_validation_passed:
    return 'passed'
  return ', '.join(text for text in (render(result) for field, render in FIGURES
                                     if getattr(result, field) is not None) if text)


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

  def _text(self, node_id: str, what: str, detail: str = '') -> str:
    stamp = datetime.datetime.fromtimestamp(self.clock()).strftime('%H:%M:%S')
    return f'{stamp}  {node_id:<{_NAME_WIDTH}} {what}' + (f'  {detail}' if detail else '')

  def _component_line(self, node_id: str, what: str, detail: str = '') -> None:
    """The component's one line; on a terminal it replaces the `running` it shows."""
    prefix = _CLEAR_LINE if self._terminal() else ''
    self.line(prefix + self._text(node_id, what, detail))

  def _terminal(self) -> bool:
    """Whether the console is a terminal that only these lines write to (with --verbose,
    TFX's log shares it, fds 1 and 2: a line left open would run into the log's)."""
    try:
      return self.console.isatty() and self.console.fileno() not in (1, 2)
    except (AttributeError, ValueError, OSError):
      return False

  def emit(self, record: logging.LogRecord) -> None:
    if record.msg not in (STARTED, FINISHED) or not record.args:
      return
    node_id = record.args[0]
    if record.msg == STARTED:
      self.running, self.started = node_id, self.clock()
      if self._terminal():
        self.console.write(self._text(node_id, 'running'))
        self.console.flush()
      return
    seconds = self.clock() - self.started
    self.running = None
    peak = memory.peak_rss_gib()
    try:
      component = run_result.component(self.connection_config, self.pipeline_name, node_id)
      state, figure = (component.state, key_figure(component)) if component else ('done', '')
      if component:
        run_result.record_peak_memory(self.connection_config, component.execution, peak)
    except Exception as e:  # pylint: disable=broad-except
      # A figure is no reason to stop a run: say why it is missing; the log has the rest.
      traceback.print_exc()  # to the log
      state, figure = 'done', f'(no figure: {type(e).__name__}: {e})'
    self._component_line(node_id, f'{state:<7}{seconds:6.1f} s', figure)
    absl_logging.info('%s %s; peak memory of the run so far: %.2f GiB', node_id, state, peak)

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
