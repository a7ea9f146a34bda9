"""Bring your own data, end to end: a copy of the repository whose models/features.py describes
another log (tests/testdata/own_csv/features.py: no image, no ad id, integer-coded categoricals
declared strings), `make schema`, the CSV check, the tests that follow features.py, and a
pipeline run over two tiny generated spans, summary included. A second copy declares a log
as bare as real logs come (tests/testdata/own_csv/tsv_features.py: tab-separated, no header,
no key, no time) and runs it through the CSV check, a pipeline run and batch scoring.
"""
import csv
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from examples import swap
from tests import conftest

pytestmark = pytest.mark.slow
OWN_FIELDS = os.path.join(conftest.REPO, 'tests', 'testdata', 'own_csv', 'features.py')
TSV_FIELDS = os.path.join(conftest.REPO, 'tests', 'testdata', 'own_csv', 'tsv_features.py')
ROWS = 1000  # per span
# Columns as in the Avazu sample (site_id is not in the fixture's features.py: ignored).
COLUMNS = ('id', 'click', 'hour', 'C1', 'banner_pos', 'site_id', 'site_category',
           'device_type', 'C15', 'C16', 'C18')
# The click model: logit effects of each value (a learnable signal, AUC about 0.7).
_BASE = -1.6
_C1 = {'1005': (0.8, 0.0), '1002': (0.1, 0.9), '1010': (0.1, -1.2)}  # value: (share, effect)
_BANNER = {'0': (0.75, 0.0), '1': (0.25, 0.6)}
_SITE = {'28905ebd': (0.4, 0.5), '50e219e0': (0.25, -0.6), 'f028772b': (0.2, 0.0),
         '3e814130': (0.15, -1.2)}
_DEVICE = {'1': (0.85, 0.0), '0': (0.05, 0.5), '4': (0.07, -1.0), '5': (0.03, -0.8)}
_SIZE = {(320, 50): (0.8, 0.0), (300, 250): (0.15, 1.2), (216, 36): (0.05, 0.4)}
_C18 = {0: (0.5, 0.0), 1: (0.2, -0.6), 2: (0.2, 1.0), 3: (0.1, -0.4)}


def _draw(rng, table, n):
  values = list(table)
  index = rng.choice(len(values), size=n, p=[share for share, _ in table.values()])
  return [values[i] for i in index], np.array([table[values[i]][1] for i in index])


def _draw_rows(span: int, rows: int):
  """The fixture log's rows of a span, as one dict of column -> values."""
  rng = np.random.default_rng(span)
  drawn = [_draw(rng, table, rows) for table in (_C1, _BANNER, _SITE, _DEVICE, _SIZE, _C18)]
  (c1, banner, site, device, size, c18) = [values for values, _ in drawn]
  logit = _BASE + sum(effect for _, effect in drawn)
  return {'id': [10**19 + span * 10**6 + i for i in range(rows)],
          'click': (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
          'hour': 14102000 + 100 * (20 + span) + rng.integers(0, 24, size=rows),
          'C1': c1, 'banner_pos': banner,
          'site_id': [f'{n:08x}' for n in rng.integers(16**8, size=rows)],
          'site_category': site, 'device_type': device, 'C15': [w for w, _ in size],
          'C16': [h for _, h in size], 'C18': c18}


def write_span(root: str, span: int, rows: int = ROWS, columns=COLUMNS, delimiter=',',
               header=True) -> str:
  """span-N/ads.csv of the fixture log: day 20 + N of October 2014, hours as YYMMDDHH; the
  columns given (some or all of COLUMNS), with or without a header."""
  drawn = _draw_rows(span, rows)
  path = os.path.join(root, f'span-{span}', 'ads.csv')
  os.makedirs(os.path.dirname(path))
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f, delimiter=delimiter)
    if header:
      writer.writerow(columns)
    writer.writerows(zip(*(drawn[name] for name in columns)))
  return path


# The run as the copy's own code reads it from MLMD (pipeline/run_result.py), as JSON.
RUN_RESULT = """
import dataclasses, json, sys
import local_runner
from components import evaluation_results
from pipeline import run_result
result = run_result.read(local_runner.metadata_config(sys.argv[1]))
print(json.dumps({
    'spans': result.data.spans,
    'rows': [result.data.rows_read, result.data.rows_accepted, result.data.rows_rejected],
    'data_validation_passed': result.data_validation_passed,
    'anomalous_splits': result.anomalous_splits,
    'auc': result.evaluation.new[evaluation_results.AUC],
    'report': result.evaluation.report_path,
    'hparams': result.training.hparams,
    'push': dataclasses.asdict(result.push)}))
"""


def _run(repo: str, *argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL='1')
  return subprocess.run([sys.executable, *argv], cwd=repo, env=env, capture_output=True,
                        text=True, timeout=timeout)


@pytest.fixture(scope='module')
def own_repo(tmp_path_factory):
  """The copy with the fixture's features.py and its schema, and the two spans of data."""
  root = tmp_path_factory.mktemp('own_csv')
  repo, data = str(root / 'repo'), str(root / 'data')
  swap.copy_with_fields(repo, OWN_FIELDS)
  for span in (1, 2):
    write_span(data, span)
  made = _run(repo, '-m', 'schema.generate')
  assert made.returncode == 0, made.stderr
  return repo, data, str(root / 'out')


def test_features_py_is_the_fixtures(own_repo):
  repo, _, _ = own_repo
  listed = _run(repo, '-c', 'from models import features; '
                'print([f.name for f in features.FEATURES], features.image_feature(), '
                'features.cohort_feature(), features.slice_features())')
  assert listed.returncode == 0, listed.stderr
  assert listed.stdout.strip() == (
      "['id', 'click', 'hour', 'C1', 'banner_pos', 'site_category', 'device_type', 'C15', "
      "'C16', 'C18'] None None ['banner_pos', 'device_type']")


def test_csv_check_passes_and_names_the_ignored_column(own_repo):
  repo, data, _ = own_repo
  checked = _run(repo, '-m', 'pipeline.check_csv', os.path.join(data, 'span-2', 'ads.csv'))
  assert checked.returncode == 0, checked.stdout + checked.stderr
  assert 'ignored: site_id.' in checked.stdout and 'no problems found' in checked.stdout


def test_sample_data_generator_says_it_does_not_apply(own_repo, tmp_path):
  repo, _, _ = own_repo
  imported = _run(repo, '-c', 'import datagen.generate')
  assert imported.returncode == 0, imported.stderr
  generated = _run(repo, '-m', 'datagen.generate', '--root', str(tmp_path), '--spans', '1')
  assert generated.returncode == 1
  assert generated.stderr.strip().splitlines()[-1] == (
      'datagen generates the sample ad log only; models/features.py no longer has fields '
      'impression_id, ad_id, campaign_id, impression_time, advertiser, category, '
      'creative_format, placement, device, country, day_of_week, bid_price, headline_length, '
      'image, clicked.')


def test_tests_that_follow_features_py(own_repo):
  repo, _, _ = own_repo
  tested = _run(repo, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider',
                'tests/test_schema.py', 'tests/test_generate.py', 'tests/test_model.py',
                'tests/test_preprocessing.py', 'tests/test_data_gate.py', timeout=600)
  out = tested.stdout
  assert tested.returncode == 0, out + tested.stderr
  # The schema follows the fixture; sample-only tests say why they skip.
  assert re.search(r'\d+ passed', out)
  assert ("needs the generated sample's fields (models/features.py declares another log): "
          'datagen generates the sample ad log only') in out


def test_pipeline_runs_end_to_end(own_repo):
  repo, data, out = own_repo
  run = _run(repo, 'local_runner.py', '--data-root', data, '--output-root', out,
             '--window-spans', '2', '--set', 'hparams.max_epochs=3',
             '--set', 'hparams.learning_rate=0.01', '--set', 'hparams.batch_size=64',
             '--set', 'gate.auc_floor=0.5', '--set', 'gate.challenger_check=false',
             timeout=1500)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  read = _run(repo, '-c', RUN_RESULT, out)
  assert read.returncode == 0, read.stderr
  result = json.loads(read.stdout.splitlines()[-1])
  assert result['spans'] == [1, 2] and result['rows'] == [2 * ROWS, 2 * ROWS, 0], result
  # Integer codes declared strings compare as strings with the previous span: no false drift.
  assert result['data_validation_passed'] and result['anomalous_splits'] == [], result
  assert result['auc'] > 0.55, result
  assert result['hparams']['learning_rate'] == 0.01, result
  assert not [name for name in result['hparams'] if 'image' in name], result
  assert result['push']['pushed'] and result['push']['version'], result
  # The slices are the fixture's slice fields; no ad key, so no new/established cohorts.
  with open(result['report']) as f:
    report = f.read()
  for field in ('banner_pos', 'device_type'):
    assert re.search(rf'^\| {field}=\w+ \| \d+ \|', report, re.M), (field, report)
  assert 'cohort=' not in report
  with open(os.path.join(out, 'last_run_summary.md')) as f:
    assert 'oracle    : n/a' in f.read()  # true probabilities exist for the sample log only


# The header-less tab-separated log of tsv_features.py: its columns in file order.
TSV_COLUMNS = ('click', 'C1', 'banner_pos', 'site_id', 'site_category', 'device_type', 'C15',
               'C16', 'C18')
TSV_ROWS = 1000  # per span


@pytest.fixture(scope='module')
def tsv_repo(tmp_path_factory):
  """The copy declaring the bare log (tsv_features.py) and its schema, and two spans of it."""
  root = tmp_path_factory.mktemp('tsv_csv')
  repo, data = str(root / 'repo'), str(root / 'data')
  swap.copy_with_fields(repo, TSV_FIELDS)
  for span in (1, 2):
    write_span(data, span, TSV_ROWS, TSV_COLUMNS, delimiter='\t', header=False)
  made = _run(repo, '-m', 'schema.generate')
  assert made.returncode == 0, made.stderr
  return repo, data, str(root / 'out')


def test_a_bare_tab_separated_log_without_header_key_or_time_end_to_end(tsv_repo):
  """Declared in features.py alone (the CSV check on such files: tests/test_check_csv.py):
  ExampleGen and DataGate read it, the rows are split at random, a model is pushed, and batch
  scores name each row by file and line."""
  repo, data, out = tsv_repo
  run = _run(repo, 'local_runner.py', '--data-root', data, '--output-root', out,
             '--window-spans', '1', '--set', 'hparams.max_epochs=2',
             '--set', 'hparams.learning_rate=0.01', '--set', 'hparams.batch_size=64',
             '--set', 'gate.auc_floor=0.5', '--set', 'hparams.challenger=false',
             timeout=900)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  read = _run(repo, '-c', RUN_RESULT, out)
  assert read.returncode == 0, read.stderr
  result = json.loads(read.stdout.splitlines()[-1])
  assert result['spans'] == [2] and result['rows'] == [TSV_ROWS, TSV_ROWS, 0], result
  # DataGate read span 1 too (C1's drift), header-less and tab-separated like span 2.
  assert result['data_validation_passed'] and result['push']['pushed'], result
  with open(os.path.join(out, 'last_run_summary.md')) as f:
    assert 'random split' in f.read()

  csv_path = os.path.join(data, 'span-2', 'ads.csv')
  scores = os.path.join(out, 'scores')
  scored = _run(repo, '-m', 'batch.score', '--input', os.path.dirname(csv_path), '--output',
                scores, '--model-base-path', os.path.join(out, 'serving', 'adclick'))
  assert scored.returncode == 0, scored.stderr[-3000:]
  named = []
  for shard in glob.glob(os.path.join(scores, 'scores-*.csv')):
    with open(shard, newline='') as f:
      reader = csv.DictReader(f)
      assert reader.fieldnames == ['source_file', 'line_number', 'click_probability',
                                   'model_version']
      named += [(row['source_file'], int(row['line_number'])) for row in reader]
  # Line 1 is the first row: the file has no header.
  assert sorted(named) == [(csv_path, line) for line in range(1, TSV_ROWS + 1)]
