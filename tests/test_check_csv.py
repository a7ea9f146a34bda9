"""pipeline.check_csv on small CSVs of a log of one's own, and on the real Avazu sample."""
import csv
import os
import re

import pytest

from models import features
from pipeline import check_csv
from tests import fake_models
from tests import test_rows
from tests.testdata.own_csv import features as own_fields
from tests.testdata.own_csv import tsv_features

AVAZU_TRAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..',
                           'shared', 'data', 'avazu-sample', 'train.csv')
GOOD = {'id': '1', 'click': '0', 'hour': '14102100', 'C1': '1005', 'banner_pos': '0',
        'site_category': '28905ebd', 'device_type': '1', 'C15': '320', 'C16': '50', 'C18': '0'}


@pytest.fixture
def own_fields_in_use(monkeypatch):
  fake_models.use_features(monkeypatch, own_fields.FEATURES)


@pytest.fixture
def tsv_log_in_use(monkeypatch):
  """features.py as tests/testdata/own_csv/tsv_features.py declares it: tab-separated, no
  header, no key, no time."""
  fake_models.use_features(monkeypatch, tsv_features.FEATURES, tsv_features.CSV_FORMAT)


def _write(path, rows, header=None, delimiter=',', with_header=True):
  header = header or list(rows[0])
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f, delimiter=delimiter)
    if with_header:
      writer.writerow(header)
    writer.writerows([row.get(name, '') for name in header] for row in rows)
  return str(path)


def _rows(n, changes=None):
  """n good rows an hour apart; changes {i: {field: value}} alters row i."""
  rows = [dict(GOOD, id=str(i), hour=str(14102100 + i % 24)) for i in range(n)]
  for i, change in (changes or {}).items():
    rows[i].update(change)
  return rows


def _run(capsys, *argv):
  code = check_csv.main(list(argv))
  return code, capsys.readouterr().out


def test_a_clean_csv_passes(tmp_path, capsys, own_fields_in_use):
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', _rows(30)))
  assert code == 0, out
  assert 'the header and every row' in out and 'Result: no problems found.' in out


def test_each_bad_row_is_named_with_its_line_and_consequence(tmp_path, capsys,
                                                             own_fields_in_use):
  rows = _rows(40, {0: {'click': 'yes'}, 1: {'C1': ''}, 2: {'device_type': '9'},
                    3: {'C18': '7'}, 4: {'C15': 'wide'}, 5: {'device_type': '3'}})
  path = _write(tmp_path / 'ads.csv', rows)
  with open(path, 'a') as f:
    f.write('41,0,14102101\n')  # line 42: three columns
  report = check_csv.check(path)
  problems = '\n'.join(report.problems)
  rejects = '(ExampleGen rejects the row)'
  assert f"click {rejects}: 1 row, e.g. line 2: 'yes' is not an integer" in problems
  assert f'C1 {rejects}: 1 row, e.g. line 3: required value is empty' in problems
  assert (f"device_type {rejects}: 2 rows, e.g. line 4: '9' is not one of 0, 1, 4, 5; "
          "line 7: '3' is not one of 0, 1, 4, 5") in problems
  assert f'C18 {rejects}: 1 row, e.g. line 5: 7 is outside [0, 3]' in problems
  assert f"C15 {rejects}: 1 row, e.g. line 6: 'wide' is not an integer" in problems
  assert (f'expected N columns, got N {rejects}: 1 row, e.g. line 42: expected 10 columns, '
          'got 3') in problems
  assert len(report.problems) == 6 and report.rows_checked == 41
  assert report.rejected_lines == {2, 3, 4, 5, 6, 7, 42}
  text = report.text(max_rejected_fraction=0.05)
  assert 'ExampleGen would reject 7 of 41 rows (17.1%), more than the 5% a run tolerates' in text
  assert check_csv.main([path]) == 1


def test_missing_columns_stop_before_the_rows(tmp_path, capsys, own_fields_in_use):
  header = [name for name in GOOD if name != 'C1']
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', _rows(3), header=header))
  assert code == 1
  assert "header lacks required columns ['C1']" in out
  assert 'rows' not in out.split('\n')[0]


def test_unknown_columns_are_named_as_ignored(tmp_path, capsys, own_fields_in_use):
  rows = [dict(row, site_id='1fbe01fe', C14='15704') for row in _rows(30)]
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', rows))
  assert code == 0, out
  assert 'Columns: all 10 that features.py defines are present; 2 it does not define are ' \
      'ignored: site_id, C14.' in out


def test_a_time_without_spread(tmp_path, capsys, own_fields_in_use):
  path = _write(tmp_path / 'ads.csv', [dict(row, hour='14102100') for row in _rows(20)])
  code, out = _run(capsys, path)
  assert code == 1 and 'PROBLEM hour (TIME) has one value, 14102100' in out
  # Only the top of the file was read: the rest may differ, so it is a note.
  code, out = _run(capsys, path, '--rows', '10')
  assert code == 0 and 'the first 10 rows' in out
  assert 'note: hour (TIME) has one value' in out and 'if the rest of the file' in out


def test_image_paths_are_checked_when_there_is_an_image_field(tmp_path, capsys, monkeypatch):
  fake_models.use_features(monkeypatch, own_fields.FEATURES + (
      features.Feature('creative', features.IMAGE, 'bytes', 'Creative.'),))
  (tmp_path / 'images').mkdir()
  (tmp_path / 'images' / 'a.png').write_bytes(b'png')
  rows = [dict(row, image_path=path) for row, path in
          zip(_rows(3), ['images/a.png', 'images/b.png', ''])]
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', rows))
  assert code == 1
  assert ('image missing (ExampleGen rejects the row): 1 row, e.g. line 3: '
          f"{tmp_path / 'images' / 'b.png'}") in out
  assert ('image_path (ExampleGen rejects the row): 1 row, e.g. line 4: required value is '
          'empty') in out
  # b'png' is no image: the model's decoder would refuse it, so ExampleGen rejects it too.
  assert ('image unusable (ExampleGen rejects the row): 1 row, e.g. line 2: '
          f"{tmp_path / 'images' / 'a.png'}: image is not a known image format") in out


def test_no_rows_and_no_file(tmp_path, capsys, own_fields_in_use):
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', [], header=list(GOOD)))
  assert code == 1 and 'the file has a header and no rows' in out
  code, out = _run(capsys, str(tmp_path / 'nope.csv'))
  assert code == 1 and 'nope.csv does not exist' in out


def test_lines_that_are_not_text_cost_their_line_only(tmp_path, capsys, own_fields_in_use):
  path = _write(tmp_path / 'ads.csv', _rows(4))
  with open(path, 'ab') as f:
    f.write(b'99,0,14102101,1005,0,caf\xe9,1,320,50,0\n'
            b'98,0,14102101,1005,0,28905ebd,1,3\x0020,50,0\n'
            b'97,0,14102101,1005,0,28905ebd,1,320,50,0\n')
  code, out = _run(capsys, path)
  assert code == 1
  assert 'line 6: invalid UTF-8 at byte 25' in out and 'line 7: contains NUL (byte 34)' in out
  assert 'ExampleGen would reject 2 of 7 rows' in out


def test_what_is_not_a_csv_file_is_named_not_a_crash(tmp_path, capsys, own_fields_in_use):
  code, out = _run(capsys, str(tmp_path))
  assert code == 1 and 'PROBLEM' in out
  (tmp_path / 'nul.csv').write_bytes(b'\x00\x01\x02\n')
  code, out = _run(capsys, str(tmp_path / 'nul.csv'))
  assert code == 1 and 'line 1 (the header): contains NUL (byte 1)' in out


@pytest.mark.sample_fields
def test_the_dirty_csv_gets_the_lines_and_reasons_of_example_gen(tmp_path, raw_rows):
  """The CSV with one line of every bad kind (test_rows.write_dirty_csv), as test_example_gen
  runs it through ExampleGen."""
  header = list(features.csv_columns())
  good = test_rows.sample_cells(raw_rows[:4], str(tmp_path))
  expected = test_rows.write_dirty_csv(str(tmp_path), header, good,
                                       test_rows.dirty_lines(dict(zip(header, good[0])), header))
  report = check_csv.check(str(tmp_path / 'ads.csv'))
  bad = {number: reason for number, reason in expected.items() if reason}
  assert report.rejected_lines == set(bad)
  found = {line: detail for where in report.row_problems.values() for line, detail in where}
  for number, reason in bad.items():
    assert reason.split(': ')[-1] in found[number], (number, found[number])
  assert report.rows_checked == len(good) + len(expected)


@pytest.mark.skipif(not os.path.exists(AVAZU_TRAIN),
                    reason=f'the public Avazu sample is not beside the clone ({AVAZU_TRAIN})')
def test_the_real_avazu_sample(capsys, own_fields_in_use):
  """Every row of the sample parses, and the check finds what would sink a run: the sample
  holds one hour only, so an out-of-time split would leave nothing to train on."""
  code, out = _run(capsys, AVAZU_TRAIN)
  assert code == 1
  assert 'the header and every row' in out
  assert 'ignored: site_id, site_domain, app_id' in out
  problems = [line for line in out.splitlines() if 'PROBLEM' in line]
  assert problems == ['  PROBLEM hour (TIME) has one value, 14102100, in every row checked: the '
                      'out-of-time split puts every row of the latest span in eval and none in '
                      'train'], out


def test_split_sizes_follow_the_rows_on_a_time_with_gaps(tmp_path, capsys, own_fields_in_use):
  # YYMMDDHH over two days: the numeric gap between days holds no row, and the cut points
  # still give each split its share of the rows.
  rows = [dict(GOOD, id=str(i), click=str(int(i % 4 == 0)),
               hour=str((14102100 if i < 100 else 14102200) + i % 24)) for i in range(200)]
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', rows))
  assert code == 0, out
  sizes = re.search(r'train (\d+) rows \((\d+) clicks\), validation (\d+) rows \((\d+) '
                    r'clicks\), eval (\d+) rows \((\d+) clicks\)', out)
  train, validation, evaluation = int(sizes[1]), int(sizes[3]), int(sizes[5])
  assert train + validation + evaluation == 200
  assert 120 <= train <= 160 and 10 <= validation <= 30 and 30 <= evaluation <= 50


def test_an_empty_validation_split_is_a_problem_and_few_clicks_a_note(tmp_path, capsys,
                                                                      own_fields_in_use):
  # 85 % of the rows share the first hour: the validation split's cut points coincide.
  rows = [dict(GOOD, id=str(i), hour=str(14102100 if i < 85 else 14102101)) for i in range(100)]
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', rows))
  assert code == 1
  assert 'PROBLEM the validation split would be empty: the run stops before training' in out
  assert 'note: the eval split would hold 0 clicks (fewer than 20)' in out


def test_a_declared_header_less_tab_separated_log_is_checked_from_line_1(tmp_path, capsys,
                                                                          tsv_log_in_use):
  rows = [dict(row, site_id='1fbe01fe') for row in _rows(30, {0: {'click': '2'}})]
  path = _write(tmp_path / 'ads.tsv', rows, header=list(tsv_features.CSV_FORMAT.columns),
                delimiter='\t', with_header=False)
  code, out = _run(capsys, path)
  assert code == 1
  assert f'Checked {path} against models/features.py: every row.' in out
  assert ('Columns: all 8 that features.py defines are declared (no header: CSV_FORMAT.columns '
          'in features.py); 1 it does not define are ignored: site_id.') in out
  assert "click (ExampleGen rejects the row): 1 row, e.g. line 1: 2 is outside [0, 1]" in out
  assert 'ExampleGen would reject 1 of 30 rows' in out


@pytest.mark.parametrize('delimiter,with_header,declare', [
    ('\t', True, "CsvFormat(delimiter='\\t')"),
    ('|', True, "CsvFormat(delimiter='|')"),
    ('\t', False, "CsvFormat(delimiter='\\t', columns=('id', 'click', 'hour', 'C1', "
                  "'banner_pos', 'site_category', 'device_type', 'C15', 'C16', 'C18') if the "
                  "file's 10 columns are in features.py's order, else their names in file "
                  'order)'),
    (',', False, "CsvFormat(columns=('id', 'click'"),
])
def test_another_delimiter_or_no_header_is_named_with_what_to_declare(
    tmp_path, capsys, own_fields_in_use, delimiter, with_header, declare):
  path = _write(tmp_path / 'ads.csv', _rows(5), delimiter=delimiter, with_header=with_header)
  code, out = _run(capsys, path)
  assert code == 1
  [problem] = [line for line in out.splitlines() if 'PROBLEM' in line]
  name = {'\t': 'tab', '|': 'pipe', ',': 'comma'}[delimiter]
  assert f'PROBLEM {path} looks {name}-separated (10 columns at {name}s' in problem
  assert ('without a header (line 1 holds values: 0, 0, 14102100, 1005, ...)' in problem) == (
      not with_header)
  assert f': declare it in models/features.py as CSV_FORMAT = {declare}' in problem
  assert 'lacks' not in out and 'rows' not in out.split('\n')[0]


def test_a_header_where_none_is_declared_is_named(tmp_path, capsys, tsv_log_in_use):
  path = _write(tmp_path / 'ads.tsv', [dict(row, site_id='1') for row in _rows(3)],
                header=list(tsv_features.CSV_FORMAT.columns), delimiter='\t')
  code, out = _run(capsys, path)
  assert code == 1
  assert ('(line 1 names the columns): declare it in models/features.py as '
          "CSV_FORMAT = CsvFormat(delimiter='\\t')") in out
