"""local_runner.py: one screen per run (log file, a line per component, a summary within its
budget, failures), TFX caching, and the lineage command on the run it recorded."""
import os
import re
import shutil
import subprocess
import sys

import pytest

import local_runner
from pipeline import cache_keys
from pipeline import config as config_lib
from pipeline import console
from pipeline import progress
from pipeline import run_result
from pipeline import summary
from pipeline.pipeline import create_pipeline
from tests import conftest

BEFORE_MODEL = ['ImageCsvExampleGen', 'StatisticsGen', 'ImportSchemaGen', 'ExampleValidator',
                'DataGate', 'Transform', 'Trainer']
EVERY_RUN = ['ServedModelBaseline', 'Evaluator', 'SafePusher', 'EdgeExport']
NOISE = re.compile(r'INFO|WARNING|Warning:|absl|tensorflow/|Epoch 1/')


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)


def test_data_fingerprint_follows_the_span_files(tmp_path):
  data, schema = str(tmp_path / 'data'), str(tmp_path / 'schema.pbtxt')
  _write(os.path.join(data, 'span-1', 'ads.csv'), 'a,b\n1,2\n')
  _write(schema, 'feature {}\n')
  first = cache_keys.compute(data, schema, None)
  assert cache_keys.compute(data, schema, None).data == first.data

  _write(os.path.join(data, 'span-1', 'images', 'ad_1.png'), 'png')  # an image added
  with_image = cache_keys.compute(data, schema, None)
  _write(os.path.join(data, 'span-1', 'ads.csv'), 'a,b\n1,2\n3,4\n')  # rows added
  with_rows = cache_keys.compute(data, schema, None)
  _write(os.path.join(data, 'span-2', 'ads.csv'), 'a,b\n')  # a new month
  with_span = cache_keys.compute(data, schema, None)
  assert len({first.data, with_image.data, with_rows.data, with_span.data}) == 4
  assert with_span.schema == first.schema
  _write(schema, 'feature {}\nfeature {}\n')
  assert cache_keys.compute(data, schema, None).schema != first.schema

  tuned = str(tmp_path / 'tuned.json')
  assert first.tuned_hparams == cache_keys.compute(data, schema, tuned).tuned_hparams == ''
  _write(tuned, '{}')
  assert cache_keys.compute(data, schema, tuned).tuned_hparams != ''


def test_code_revision_names_the_commit_and_uncommitted_changes(tmp_path):
  def git(*args):
    subprocess.run(['git', '-C', str(tmp_path), *args], check=True, capture_output=True)
  assert cache_keys.code_revision(str(tmp_path)) == ''  # not a checkout
  git('init', '-q')
  (tmp_path / 'a.py').write_text('x = 1\n')
  git('add', 'a.py')
  git('-c', 'user.email=t@t', '-c', 'user.name=t', 'commit', '-qm', 'one')
  head = subprocess.run(['git', '-C', str(tmp_path), 'rev-parse', '--short', 'HEAD'],
                        capture_output=True, text=True, check=True).stdout.strip()
  assert cache_keys.code_revision(str(tmp_path)) == head
  (tmp_path / 'a.py').write_text('x = 2\n')
  assert cache_keys.code_revision(str(tmp_path)) == head + '-dirty'


def test_caching_only_with_fingerprints(tmp_path):
  data, schema = str(tmp_path), config_lib.SCHEMA_FILE
  roots = ('/tmp/root', data, '/tmp/serving')
  assert not create_pipeline(*roots).enable_cache  # Kubeflow: no fingerprints, no cache
  fingerprints = cache_keys.compute(data, schema, None)
  local = create_pipeline(*roots, fingerprints=fingerprints)
  assert local.enable_cache
  examples = next(c for c in local.components if c.id == 'ImageCsvExampleGen').outputs['examples']
  assert examples.additional_custom_properties[cache_keys.DATA_PROPERTY] == fingerprints.data


def _raise_bare():
  raise StopIteration


def test_error_paragraph_names_type_message_and_place():
  with pytest.raises(StopIteration) as bare:
    _raise_bare()
  text = progress.error_paragraph(bare.value)
  assert text[0] == 'StopIteration (the exception has no message)'
  assert re.fullmatch(r'\(raised at tests/test_local_runner\.py:\d+ in _raise_bare\)', text[-1])

  long = ValueError('first line\n\n' + '\n'.join(f'line {i}' for i in range(40)))
  text = progress.error_paragraph(long)
  assert text[0] == 'ValueError: first line' and text[1] == 'line 0'
  assert len(text) == progress.MAX_ERROR_LINES + 1 and '16 more lines' in text[-1]


def test_to_log_sends_file_descriptors_to_the_log(tmp_path, capfd):
  log = str(tmp_path / 'logs' / 'run.log')
  with console.to_log(log, b'loading\n') as screen:
    os.write(1, b'C++ to stdout\n')
    os.write(2, b'C++ to stderr\n')
    screen.write('for a person\n')
  out, err = capfd.readouterr()
  assert 'for a person' in out and 'C++' not in out + err
  with open(log) as f:
    assert f.read() == 'loading\nC++ to stdout\nC++ to stderr\n'


def _states_of_latest_run(out):
  """{node id: state} of the latest pipeline run, from its run result."""
  return {c.name: c.state for c in run_result.read(local_runner.metadata_config(out)).components}


def _component_lines(text, node, word):
  return [line for line in text.splitlines() if re.match(rf'\d\d:\d\d:\d\d  {node} +{word}',
                                                           line)]


def _summary_lines(text):
  """The summary's lines on the console: from its title to the log's line."""
  lines = text.rstrip().splitlines()
  start = next(i for i, line in enumerate(lines) if ' Run summary ' in line)
  return lines[start:-2]  # a blank line and the log's path end the screen


def _log_path(text):
  """The run's log, named on the first line and on the last one."""
  lines = text.rstrip().splitlines()
  paths = [re.search(r'(/\S+/logs/run-\d{8}-\d{6}\.log)$', lines[i]) for i in (0, -1)]
  assert paths[0] and paths[1] and paths[0][1] == paths[1][1], text
  return paths[0][1]


@pytest.mark.slow
@pytest.mark.xdist_group(conftest.LOCAL_RUN_GROUP)
def test_one_screen_per_run_and_caching(local_run, tmp_path):
  data, first = local_run.data, local_run.process
  assert first.returncode == 0, first.stdout + first.stderr
  # The runs after the shared one go to a copy of its output root (its metadata store names
  # the shared run's artifacts, which stay where they are), so other files still read it. The
  # tuned values' path is a Trainer parameter, part of its cache key: the shared run's.
  out = str(tmp_path / 'out')
  same_trainer = ['--set', f'tuned_hparams_uri={local_runner.tuned_hparams_uri(local_run.out)}']
  rows_read = sum(span.rows_read for span in local_run.spans.values())
  screen = first.stdout
  for node in BEFORE_MODEL + EVERY_RUN:  # one line per component, when it ends
    assert len(_component_lines(screen, node, '')) == 1, (node, screen)
    assert len(_component_lines(screen, node, r'done +\d+\.\d s')) == 1, (node, screen)
  assert len(_summary_lines(screen)) <= summary.MAX_LINES, screen
  assert not NOISE.search(screen + first.stderr), screen + first.stderr
  with open(_log_path(screen)) as f:
    log = f.read()
  assert 'Component Trainer is running.' in log and 'FutureWarning' in log
  result = run_result.read(local_runner.metadata_config(local_run.out))
  assert _states_of_latest_run(local_run.out) == {n: 'done' for n in BEFORE_MODEL + EVERY_RUN}
  assert all(c.peak_memory_gib > 0.1 for c in result.components)
  assert result.data.spans == [1, 2] and result.data.rows_read == rows_read
  assert sum(size.rows for size in result.data.splits.values()) == result.data.rows_accepted
  assert result.anomalous_splits == [] and result.data_validation_passed
  assert result.training.epochs == 1 and result.served.version is None
  assert result.evaluation.blessed and result.push.pushed
  pushed = result.push.version
  # What trained the served model, from MLMD, by one command.
  lineage = subprocess.run([sys.executable, '-m', 'monitoring.lineage',
                            '--output-root', local_run.out],
                           capture_output=True, text=True, cwd=config_lib.REPO_ROOT,
                           env=dict(os.environ, PYTHONPATH=config_lib.REPO_ROOT), check=False)
  assert lineage.returncode == 0, lineage.stdout + lineage.stderr
  assert lineage.stdout.startswith(f'Served version {pushed}: pushed by pipeline run '
                                   f'{result.run_id} '), lineage.stdout
  assert f'{rows_read:,} rows read' in lineage.stdout and 'max_epochs=1' in lineage.stdout
  revision = local_run.code_revision
  assert result.code_revision == revision
  assert f'Code revision: {revision or "not recorded by this run"}' in lineage.stdout

  shutil.copytree(local_run.out, out)
  second = conftest.run_local_runner(data, out, *same_trainer)
  assert second.returncode == 0, second.stdout + second.stderr
  states = _states_of_latest_run(out)
  assert states == {**{n: 'cached' for n in BEFORE_MODEL},
                    **{n: 'done' for n in EVERY_RUN}}, states
  for node in BEFORE_MODEL:
    assert len(_component_lines(second.stdout, node, 'cached')) == 1, second.stdout
  assert os.path.basename(_log_path(second.stdout)) != os.path.basename(_log_path(screen))
  # The baseline was read again: it is now the model the first run pushed.
  assert run_result.read(local_runner.metadata_config(out)).served.version == int(pushed)

  # Changed data under the same root: ExampleGen must read it again, not reuse the cache.
  csv_path = local_run.spans[2].csv_path
  with open(csv_path, 'rb') as f:
    shared = f.read()
  lines = shared.decode('utf-8', 'replace').splitlines()
  try:
    _write(csv_path, '\n'.join(lines[:1] + ['broken,row' if i % 5 == 0 else line
                                            for i, line in enumerate(lines[1:])]) + '\n')
    third = conftest.run_local_runner(data, out, *same_trainer)
  finally:
    with open(csv_path, 'wb') as f:  # the shared run's data as it was
      f.write(shared)
  assert third.returncode == 1
  assert _states_of_latest_run(out) == {'ImageCsvExampleGen': 'FAILED'}
  screen = third.stdout
  assert len(_component_lines(screen, 'ImageCsvExampleGen', r'FAILED +\d+\.\d s')) == 1, screen
  assert 'The run stopped: ImageCsvExampleGen failed.' in screen
  assert '  ValueError: ImageCsvExampleGen rejected' in screen
  assert f'  Full log: {_log_path(screen)}' in screen
  assert 'The run STOPPED: ValueError: ImageCsvExampleGen rejected' in screen
  assert len(_summary_lines(screen)) <= summary.MAX_LINES, screen
  assert not NOISE.search(screen + third.stderr), screen + third.stderr
