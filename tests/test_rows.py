"""The row rules of models/rows.py, and a CSV with one line of every bad kind that the
ExampleGen, check_csv and batch scoring tests read too (dirty_lines, write_dirty_csv)."""
import csv
import dataclasses
import gzip
import io
import os
import random
import struct
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image
import pytest
import tensorflow as tf

from models import features
from models import preprocessing
from models import rows
from tests import test_image_bombs
from tests.testdata.own_csv import tsv_features


def image(image_format: str, size=(8, 8)) -> bytes:
  buffer = io.BytesIO()
  Image.new('RGB', size, (200, 30, 30)).save(buffer, format=image_format)
  return buffer.getvalue()


def corrupt_png() -> bytes:
  """A PNG whose checksums are all valid (PIL verifies it) but whose pixel data is corrupt:
  its first row's filter type is 7, which does not exist."""
  data = image('PNG')
  start = data.index(b'IDAT') - 4
  (length,) = struct.unpack('>I', data[start:start + 4])
  pixels = bytearray(zlib.decompress(data[start + 8:start + 8 + length]))
  pixels[0] = 7
  packed = zlib.compress(bytes(pixels))
  chunk = (struct.pack('>I', len(packed)) + b'IDAT' + packed +
           struct.pack('>I', zlib.crc32(b'IDAT' + packed)))
  return data[:start] + chunk + data[start + 12 + length:]


# The creatives of dirty_csv's bad rows, by file name under images/, and the words that name
# each refusal.
BAD_IMAGES = {
    'webp.webp': (image('WEBP'), 'image is WebP'),
    'tiff.tif': (image('TIFF'), 'image is TIFF'),
    'corrupt.png': (corrupt_png(), 'image does not decode: Invalid PNG data'),
    'empty.png': (b'', 'image file is empty'),
    'bomb.png': (test_image_bombs.png(20000, 20000, rows=1), 'image is 20000 x 20000 pixels'),
}


def _line(cells: Sequence[str]) -> bytes:
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator='\n').writerow(cells)
  return buffer.getvalue().encode('utf-8')


def dirty_lines(good: Dict[str, str], columns: Sequence[str]
                ) -> List[Tuple[bytes, Optional[str]]]:
  """One line of every bad kind, made from a good row (column -> cell) of the sample log's
  fields, each with words of the reason it is rejected for; and one good row with a quoted
  newline (None: accepted, as one row)."""
  def changed(**cells):
    return _line([cells.get(c, good[c]) for c in columns])

  image_path = features.IMAGE_PATH_COLUMN
  lines = [
      (_line([good[c] for c in columns][:-1]),
       f'expected {len(columns)} columns, got {len(columns) - 1}'),
      (changed(campaign_id='NUL').replace(b'NUL', b'cmp\0x'), 'contains NUL'),
      (changed(advertiser='LATIN1').replace(b'LATIN1', b'caf\xe9'), 'invalid UTF-8 at byte'),
      (changed(bid_price='n/a'), "bid_price: 'n/a' is not a number"),
      (changed(bid_price='inf'), "bid_price: inf is not a finite number"),
      (changed(clicked=''), 'clicked: required value is empty'),
      (changed(clicked='2'), 'clicked: 2 is outside [0, 1]'),
      (changed(**{image_path: 'images/missing.png'}), 'image missing: '),
      (changed(campaign_id='cmp\nwith a newline'), None),
  ]
  lines += [(changed(**{image_path: f'images/{name}'}), reason)
            for name, (_, reason) in BAD_IMAGES.items()]
  return lines


def write_dirty_csv(span_dir: str, header: Sequence[str], good: List[List[str]],
                    dirty: List[Tuple[bytes, Optional[str]]]) -> Dict[int, Optional[str]]:
  """Writes ads.csv (the header, the good rows, then the dirty lines interleaved with more
  good ones) and the bad creatives into span_dir; returns {line number: reason words, or
  None} of the dirty lines."""
  os.makedirs(os.path.join(span_dir, 'images'), exist_ok=True)
  for name, (data, _) in BAD_IMAGES.items():
    with open(os.path.join(span_dir, 'images', name), 'wb') as f:
      f.write(data)
  content, expected = _line(header), {}
  good = list(good)
  for raw, reason in dirty:
    content += _line(good.pop()) if good else b''
    expected[content.count(b'\n') + 1] = reason
    content += raw
  content += b''.join(_line(row) for row in good)
  with open(os.path.join(span_dir, 'ads.csv'), 'wb') as f:
    f.write(content)
  return expected


# ------------------------------------------------------------------------------- the rules

@pytest.mark.sample_fields
def test_values_finite_in_range_and_in_domain():
  bid, hour, device = (features.BY_NAME[n] for n in ('bid_price', 'hour', 'device'))
  assert rows.parse_cell(bid, '1.5') == (1.5, None)
  for cell in ('nan', 'inf', '-inf', '1e400'):
    assert rows.parse_cell(bid, cell)[1].endswith('is not a finite number'), cell
  assert rows.parse_cell(bid, '99') == (None, 'bid_price: 99.0 is outside [0.01, 50]')
  assert rows.parse_cell(bid, '99', values=False) == (99.0, None)  # measured, not refused
  assert rows.parse_cell(device, 'phone', values=False) == ('phone', None)
  assert rows.parse_cell(bid, 'n/a', values=False)[1] == "bid_price: 'n/a' is not a number"
  assert rows.parse_cell(hour, '') == (hour.default, None)
  assert rows.parse_cell(hour, '3.5') == (None, "hour: '3.5' is not an integer")
  assert rows.parse_cell(device, 'phone')[1].startswith("device: 'phone' is not one of")
  assert rows.value_refusal(bid, float('nan')) == 'bid_price: nan is not a finite number'
  assert rows.value_refusal(bid, True) == 'bid_price: True is not a number'
  assert rows.value_refusal(hour, 3.0) is None


def test_the_label_is_required_and_0_or_1():
  label = features.label_feature()
  assert rows.parse_cell(label, '1') == (1, None)
  assert rows.parse_cell(label, '')[1] == f'{label.name}: required value is empty'
  assert rows.parse_cell(label, '2')[1] is not None
  assert rows.value_refusal(dataclasses.replace(label, value_range=None), 2) == (
      f'{label.name}: 2 is not a label (0 or 1)')


@pytest.mark.parametrize('image_format', rows.IMAGE_FORMATS)
def test_every_accepted_format_is_decoded_by_the_graph(image_format):
  data = image(image_format)
  assert rows.image_format(data) == image_format
  assert rows.image_refusal(data) is None
  assert preprocessing.decode_images(tf.constant([data])).shape == (
      1, features.IMAGE_SIZE, features.IMAGE_SIZE, 3)


@pytest.mark.parametrize('name', list(BAD_IMAGES))
def test_creatives_the_graph_cannot_take_are_refused_by_name(name):
  data, reason = BAD_IMAGES[name]
  assert reason in rows.image_refusal(data)
  if data:  # what ExampleGen's PIL check let through, and the graph then failed on
    with pytest.raises(tf.errors.InvalidArgumentError):
      preprocessing.decode_images(tf.constant([data]))
  if name in ('webp.webp', 'tiff.tif', 'corrupt.png'):
    Image.open(io.BytesIO(data)).verify()


def test_a_truncated_jpeg_is_refused():
  assert 'does not decode' in rows.image_refusal(image('JPEG', (64, 64))[:300])


def test_load_image_names_missing_and_empty_files(tmp_path):
  assert rows.load_image(str(tmp_path / 'nope.png')) == (
      None, f"image missing: {tmp_path / 'nope.png'}")
  (tmp_path / 'empty.png').write_bytes(b'')
  assert rows.load_image(str(tmp_path / 'empty.png'))[1] == (
      f"image unusable: {tmp_path / 'empty.png'}: image file is empty")
  (tmp_path / 'ok.png').write_bytes(image('PNG'))
  assert rows.load_image(str(tmp_path / 'ok.png')) == (image('PNG'), None)


# ------------------------------------------------------------------------------- the lines

# The line tests read comma-separated records, whatever the log's format (features.py).
COMMAS = features.CsvFormat()


def _records(data: bytes):
  return [(r.line_number, r.cells, r.refusal)
          for r in rows.read_records(io.BytesIO(data), COMMAS)]


def test_each_line_that_is_not_text_is_refused_alone():
  assert _records(b'a,b\r\n1,\xff\xfe\n2,x\x00y\n\n3,"4\n5"\n6,7') == [
      (1, ('a', 'b'), None),
      (2, (), 'invalid UTF-8 at byte 3'),
      (3, (), 'contains NUL (byte 4)'),
      (5, ('3', '4\n5'), None),  # a quoted newline: one record, named by its first line
      (7, ('6', '7'), None),
  ]


@pytest.mark.parametrize('bad, reason', [
    (b'\xff bad', 'invalid UTF-8 at byte 1'), (b'a\0b', 'contains NUL (byte 2)'),
    (b'x' * 150, 'line longer than 100 bytes')])
def test_a_line_refused_inside_a_quoted_field_refuses_the_whole_record(monkeypatch, bad,
                                                                       reason):
  monkeypatch.setattr(rows, 'MAX_LINE_BYTES', 100)
  assert _records(b'h\n1,"open\n' + bad + b'\nclose",x\n2,y\n') == [
      (1, ('h',), None), (2, (), f'line 3 inside a quoted field: {reason}'),
      (5, ('2', 'y'), None)]


def test_an_unclosed_quote_costs_its_own_line_only():
  lines = b'h\n' + b'1,"open\n' + b''.join(b'%d,x\n' % i for i in range(3, 40))
  found = _records(lines)
  assert found[1] == (2, (), 'a quoted field is not closed (within '
                      f'{rows.MAX_RECORD_LINES} lines or by the end of the file)')
  assert found[2:] == [(i, (str(i), 'x'), None) for i in range(3, 40)]
  assert _records(b'h\n1,2\n3,"4\n5,6\n') == [
      (1, ('h',), None), (2, ('1', '2'), None), (3, (), found[1][2]), (4, ('5', '6'), None)]


def test_a_line_too_long_is_refused_without_holding_it(monkeypatch):
  monkeypatch.setattr(rows, 'MAX_LINE_BYTES', 100)
  assert _records(b'h\n' + b'x' * 350 + b'\n1\n' + b'y' * 100 + b'\n') == [
      (1, ('h',), None), (2, (), 'line longer than 100 bytes'), (3, ('1',), None),
      (4, ('y' * 100,), None)]


def test_a_compressed_file_is_read_as_beam_reads_it(tmp_path):
  with gzip.open(tmp_path / 'ads.csv.gz', 'wb') as f:
    f.write(b'h\n1,"2\n3"\n\xff\n4\n')
  assert [(r.line_number, r.cells, r.refusal)
          for r in rows.open_records(str(tmp_path / 'ads.csv.gz'), COMMAS)] == [
      (1, ('h',), None), (2, ('1', '2\n3'), None), (4, (), 'invalid UTF-8 at byte 1'),
      (5, ('4',), None)]


def test_the_escaped_text_of_a_refused_line_is_kept():
  [_, record] = rows.read_records(io.BytesIO(b'h\nab\xffc\x00\n'), COMMAS)
  assert record.text == 'ab\\xffc\x00'.replace('\x00', '\\x00')


def test_headers(tmp_path):
  columns = list(features.csv_columns())
  (tmp_path / 'a.csv').write_bytes(b'\xef\xbb\xbf' + ','.join(columns).encode() + b'\n')
  assert rows.check_headers([str(tmp_path / 'a.csv')], csv_format=COMMAS) == columns
  (tmp_path / 'b.csv').write_bytes(b'')
  with pytest.raises(ValueError, match='the file is empty'):
    rows.check_headers([str(tmp_path / 'b.csv')], csv_format=COMMAS)
  (tmp_path / 'c.csv').write_bytes(','.join(columns[1:]).encode() + b'\n')
  with pytest.raises(ValueError, match='header differs'):
    rows.check_headers([str(tmp_path / 'a.csv'), str(tmp_path / 'c.csv')], csv_format=COMMAS)
  (tmp_path / 'd.csv').write_bytes(b'\xff\n')
  with pytest.raises(ValueError, match=r'line 1 \(the header\): invalid UTF-8 at byte 1'):
    rows.check_headers([str(tmp_path / 'd.csv')], csv_format=COMMAS)


@pytest.fixture
def tsv_log(monkeypatch):
  """features.py as tests/testdata/own_csv/tsv_features.py declares it: a header-less,
  tab-separated log without a key or a time."""
  monkeypatch.setattr(features, 'FEATURES', tsv_features.FEATURES)
  monkeypatch.setattr(features, 'CSV_FORMAT', tsv_features.CSV_FORMAT)
  return tsv_features.CSV_FORMAT.columns


TSV_ROW = ('0', '1005', '0', '1fbe01fe', '28905ebd', '1', '320', '50', '0')


def test_a_header_less_tab_separated_log_is_read_from_line_1(tmp_path, tsv_log):
  bad = ('1', '1005', '0', 'x', '28905ebd', '9', '320', '50', '0')  # device_type 9
  path = tmp_path / 'ads.tsv'
  path.write_text('\t'.join(TSV_ROW) + '\n' + '\t'.join(bad) + '\n' + 'a,b\n')
  header = rows.check_headers([str(path)])
  assert header == list(tsv_log)
  parser = rows.RowParser(header)
  parsed = [(r.line_number, parser.parse(str(path), r)[1], parser.key(r))
            for r in rows.data_records(str(path))]
  # No key: file and line name each row (the rejected rows' source_file and line_number).
  assert parsed == [(1, None, ''), (2, "device_type: '9' is not one of 0, 1, 4, 5", ''),
                    (3, 'expected 9 columns, got 1', '')]
  example, _ = parser.parse(str(path), next(rows.data_records(str(path))))
  assert example.features.feature['C15'].int64_list.value == [320]
  assert 'site_id' not in example.features.feature  # declared, read by no field: ignored


def test_a_header_less_file_may_lack_the_optional_columns_on_every_line(tmp_path, tsv_log):
  """E.g. the label of a month to score: line 1 has one cell fewer than the declared columns."""
  path = tmp_path / 'ads.tsv'
  path.write_text('\t'.join(TSV_ROW[1:]) + '\n')
  assert rows.check_headers([str(path)], optional=['click']) == list(tsv_log[1:])
  with pytest.raises(ValueError, match=r"CSV_FORMAT.columns lacks required columns \['click'\]"):
    rows.check_headers([str(path)], csv_format=features.CsvFormat(
        delimiter='\t', columns=tsv_log[1:]))


def test_the_readers_take_the_format_given_over_the_logs(tmp_path, tsv_log):
  """Our own files (captured rows) keep commas and a header whatever the log's format."""
  path = tmp_path / 'capture.csv'
  path.write_text('click,C1\n0,1005\n')
  own = features.CsvFormat()
  assert rows.read_header(str(path), own) == ['click', 'C1']
  assert [r.cells for r in rows.data_records(str(path), own)] == [('0', '1005')]
  assert [r.line_number for r in rows.data_records(str(path))] == [1, 2]  # as the log


def test_a_header_in_a_file_declared_header_less_is_refused_with_what_to_declare(
    tmp_path, tsv_log):
  path = tmp_path / 'ads.tsv'
  path.write_text('\t'.join(tsv_log) + '\n' + '\t'.join(TSV_ROW) + '\n')
  with pytest.raises(ValueError) as refused:
    rows.check_headers([str(path)])
  assert str(refused.value) == (
      f'{path}: line 1 is a header, but models/features.py declares the file header-less '
      f'(CSV_FORMAT.columns). {path} looks tab-separated (9 columns at tabs) with a header '
      "(line 1 names the columns): declare it in models/features.py as "
      "CSV_FORMAT = CsvFormat(delimiter='\\t')")


def test_format_advice_names_the_delimiter_and_the_missing_header(tmp_path, monkeypatch):
  monkeypatch.setattr(features, 'FEATURES', tsv_features.FEATURES)
  monkeypatch.setattr(features, 'CSV_FORMAT', COMMAS)  # declared: ',' + header
  columns = list(features.csv_columns())
  files = {'right.csv': ','.join(columns), 'tabs.tsv': '\t'.join(columns),
           'bare.tsv': '\t'.join(TSV_ROW[:8]), 'semicolons.csv': ';'.join(TSV_ROW),
           'bare.csv': ','.join(TSV_ROW), 'other.csv': 'a,b,c'}
  advice = {}
  for name, line in files.items():
    (tmp_path / name).write_text(line + '\n')
    found = rows.format_advice(str(tmp_path / name))
    advice[name] = found and found[len(str(tmp_path / name)) + 1:]
  assert advice == {
      'right.csv': None,
      'other.csv': None,  # a header of other names: check_headers names the missing ones
      'tabs.tsv': 'looks tab-separated (8 columns at tabs, 1 at the declared commas) with a '
                  'header (line 1 names the columns): declare it in models/features.py as '
                  "CSV_FORMAT = CsvFormat(delimiter='\\t')",
      'bare.tsv': 'looks tab-separated (8 columns at tabs, 1 at the declared commas) without '
                  'a header (line 1 holds values: 0, 1005, 0, 1fbe01fe, ...): declare it in '
                  "models/features.py as CSV_FORMAT = CsvFormat(delimiter='\\t', "
                  f"columns={tuple(columns)!r} if the file's 8 columns are in features.py's "
                  'order, else their names in file order)',
      'semicolons.csv': 'looks semicolon-separated (9 columns at semicolons, 1 at the '
                        'declared commas) without a header (line 1 holds values: 0, 1005, 0, '
                        '1fbe01fe, ...): declare it in models/features.py as CSV_FORMAT = '
                        "CsvFormat(delimiter=';', columns=(the names of the 9 columns in file "
                        'order))',
      'bare.csv': 'looks comma-separated (9 columns at commas) without a header (line 1 holds '
                  'values: 0, 1005, 0, 1fbe01fe, ...): declare it in models/features.py as '
                  'CSV_FORMAT = CsvFormat(columns=(the names of the 9 columns in file order))'}
  with pytest.raises(ValueError, match=r"header lacks required columns .* looks tab-separated"):
    rows.check_headers([str(tmp_path / 'bare.tsv')])


@pytest.mark.sample_fields
def test_the_row_parser_names_every_dirty_line(tmp_path, raw_rows):
  header = list(features.csv_columns())
  good = sample_cells(raw_rows[:4], str(tmp_path))
  expected = write_dirty_csv(str(tmp_path), header, good,
                             dirty_lines(dict(zip(header, good[0])), header))
  parser = rows.RowParser(header)
  found = {}
  for record in rows.data_records(str(tmp_path / 'ads.csv')):
    found[record.line_number] = parser.parse(str(tmp_path / 'ads.csv'), record)[1]
  for number, reason in expected.items():
    assert (found[number] is None) if reason is None else reason in found[number], number
  assert sum(r is None for r in found.values()) == len(good) + 1


@pytest.mark.sample_fields
def test_each_creative_is_loaded_once_while_the_cache_holds_it(tmp_path, raw_rows, monkeypatch):
  """3,000 ads' creatives met in random order, twice over (more than the 2,048 entries of a
  count-bounded cache): each is read and checked once; a cache too small for them, again."""
  header = list(features.csv_columns())
  [cells] = sample_cells(raw_rows[:1], str(tmp_path))
  loads = []
  monkeypatch.setattr(rows, 'load_image', lambda path: loads.append(path) or (b'png', None))
  names = [f'images/ad_{i}.png' for i in range(3000)] * 2
  random.Random(0).shuffle(names)

  def parse_all(parser):
    for name in names:
      cells[header.index(features.IMAGE_PATH_COLUMN)] = name
      assert parser.parse(str(tmp_path / 'a.csv'), rows.Record(2, '', tuple(cells)))[1] is None
  parse_all(rows.RowParser(header))
  assert len(loads) == len(set(loads)) == 3000
  loads.clear()
  monkeypatch.setattr(rows, '_IMAGE_CACHE_BYTES', 1000 * rows._cached_size((b'png', None)))  # pylint: disable=protected-access
  parse_all(rows.RowParser(header))
  assert len(loads) > 3000


@pytest.mark.sample_fields
def test_an_empty_image_path_is_refused(tmp_path, raw_rows):
  header = list(features.csv_columns())
  [cells] = sample_cells(raw_rows[:1], str(tmp_path))
  cells[header.index(features.IMAGE_PATH_COLUMN)] = ''
  assert rows.RowParser(header).parse(str(tmp_path / 'a.csv'), rows.Record(2, '', tuple(
      cells))) == (None, f'{features.IMAGE_PATH_COLUMN}: required value is empty')


@pytest.mark.sample_fields
def test_without_images_the_creative_is_neither_read_nor_in_the_example(tmp_path, raw_rows):
  header = list(features.csv_columns())
  [cells] = sample_cells(raw_rows[:1], str(tmp_path))
  os.remove(tmp_path / cells[header.index(features.IMAGE_PATH_COLUMN)])
  record = rows.Record(2, '', tuple(cells))
  assert 'image missing' in rows.RowParser(header).parse(str(tmp_path / 'a.csv'), record)[1]
  example, refusal = rows.RowParser(header, images=False).parse(str(tmp_path / 'a.csv'),
                                                                record)
  assert refusal is None
  assert set(example.features.feature) == {
      f.name for f in features.FEATURES if f.role != features.IMAGE}


def sample_cells(raw: List[dict], span_dir: str, columns: Optional[Sequence[str]] = None
                 ) -> List[List[str]]:
  """Rows of conftest.raw_row as the cells of `columns` (all of features.py's by default),
  their creatives written under span_dir/images."""
  os.makedirs(os.path.join(span_dir, 'images'), exist_ok=True)
  cells = []
  for row in raw:
    path = f"images/{row['impression_id']}.png"
    with open(os.path.join(span_dir, path), 'wb') as f:
      f.write(row[features.image_feature().name])
    cells.append([path if c == features.IMAGE_PATH_COLUMN else str(row[c])
                  for c in columns or features.csv_columns()])
  return cells
