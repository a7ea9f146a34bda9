"""Batch scoring (batch/score.py) of a span with a bad row, locally and on a GCS emulator.

The model is the adclick model as the Trainer exports it (tests/conftest.py), pushed as a
served version; the scores must equal its serving_default signature on the same raw rows.
"""
import csv
import dataclasses
import glob
import io
import os

from apache_beam.io.filesystems import FileSystems
import numpy as np
import pytest

from batch import score
from components import safe_pusher
from components.image_csv_example_gen import executor as rows_lib
from models import data_layout
from models import features
from models import serving_layout
from models import signatures
from tests import fake_models
from tests import gcs_emulator
from tests import test_rows

pytestmark = pytest.mark.sample_fields
ROWS = 12
BAD_ID = 'imp-bad'


def _write_span(span_dir, rows, with_label=True):
  """ads.csv and images/ for `rows` (raw rows of conftest), plus one row whose image is
  missing; without the label column when with_label is False."""
  label = features.LABEL_KEY
  columns = [c for c in features.csv_columns() if with_label or c != label]
  lines = test_rows.sample_cells(rows, span_dir, columns)
  bad = list(lines[0])
  bad[columns.index('impression_id')] = BAD_ID
  bad[columns.index(features.IMAGE_PATH_COLUMN)] = f'{data_layout.IMAGE_DIR}/missing.png'
  lines.insert(len(lines) // 2, bad)
  with open(os.path.join(span_dir, data_layout.ADS_FILE), 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    writer.writerows(lines)
  return span_dir


def _read_scores(output):
  """{impression_id: row} from every shard; fails on a duplicated impression."""
  found = {}
  pattern = FileSystems.join(output, f'{score.SCORES_PREFIX}-*.csv')
  for metadata in FileSystems.match([pattern])[0].metadata_list:
    with FileSystems.open(metadata.path) as f:
      reader = csv.DictReader(io.StringIO(f.read().decode('utf-8')))
      assert reader.fieldnames == score.output_columns()
      for row in reader:
        assert row['impression_id'] not in found
        found[row['impression_id']] = row
  return found


@pytest.fixture(scope='module')
def model_base(serving_model_dir, tmp_path_factory):
  """A model base path serving the fixture model as versions 3 and 4 (and 4 is the latest)."""
  base = serving_layout.model_root(str(tmp_path_factory.mktemp('serving')))
  for version in ('3', '4'):
    safe_pusher.push(serving_model_dir, base, version)
  return base


def _check_scores(output, rows, model_dir, version):
  scores = _read_scores(output)
  assert set(scores) == {r['impression_id'] for r in rows}  # the bad row is not scored
  expected = fake_models.serving_predictions(model_dir, rows)
  got = [float(scores[r['impression_id']][signatures.PREDICTION_KEY]) for r in rows]
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert {r['ad_id'] for r in scores.values()} == {r['ad_id'] for r in rows}
  assert {r[score.MODEL_VERSION_COLUMN] for r in scores.values()} == {str(version)}
  rejected = rows_lib.read_rejected_rows(output)
  assert [r['key'].split('/')[0] for r in rejected] == [BAD_ID]
  assert 'image missing' in rejected[0]['reason']
  manifest = score.read_manifest(output)
  assert (manifest['model_version'], manifest['rows_scored'], manifest['rows_rejected']) == (
      version, len(rows), 1)


def test_scores_a_span_without_labels_and_rejects_the_bad_row(
    raw_rows, model_base, serving_model_dir, tmp_path):
  rows = raw_rows[:ROWS]
  span = _write_span(str(tmp_path / 'data' / 'span-5'), rows, with_label=False)
  output = str(tmp_path / 'scores' / 'span-5')
  score.main(['--input', span, '--output', output, '--model-base-path', model_base])
  _check_scores(output, rows, serving_model_dir, 4)  # the latest version by default
  assert os.listdir(tmp_path / 'scores') == ['span-5']  # nothing left beside it


def test_rerun_replaces_the_output_and_records_the_pinned_version(
    raw_rows, model_base, serving_model_dir, tmp_path):
  output = str(tmp_path / 'scores')
  first = _write_span(str(tmp_path / 'first'), raw_rows[:ROWS])
  score.score(first, output, model_base)
  # The second run scores other rows with another version: nothing of the first may remain.
  rows = raw_rows[ROWS:ROWS + 5]
  second = _write_span(str(tmp_path / 'second'), rows)
  score.score(second, output, model_base, version=3)
  _check_scores(output, rows, serving_model_dir, 3)
  assert len(glob.glob(os.path.join(output, rows_lib.REJECTED_ROWS_DIR, 'rejected-*'))) == 1
  assert sorted(os.listdir(tmp_path)) == ['first', 'scores', 'second']


def test_data_root_scores_the_latest_span(raw_rows, model_base, tmp_path):
  _write_span(str(tmp_path / 'data' / 'span-1'), raw_rows[:3])
  _write_span(str(tmp_path / 'data' / 'span-2'), raw_rows[3:7])
  score.main(['--data-root', str(tmp_path / 'data'), '--output', str(tmp_path / 'scores'),
              '--model-base-path', model_base])
  assert sorted(os.listdir(tmp_path / 'scores')) == ['span-2']
  assert set(_read_scores(str(tmp_path / 'scores' / 'span-2'))) == {
      r['impression_id'] for r in raw_rows[3:7]}


def test_beam_workers_and_other_beam_flags_go_to_beam():
  args, beam_args = score.parse_args(['--input', 'in', '--output', 'out', '--beam-workers', '2',
                                      '--direct_num_threads=3'])
  assert (args.input, args.output) == ('in', 'out')
  assert beam_args == ['--direct_num_threads=3', '--direct_running_mode=multi_processing',
                       '--direct_num_workers=2']


def test_a_missing_or_incomplete_version_is_a_clear_error(model_base, tmp_path, capsys):
  with pytest.raises(ValueError, match='Version 7 .* missing or incomplete'):
    score.resolve_version(model_base, 7)
  with pytest.raises(SystemExit, match='No complete model version'):
    score.main(['--input', str(tmp_path), '--output', str(tmp_path / 'out'),
                '--model-base-path', str(tmp_path / 'empty')])


@pytest.mark.slow
def test_scores_a_span_on_gcs(raw_rows, model_base, serving_model_dir, tmp_path):
  """Input and output on gs:// (the emulator); the model stays on local disk, since
  TensorFlow cannot read from the emulator (a real bucket works)."""
  rows = raw_rows[:ROWS]
  local = _write_span(str(tmp_path / 'span-5'), rows, with_label=False)
  with gcs_emulator.running('scores-test') as bucket:
    gcs_emulator.upload_tree(bucket, local, 'data/span-5')
    output = 'gs://scores-test/scores/span-5'
    for _ in range(2):  # a rerun replaces
      score.score('gs://scores-test/data/span-5', output, model_base)
      _check_scores(output, rows, serving_model_dir, 4)
    names = {blob.name for blob in bucket.list_blobs(prefix='scores/')}
    assert names and all(n.startswith('scores/span-5/') for n in names)  # no staging left


def test_one_line_of_every_bad_kind_costs_that_line_only(raw_rows, model_base, tmp_path):
  """The CSV with one line of every bad kind (tests/test_rows.py), as ExampleGen and
  check_csv read it: the job finishes (no creative the graph cannot decode reaches
  RunInference), each bad line is rejected by its number, and scored + rejected = read."""
  span_dir = str(tmp_path / 'span-6')
  header = list(features.csv_columns())
  good = test_rows.sample_cells(raw_rows[:6], span_dir)
  template = dict(zip(header, good[0]), impression_id='imp-dirty')
  expected = test_rows.write_dirty_csv(span_dir, header, good,
                                       test_rows.dirty_lines(template, header))
  output = str(tmp_path / 'scores')
  manifest = score.score(span_dir, output, model_base)

  bad = {number: reason for number, reason in expected.items() if reason}
  rejected = {int(r['line_number']): r['reason'] for r in rows_lib.read_rejected_rows(output)}
  assert sorted(rejected) == sorted(bad)
  assert all(bad[number] in reason for number, reason in rejected.items())
  counts = {'rows_read': len(good) + len(expected), 'rows_scored': len(good) + 1,
            'rows_rejected': len(bad)}
  assert {k: manifest[k] for k in counts} == counts
  assert manifest['files'] == {os.path.join(span_dir, data_layout.ADS_FILE): counts}
  assert len(_read_scores(output)) == counts['rows_scored']


def test_a_header_less_tab_separated_log_without_a_row_id_is_scored_by_file_and_line(
    raw_rows, model_base, serving_model_dir, tmp_path, monkeypatch):
  """The sample log declared without a row id (impression_id an ordinary KEY field), in a
  tab-separated file without a header: each score names its file and line, as the rejected
  row does."""
  columns = tuple(features.csv_columns())
  monkeypatch.setattr(features, 'FEATURES', tuple(
      dataclasses.replace(f, row_id=False) for f in features.FEATURES))
  monkeypatch.setattr(features, 'CSV_FORMAT',
                      features.CsvFormat(delimiter='\t', columns=columns))
  rows = raw_rows[:ROWS]
  span_dir = str(tmp_path / 'span-7')
  lines = test_rows.sample_cells(rows, span_dir, columns)
  bad = list(lines[0])
  bad[columns.index(features.IMAGE_PATH_COLUMN)] = f'{data_layout.IMAGE_DIR}/missing.png'
  lines.insert(5, bad)  # line 6: the file has no header
  csv_path = os.path.join(span_dir, data_layout.ADS_FILE)
  with open(csv_path, 'w', newline='') as f:
    csv.writer(f, delimiter='\t').writerows(lines)
  output = str(tmp_path / 'scores')
  score.score(span_dir, output, model_base)

  [shard] = glob.glob(os.path.join(output, f'{score.SCORES_PREFIX}-*.csv'))
  with open(shard, newline='') as f:
    reader = csv.DictReader(f)
    assert reader.fieldnames == ['source_file', 'line_number', 'ad_id',
                                 signatures.PREDICTION_KEY, score.MODEL_VERSION_COLUMN]
    scores = {int(row['line_number']): row for row in reader}
  row_lines = [i + 1 if i < 5 else i + 2 for i in range(ROWS)]
  assert sorted(scores) == row_lines
  assert {row['source_file'] for row in scores.values()} == {csv_path}
  np.testing.assert_allclose(
      [float(scores[line][signatures.PREDICTION_KEY]) for line in row_lines],
      fake_models.serving_predictions(serving_model_dir, rows), rtol=1e-5)
  [rejected] = rows_lib.read_rejected_rows(output)
  assert (rejected['source_file'], rejected['line_number']) == (csv_path, '6')
  assert 'image missing' in rejected['reason']
