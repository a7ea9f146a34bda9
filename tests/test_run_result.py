"""The run result (pipeline/run_result.py) and what is rendered from it: the summary's line
budget, the split's words, the console's figures, the peak memory recorded on executions."""
import dataclasses
import io
import json
import logging
import os

from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from components import evaluation_results
from components import gate_rule
from components import gated_evaluator
from components.evaluation_results import AUC, CALIBRATION, EXAMPLE_COUNT, LOGLOSS, Estimate
from components.image_csv_example_gen import executor
from models import features
from pipeline import cache_keys
from pipeline import progress
from pipeline import run_result
from pipeline import summary
from tests import monitoring_fakes
from tests.test_evaluation_results import _model_rows
from tests.test_evaluation_results import _write as write_metrics

FIGURES = {AUC: 0.72, LOGLOSS: 0.16, CALIBRATION: 0.98, EXAMPLE_COUNT: 4000}
# The new model against a challenger that beats it by more than 0.01 AUC, surely.
CHALLENGER = evaluation_results.ChallengerComparison(
    name='logistic regression', model=FIGURES, challenger=dict(FIGURES, **{AUC: 0.75}),
    change={AUC: Estimate(-0.03, -0.046, -0.014), LOGLOSS: Estimate(0.002, 0.0, 0.004)},
    resampled='ads (ad_id)', seconds=0.8)


def _examples(uri: str, accepted: int = 8, rejected: int = 2) -> standard_artifacts.Examples:
  examples = standard_artifacts.Examples()
  examples.uri = uri
  examples.set_int_custom_property('span', 2)
  examples.set_string_custom_property(executor.SPANS_PROPERTY, '1,2')
  examples.set_int_custom_property(executor.ROWS_ACCEPTED_PROPERTY, accepted)
  examples.set_int_custom_property(executor.ROWS_REJECTED_PROPERTY, rejected)
  for split, rows, clicks in (('train', 6, 2), ('validation', 1, 0), ('eval', 1, 1)):
    examples.set_int_custom_property(executor.split_size_property(split, 0), rows - clicks)
    examples.set_int_custom_property(executor.split_size_property(split, 1), clicks)
  return examples


def _component(name, outputs=(), inputs=(), state='done') -> run_result.Component:
  return run_result.Component(name, state, 1.5, None, metadata_store_pb2.Execution(),
                              list(inputs), list(outputs))


def _write_rejected(examples_uri: str, count: int) -> None:
  folder = executor.rejected_rows_dir(examples_uri)
  os.makedirs(folder)
  with open(os.path.join(folder, 'rejected-00000.csv'), 'w') as f:
    f.write(','.join(executor.REJECTED_COLUMNS) + '\n')
    for line in range(count):
      f.write(f'ads.csv,{line + 2},imp-{line},too few columns,"a,b"\n')


def _longest(tmp_path) -> run_result.RunResult:
  """A run with every optional line: rejected rows, a rollback, a served model beaten by
  the new one on every reason, an oracle with cohorts."""
  examples_uri = str(tmp_path / 'examples')
  _write_rejected(examples_uri, 40)
  result = run_result.RunResult(1, 0.0, [
      _component(name) for name in ('ImageCsvExampleGen', 'StatisticsGen', 'ImportSchemaGen',
                                    'ExampleValidator', 'DataGate', 'Transform', 'Trainer',
                                    'ServedModelBaseline', 'Evaluator', 'SafePusher',
                                    'EdgeExport')])
  result.components[6].peak_memory_gib = 3.2
  result.data = run_result.data_of(_examples(examples_uri, accepted=4000, rejected=40))
  result.data_validation_passed = True
  result.training = run_result.Training('model', {f'h{i}': i for i in range(14)}, 'config',
                                        7, {'scale': 0.8, 'bias': -0.6},
                                        {'epochs_trained': 4, 'seconds': 12.3})
  result.served = run_result.Served(5, {'to': 5, 'from': 6, 'who': 'alice', 'when': 'noon',
                                        'reason': 'log-loss up', 'moved_to': 'aside'})
  result.evaluation = run_result.Evaluation(
      'eval', 'eval/evaluation_report.md', 'eval/evaluation_report.html', 4000, FIGURES, FIGURES,
      {AUC: Estimate(-0.02, -0.03, -0.01), LOGLOSS: Estimate(0.02, 0.01, 0.03)},
      {'cohort=new': FIGURES, 'cohort=established': FIGURES}, False,
      ['AUC change lower bound -0.030 < -0.010.', 'log-loss change upper bound +0.030.',
       'AUC 0.55 below the floor 0.65.'], CHALLENGER)
  result.push = run_result.Push(False, None, None)
  return result


def test_the_summary_keeps_to_its_line_budget_at_its_longest(tmp_path):
  result = _longest(tmp_path)
  oracle = {'': FIGURES, 'new': FIGURES, 'established': FIGURES}
  text = summary.render(result, oracle, 'Served model (version 5) on the new month: no decay.')
  lines = text.splitlines()
  assert len(lines) <= summary.MAX_LINES, text
  assert 'Data: spans 1,2 (window ending at span 2), 4040 rows read, 4000 accepted, 40 ' in text
  assert sum(line.startswith('  rejected: ads.csv line ') for line in lines) == 2
  assert '  ... 38 more in ' in text
  assert 'peak memory 3.2 GiB (by the end of Trainer)' in text
  assert any(line.startswith('Rollback: the served model is version 5') for line in lines)
  assert 'Decision: NOT blessed: AUC change lower bound' in text
  assert ('  model vs challenger (LR): -0.0300 [-0.0460, -0.0140] AUC, +0.0020 [+0.0000, '
          '+0.0040] log-loss (model minus LR, paired, 95 % over ads (ad_id); the LR alone: '
          'AUC 0.7500, log-loss 0.1600, calibration 0.980)') in lines
  assert 'bias -0.600; challenger (LR) 4 epochs in 12 s.' in text
  assert ('Report (cohorts, slices, charts): eval/evaluation_report.html; as text: '
          'eval/evaluation_report.md') in text
  assert lines[-1] == 'Pushed: nothing (the model was not blessed).'


def test_the_challenger_margin_and_its_gate_reason_are_read_from_the_evaluation(tmp_path):
  """From the Evaluator's artifacts and its recorded gate, as a finished run left them."""
  uri = str(tmp_path / 'evaluation')
  write_metrics(uri, _model_rows(None, None, '', 0.72, 0.05))
  evaluation_results.write_challenger(uri, CHALLENGER)
  evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
  evaluation.uri = uri
  blessing.set_int_custom_property('blessed', 0)
  evaluator = _component('Evaluator', [evaluation, blessing])
  gate = dataclasses.asdict(gate_rule.GateConfig())
  evaluator.execution.custom_properties[gated_evaluator.GATE_KEY].string_value = json.dumps(gate)
  read = run_result.from_components(1, 0.0, [evaluator]).evaluation
  assert read.challenger == CHALLENGER and read.blessed is False
  assert len(read.reasons) == 1 and 'challenger' in read.reasons[0]
  # With the option off, the same evaluation has nothing against it.
  gate['challenger_check'] = False
  evaluator.execution.custom_properties[gated_evaluator.GATE_KEY].string_value = json.dumps(gate)
  assert run_result.from_components(1, 0.0, [evaluator]).evaluation.reasons == []
  # A run without a challenger says so.
  os.remove(os.path.join(uri, evaluation_results.CHALLENGER_FILE))
  result = _longest(tmp_path / 'longest')
  result.evaluation = run_result.from_components(1, 0.0, [evaluator]).evaluation
  assert result.evaluation.challenger is None
  assert '  model vs challenger (LR): n/a (the Model artifact has no challenger)' in (
      summary.render(result).splitlines())


def test_a_stopped_run_says_where_in_one_line(tmp_path):
  result = _longest(tmp_path)
  text = summary.render(result, error=ValueError('Span 2 failed\n' + 'detail\n' * 50))
  assert text.splitlines()[-1].startswith('The run STOPPED: ValueError: Span 2 failed (')
  assert len(text.splitlines()) <= summary.MAX_LINES


def test_the_eval_split_is_random_without_a_time_field(tmp_path, monkeypatch):
  # With a TIME field (the sample log's impression_time, or one declared here), out of time.
  monkeypatch.setattr(features, 'time_feature', lambda: features.Feature(
      'impression_time', features.TIME, 'int', 'When the ad was shown.'))
  result = _longest(tmp_path)
  assert result.data.split_kind == run_result.OUT_OF_TIME
  assert 'Eval split: 4000 rows, out of time' in summary.render(result)
  monkeypatch.setattr(features, 'time_feature', lambda: None)
  result.data = run_result.data_of(_examples(result.data.examples_uri))
  assert result.data.split_kind == run_result.RANDOM
  text = summary.render(result)
  assert 'Eval split: 4000 rows, random split (features.py has no TIME field' in text
  assert 'out of time' not in text


def test_each_component_line_figure_comes_from_its_run_result(tmp_path):
  examples = _examples(str(tmp_path / 'examples'))
  assert progress.key_figure(_component('ImageCsvExampleGen', [examples])) == (
      'spans 1,2: 10 rows read, 8 accepted, 2 rejected; train 6 rows (2 with label 1), '
      'validation 1 (0), eval 1 (1)')
  transformed = standard_artifacts.Examples()  # Transform's output: no rows of ExampleGen's
  assert progress.key_figure(_component('Transform', [transformed], [examples])) == ''
  assert progress.key_figure(_component('DataGate', [standard_artifacts.ExampleAnomalies()],
                                        [examples])) == 'passed'
  anomalies = standard_artifacts.ExampleAnomalies()
  anomalies.set_json_value_custom_property('blessed', {'train': 1, 'eval': 0})
  assert progress.key_figure(_component('ExampleValidator', [anomalies])) == (
      'anomalies in split eval')
  baseline = standard_artifacts.Model()
  assert progress.key_figure(_component('ServedModelBaseline', [baseline])) == (
      'no model is served yet')
  pushed = standard_artifacts.PushedModel()
  pushed.set_int_custom_property('pushed', 1)
  pushed.set_string_custom_property('pushed_version', '17')
  assert progress.key_figure(_component('SafePusher', [pushed])) == 'pushed version 17'


def test_the_peak_memory_progress_records_and_the_code_revision_are_read_back(tmp_path):
  fake = monitoring_fakes.FakeStore(str(tmp_path / 'metadata.db'))
  run = fake.new_run('run-1')
  examples = fake.artifact('Examples', str(tmp_path / 'examples'), span=1, rows_accepted=3,
                           rows_rejected=0, spans='1',
                           **{cache_keys.CODE_REVISION_PROPERTY: 'abc1234'})
  fake.execution('ImageCsvExampleGen', run, [], [examples])
  config = monitoring_fakes.writable_config(str(tmp_path / 'metadata.db'))
  [component] = run_result.read(config).components
  assert component.name == 'ImageCsvExampleGen' and component.peak_memory_gib is None
  assert component.state == 'done' and component.outputs[0].uri == examples.uri
  run_result.record_peak_memory(config, component.execution, 1.23456)
  result = run_result.read(config)
  assert result.components[0].peak_memory_gib == 1.235
  assert result.data.rows_read == 3 and result.data.spans == [1]
  assert result.code_revision == 'abc1234'
  assert result.evaluation is None and result.push is None


class _Terminal(io.StringIO):
  """A console that says it is a terminal of its own (not fds 1 and 2)."""

  def isatty(self):
    return True

  def fileno(self):
    return 99


def test_one_console_line_per_component(tmp_path):
  config = monitoring_fakes.writable_config(str(tmp_path / 'metadata.db'))
  for console, started in ((io.StringIO(), ''), (_Terminal(), 'running')):
    watcher = progress.Progress(console, config, 'adclick', clock=lambda: 0.0)
    for message in (progress.STARTED, progress.FINISHED):
      watcher.emit(logging.LogRecord('absl', logging.INFO, '', 0, message, ('Trainer',), None))
    lines = console.getvalue().rstrip('\n').split('\n')  # a terminal's \r stays in its line
    assert len(lines) == 1 and lines[0].endswith('Trainer              done      0.0 s'), lines
    assert started in lines[0].split(progress._CLEAR_LINE)[0]  # pylint: disable=protected-access
