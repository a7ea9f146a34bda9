"""pipeline.check_csv on small CSVs of a log of one's own, and on the real Avazu sample."""
import csv
import os

import pytest

from models import features
from pipeline import check_csv
from tests.testdata.own_csv import features as own_fields

AVAZU_TRAIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..',
                           'shared', 'data', 'avazu-sample', 'train.csv')
GOOD = {'id': '1', 'click': '0', 'hour': '14102100', 'C1': '1005', 'banner_pos': '0',
        'site_category': '28905ebd', 'device_type': '1', 'C15': '320', 'C16': '50', 'C18': '0'}


@pytest.fixture
def own_fields_in_use(monkeypatch):
  monkeypatch.setattr(features, 'FEATURES', own_fields.FEATURES)


def _write(path, rows, header=None):
  header = header or list(rows[0])
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
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
  assert "click: unusable value (ExampleGen rejects the row): 1 row, e.g. line 2: 'yes' is " \
      'not an integer' in problems
  assert 'C1: unusable value (ExampleGen rejects the row): 1 row, e.g. line 3: required ' \
      'value is empty' in problems
  assert "device_type: value outside the field's domain (the schema flags it and DataGate " \
      "stops the run): 2 rows, e.g. line 4: '9'; line 7: '3'" in problems
  assert 'C18: value outside [0, 3] (the schema flags it and DataGate stops the run): 1 row, ' \
      'e.g. line 5: 7' in problems
  assert "C15: unusable value (ExampleGen rejects the row): 1 row, e.g. line 6: 'wide' is " \
      'not an integer' in problems
  assert 'wrong number of columns (ExampleGen rejects the row): 1 row, e.g. line 42: 3 ' \
      'columns, the header has 10' in problems
  assert len(report.problems) == 6 and report.rows_checked == 41
  assert report.rejected_lines == {2, 3, 6, 42}
  text = report.text(max_rejected_fraction=0.05)
  assert 'ExampleGen would reject 4 of 41 rows (9.8%), more than the 5% a run tolerates' in text
  assert check_csv.main([path]) == 1


def test_missing_columns_stop_before_the_rows(tmp_path, capsys, own_fields_in_use):
  header = [name for name in GOOD if name != 'C1']
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', _rows(3), header=header))
  assert code == 1
  assert "header lacks required columns ['C1']" in out
  assert 'rows' not in out.split('\n')[0]


def test_unknown_columns_are_named_as_ignored(tmp_path, capsys, own_fields_in_use):
  rows = [dict(row, site_id='1fbe01fe', C14='15704') for row in _rows(5)]
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
  monkeypatch.setattr(features, 'FEATURES', own_fields.FEATURES + (
      features.Feature('creative', features.IMAGE, 'bytes', 'Creative.'),))
  (tmp_path / 'images').mkdir()
  (tmp_path / 'images' / 'a.png').write_bytes(b'png')
  rows = [dict(row, image_path=path) for row, path in
          zip(_rows(3), ['images/a.png', 'images/b.png', ''])]
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', rows))
  assert code == 1
  assert ('image_path: image file missing (ExampleGen rejects the row): 1 row, e.g. line 3: '
          f"{tmp_path / 'images' / 'b.png'}") in out
  assert 'image_path: empty (ExampleGen rejects the row): 1 row, e.g. line 4' in out


def test_no_rows_and_no_file(tmp_path, capsys, own_fields_in_use):
  code, out = _run(capsys, _write(tmp_path / 'ads.csv', [], header=list(GOOD)))
  assert code == 1 and 'the file has a header and no rows' in out
  code, out = _run(capsys, str(tmp_path / 'nope.csv'))
  assert code == 1 and 'nope.csv does not exist' in out


def test_text_that_is_not_utf8(tmp_path, capsys, own_fields_in_use):
  path = _write(tmp_path / 'ads.csv', _rows(4))
  with open(path, 'ab') as f:
    f.write(b'99,0,14102101,1005,0,caf\xe9,1,320,50,0\n')
  code, out = _run(capsys, path)
  assert code == 1 and 'line 6 is not UTF-8 text' in out


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
