"""The row rules: what makes one value, one CSV line or one creative acceptable.

The one home of these rules, derived from models/features.py and free of TFX imports, so that
ExampleGen, DataGate, batch scoring, `check_csv`, monitoring, the client and the local server
all accept and refuse exactly the same things. Every function returns a refusal in words (or
None), never raises on bad input: one bad value costs one row or one request, never a run.

  - Lines (read_records): a CSV file is read as a stream of records in the log's format
    (features.CSV_FORMAT: its delimiter; line 1 a header or not), each named by the number
    of the line it starts on. A line that is not UTF-8 text, holds a NUL byte or is longer
    than MAX_LINE_BYTES is refused alone; a quoted field may span lines (one record), up to
    MAX_RECORD_LINES lines, so an unclosed quote costs its own line only; a record holding
    such a line is refused whole.
  - Header (check_headers): every column features.py needs, the same header in every file;
    for a header-less log, the declared column names (CSV_FORMAT.columns), and line 1 must
    not be a header. format_advice says what to declare when line 1 shows another format.
  - Values (parse_cell, value_refusal): numbers finite and within `value_range`, strings
    within a closed `domain`, required values present; the label must be 0 or 1.
  - Creatives (image_refusal): one of IMAGE_FORMATS, not empty, no larger than the model
    decodes, and decoded by the model graph's own decoder (models/preprocessing.py).
  - Rows (RowParser): a record's cells -> a tf.Example, or the refusals joined by '; '.
"""
import csv
import dataclasses
import io
import math
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import cachetools
import tensorflow as tf

from models import features
from models import preprocessing

# The formats a creative may have: those the model graph decodes (see preprocessing.py).
IMAGE_FORMATS = preprocessing.IMAGE_FORMATS
# Longest line read; a longer one (a file that is not a CSV log) is refused without being
# held in memory whole.
MAX_LINE_BYTES = 1 << 20
# Most lines one record may span through quoted newlines: a quote left open costs that line
# only, not the rest of the file.
MAX_RECORD_LINES = 20
_LABEL_VALUES = (0, 1)  # the model predicts a click probability
# Other formats named when a creative has one, to say what it is.
_OTHER_FORMATS = {b'RIFF': 'WebP or another RIFF file', b'II*\0': 'TIFF', b'MM\0*': 'TIFF',
                  b'%PDF': 'PDF', b'<': 'text (SVG or HTML?)'}
# Many impressions show the same ad: a parser keeps the creatives it used last (bytes, or the
# reason refused) up to this many bytes, least recently used out first. A month of 3,000 ads
# whose rows come in no ad order thrashed a cache of 2,048 entries: 113,284 loads (file read
# and decode check, ~3 ms each) for 1,000,000 rows instead of 6,000.
_IMAGE_CACHE_BYTES = 256 << 20
_ENTRY_BYTES = 200  # the key, the tuple and a refusal's words, roughly


def _cached_size(entry: Tuple[Optional[bytes], Optional[str]]) -> int:
  return _ENTRY_BYTES + len(entry[0] or b'')


# ---------------------------------------------------------------------------------- values

def parse_cell(feature: features.Feature, cell: str, values: bool = True
               ) -> Tuple[Any, Optional[str]]:
  """A CSV cell as the field's value: (value, None), or (None, reason) when unusable.

  An empty optional cell takes the field's default (NaN for a field with a missing
  indicator: features.Feature.missing_indicator); a parsed value must also pass
  value_refusal (finite, in range, in the closed domain, a valid label) unless `values` is
  False."""
  if not cell:
    if feature.required:
      return None, f'{feature.name}: required value is empty'
    return feature.default, None
  if feature.dtype == 'int':
    try:
      value = int(cell)
    except ValueError:
      return None, f'{feature.name}: {cell!r} is not an integer'
  elif feature.dtype == 'float':
    try:
      value = float(cell)
    except ValueError:
      return None, f'{feature.name}: {cell!r} is not a number'
  else:
    value = cell
  refusal = value_refusal(feature, value) if values else None
  return (None, refusal) if refusal else (value, None)


def value_refusal(feature: features.Feature, value: Any) -> Optional[str]:
  """Why a typed value (from a CSV cell or a JSON request) is not acceptable, or None.

  Numbers must be finite and within `value_range`, but for NaN in a field
  with a missing indicator; strings within a closed `domain`; the label 0 or 1."""
  if feature.dtype in ('int', 'float'):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return f'{feature.name}: {value!r} is not a number'
    if feature.missing_indicator and features.is_missing(value):
      return None
    if not math.isfinite(value):
      return f'{feature.name}: {value!r} is not a finite number'
    if feature.dtype == 'int' and not float(value).is_integer():
      return f'{feature.name}: {value!r} is not a whole number'
    if feature.value_range:
      low, high = feature.value_range
      if not low <= value <= high:
        return f'{feature.name}: {value!r} is outside [{low:g}, {high:g}]'
    if feature.role == features.LABEL and value not in _LABEL_VALUES:
      return f'{feature.name}: {value!r} is not a label (0 or 1)'
    return None
  if feature.dtype == 'string':
    if not isinstance(value, str):
      return f'{feature.name}: {value!r} is not text'
    if feature.domain and value not in feature.domain:
      return f'{feature.name}: {value!r} is not one of {", ".join(feature.domain)}'
  return None


# ---------------------------------------------------------------------------------- images

def image_format(data: bytes) -> Optional[str]:
  """The name of the creative's format in IMAGE_FORMATS, or None."""
  for name, magic in preprocessing.IMAGE_MAGIC.items():
    if data.startswith(magic):
      return name
  return None


def image_refusal(data: bytes) -> Optional[str]:
  """Why the model cannot take these creative bytes, or None: the one image rule.

  Empty, not one of IMAGE_FORMATS, larger than the model decodes (an image bomb), or refused
  by the model graph's own decoder (e.g. corrupt pixel data behind valid checksums). Costs
  one decode of the image (about a millisecond for a banner): callers cache per creative."""
  if not data:
    return 'image file is empty'
  if image_format(data) is None:
    other = next((name for magic, name in _OTHER_FORMATS.items() if data.startswith(magic)),
                 'not a known image format')
    return f'image is {other}; the accepted formats are {", ".join(IMAGE_FORMATS)}'
  return preprocessing.decode_refusal(data)


def _filesystems():
  # Beam's file systems (local or gs://) load only for callers that read files: the
  # client, which checks values and creative bytes only, does without them.
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  return FileSystems


def matched_paths(pattern: str) -> List[str]:
  """The files a pattern matches (local or gs://), sorted."""
  return sorted(m.path for m in _filesystems().match([pattern])[0].metadata_list)


def load_image(path: str) -> Tuple[Optional[bytes], Optional[str]]:
  """A creative file's bytes, or (None, reason) when it is missing, unreadable or refused."""
  file_systems = _filesystems()
  try:
    with file_systems.open(path) as f:
      data = f.read()
  except Exception as e:  # pylint: disable=broad-except
    # Local files raise OSError, Beam BeamIOError, GCS its client's NotFound (whose read
    # fails only here, inside read()): each refuses the row.
    if not file_systems.exists(path):
      return None, f'image missing: {path}'
    return None, f'image unreadable: {path}: {e}'
  refusal = image_refusal(data)
  return (None, f'image unusable: {path}: {refusal}') if refusal else (data, None)


# ----------------------------------------------------------------------------------- lines

@dataclasses.dataclass(frozen=True)
class Record:
  """One CSV record: the cells of the line(s) it spans, or why it was refused."""
  line_number: int  # of the line it starts on, from 1 (the header, where the file has one)
  text: str  # as read, without its line end; undecodable bytes and NUL shown escaped
  cells: Tuple[str, ...] = ()
  refusal: Optional[str] = None


# A line read: its number (from 1), its text (with its line end) and why it is refused or None.
_Line = Tuple[int, str, Optional[str]]


def _line_refusal(raw: bytes) -> Tuple[str, Optional[str]]:
  """(text, None) for a line of UTF-8 text, else (its escaped text, why it is refused)."""
  try:
    text = raw.decode('utf-8')
    refusal = None
  except UnicodeDecodeError as e:
    text = raw.decode('utf-8', 'backslashreplace')
    refusal = f'invalid UTF-8 at byte {e.start + 1}'
  if '\0' in text:
    refusal = refusal or f'contains NUL (byte {raw.index(0) + 1})'
    text = text.replace('\0', '\\x00')
  return text, refusal


class _Lines:
  """The text lines of a binary stream, as csv.reader pulls them (one at a time, so the file
  is never held whole), each with why it is refused or None. A refused line that would start
  a record is set aside; one inside a record (a quoted field spanning lines) is passed on
  (as its escaped text), and the record is refused whole. A record that spans more than
  MAX_RECORD_LINES lines is cut short, as is one that reaches the end of the file with a
  quote open (StopIteration ends csv.reader's record, and it asks for lines again next
  time): then its later lines are read again."""

  def __init__(self, stream):
    self._stream = stream
    self._number = 0
    self._again: List[_Line] = []  # lines to read again, last first
    self.record: List[_Line] = []  # the lines of the record being read
    self.refused: List[Record] = []
    self.cut = False

  def _read(self) -> Optional[_Line]:
    raw = self._stream.readline(MAX_LINE_BYTES + 1)
    if not raw:
      return None
    self._number += 1
    if len(raw) > MAX_LINE_BYTES and not raw.endswith(b'\n'):
      while raw and not raw.endswith(b'\n'):  # skips the rest of the long line
        raw = self._stream.readline(MAX_LINE_BYTES)
      return self._number, '\n', f'line longer than {MAX_LINE_BYTES:,} bytes'
    if self._number == 1 and raw.startswith(b'\xef\xbb\xbf'):
      raw = raw[3:]  # spreadsheet exports often start with a byte order mark
    return (self._number, *_line_refusal(raw))

  def _next_line(self) -> Optional[_Line]:
    while True:
      line = self._again.pop() if self._again else self._read()
      if line is None or line[2] is None or self.record:
        return line
      number, text, refusal = line
      self.refused.append(Record(number, text.rstrip('\r\n'), refusal=refusal))

  def __iter__(self):
    return self

  def __next__(self) -> str:
    # csv.reader asks for a record's next line only while one of its fields is quoted.
    line = self._next_line() if len(self.record) < MAX_RECORD_LINES else None
    if line is None:
      self.cut = bool(self.record)
      raise StopIteration
    self.record.append(line)
    return line[1]

  def read_again(self, lines: Sequence[_Line]) -> None:
    self._again.extend(reversed(lines))

  def record_refusal(self) -> Optional[str]:
    """Why the record read is refused for a line inside it, or None."""
    return next((f'line {number} inside a quoted field: {refusal}'
                 for number, _, refusal in self.record[1:] if refusal), None)


def log_format(csv_format: Optional[features.CsvFormat] = None) -> features.CsvFormat:
  """The format given, else the log's (read when called, so a test may swap it)."""
  return csv_format or features.CSV_FORMAT


def read_records(stream, csv_format: Optional[features.CsvFormat] = None) -> Iterator[Record]:
  """The records of a CSV file open for binary reading, line 1 (a header, if any) first, cells
  split at the delimiter of `csv_format` (default: the log's, features.CSV_FORMAT).

  Never raises on bad content: a line that is not UTF-8 text or holds a NUL is a refused
  Record, and so is a record spanning lines (a quoted newline) that holds such a line (named
  by its first line; reading resumes after it); so is a record whose quote stays open for
  MAX_RECORD_LINES lines or to the end of the file (its first line; the lines after it are
  read again) or that csv cannot parse. Blank lines are skipped."""
  lines = _Lines(stream)
  reader = csv.reader(lines, delimiter=log_format(csv_format).delimiter)
  while True:
    lines.record, lines.cut = [], False
    try:
      cells = next(reader)
      refusal = None
    except StopIteration:
      cells, refusal = None, None
    except csv.Error as e:  # e.g. a field over csv.field_size_limit()
      cells, refusal = [], f'not a CSV record: {e}'
    yield from lines.refused
    lines.refused = []
    if not lines.record:
      return
    number = lines.record[0][0]
    text = ''.join(line[1] for line in lines.record).rstrip('\r\n')
    if lines.cut:
      yield Record(number, lines.record[0][1].rstrip('\r\n'),
                   refusal='a quoted field is not closed (within '
                   f'{MAX_RECORD_LINES} lines or by the end of the file)')
      lines.read_again(lines.record[1:])
      continue
    refusal = lines.record_refusal() or refusal
    if refusal:
      yield Record(number, text, refusal=refusal)
    elif cells:
      yield Record(number, text, tuple(cells))


class _Raw(io.RawIOBase):
  """A file Beam opened, as a raw stream: a compressed one (e.g. ads.csv.gz) has read() but
  not readline(limit), which io.BufferedReader gives it."""

  def __init__(self, file):
    super().__init__()
    self._file = file

  def readable(self) -> bool:
    return True

  def readinto(self, buffer) -> int:
    data = self._file.read(len(buffer))
    buffer[:len(data)] = data
    return len(data)


def open_records(path: str, csv_format: Optional[features.CsvFormat] = None
                 ) -> Iterator[Record]:
  """read_records of a file (local or gs://, compressed or not, as Beam reads files)."""
  with _filesystems().open(path) as f:
    yield from read_records(io.BufferedReader(_Raw(f)), csv_format)


def data_records(path: str, csv_format: Optional[features.CsvFormat] = None
                 ) -> Iterator[Record]:
  """The records of a CSV file after its header (line 1, which check_headers reads); every
  record of a header-less one."""
  first = 2 if log_format(csv_format).has_header else 1
  return (record for record in open_records(path, csv_format) if record.line_number >= first)


def read_header(path: str, csv_format: Optional[features.CsvFormat] = None) -> List[str]:
  """The column names in a CSV's first line; [] for an empty file. For a header-less format,
  its declared names (the file's first line is data)."""
  csv_format = log_format(csv_format)
  first = next(open_records(path, csv_format), None)
  if first is None:
    return []
  if not csv_format.has_header:
    return list(csv_format.columns)
  if first.refusal:
    raise ValueError(f'{path}: line 1 (the header): {first.refusal}')
  return list(first.cells)


# The delimiters format_advice recognises in a file, by name.
_DELIMITER_NAMES = {',': 'comma', '\t': 'tab', ';': 'semicolon', '|': 'pipe'}
_SHOWN_CELLS = 4  # values of line 1 quoted in format_advice


def _split(text: str, delimiter: str) -> List[str]:
  try:
    return next(csv.reader([text], delimiter=delimiter), [])
  except csv.Error:
    return []


def _is_number(cell: str) -> bool:
  try:
    float(cell)
  except ValueError:
    return False
  return True


def _names_columns(cells: Sequence[str]) -> bool:
  """Whether a line names most of the columns features.py needs: a header, not data."""
  needed = features.csv_columns()
  return 2 * len([c for c in needed if c in cells]) > len(needed)


def _delimiter_name(delimiter: str) -> str:
  return _DELIMITER_NAMES.get(delimiter, repr(delimiter))


def format_advice(path: str, csv_format: Optional[features.CsvFormat] = None
                  ) -> Optional[str]:
  """What to declare as CSV_FORMAT in models/features.py when the file's first line shows
  another format than `csv_format` (default: the log's), in words; None when it does not.

  The delimiter is the one of _DELIMITER_NAMES (or the declared one) that splits line 1 into
  the most columns. Declared with a header, line 1 is data instead when it names none of
  features.py's columns and holds a number (names are not numbers); declared header-less, it
  is a header when it names most of them."""
  csv_format = log_format(csv_format)
  first = next(open_records(path, csv_format), None)
  if first is None or first.refusal:
    return None
  splits = {d: _split(first.text, d)
            for d in (csv_format.delimiter, *_DELIMITER_NAMES)}
  delimiter = max(splits, key=lambda d: len(splits[d]))  # the declared one first on a tie
  cells = splits[delimiter]
  if csv_format.has_header:
    headerless = (not set(cells) & set(features.csv_columns()) and
                  any(map(_is_number, cells)))
  else:
    headerless = not _names_columns(cells)
  if delimiter == csv_format.delimiter and headerless != csv_format.has_header:
    return None
  name = _delimiter_name(delimiter)
  seen = f'{name}-separated ({len(cells)} columns at {name}s'
  if delimiter != csv_format.delimiter:
    seen += (f', {len(splits[csv_format.delimiter])} at the declared '
             f'{_delimiter_name(csv_format.delimiter)}s')
  seen += ')'
  declared = [] if delimiter == ',' else [f'delimiter={delimiter!r}']
  if headerless:
    shown = ', '.join(cells[:_SHOWN_CELLS]) + (', ...' if len(cells) > _SHOWN_CELLS else '')
    seen += f' without a header (line 1 holds values: {shown})'
    declared.append(f'columns={_columns_advice(csv_format, len(cells))}')
  else:
    seen += ' with a header (line 1 names the columns)'
  return (f'{path} looks {seen}: declare it in models/features.py as '
          f'CSV_FORMAT = CsvFormat({", ".join(declared)})')


def _columns_advice(csv_format: features.CsvFormat, count: int) -> str:
  """The columns= of a header-less file with `count` columns."""
  if csv_format.columns and len(csv_format.columns) == count:
    return repr(tuple(csv_format.columns))
  if len(features.csv_columns()) == count:
    return (f"{tuple(features.csv_columns())!r} if the file's {count} columns are in "
            "features.py's order, else their names in file order")
  return f'(the names of the {count} columns in file order)'


def _file_columns(path: str, csv_format: features.CsvFormat, optional: Sequence[str]
                  ) -> List[str]:
  """A file's column names (check_headers); ValueError for an empty file, an unreadable
  header, or a header in a file declared header-less. A header-less file whose line 1 has
  as many cells as the declared columns without the `optional` ones lacks those."""
  columns = read_header(path, csv_format)
  if not columns:
    expected = ('a header row' if csv_format.has_header else 'rows of the columns')
    raise ValueError(f'{path}: the file is empty; expected {expected} '
                     f'{list(features.csv_columns())}.')
  if not csv_format.has_header:
    first = next(open_records(path, csv_format))
    if _names_columns(first.cells):
      raise ValueError(f'{path}: line 1 is a header, but models/features.py declares the file '
                       'header-less (CSV_FORMAT.columns). ' +
                       (format_advice(path, csv_format) or ''))
    kept = [c for c in columns if c not in optional]
    if len(kept) < len(columns) and len(first.cells) == len(kept):
      return kept
  return columns


def check_headers(csv_paths: Sequence[str], optional: Sequence[str] = (),
                  csv_format: Optional[features.CsvFormat] = None) -> List[str]:
  """Returns the column names shared by all files (a header-less format's declared names);
  raises ValueError on a bad header, saying what to declare where line 1 shows another
  format (format_advice).

  Columns named in `optional` (e.g. the label, for batch scoring) may be absent: from the
  header, or from every line of a header-less file (its line 1 then has that many fewer
  cells)."""
  csv_format = log_format(csv_format)
  header = _file_columns(csv_paths[0], csv_format, optional)
  missing = [c for c in features.csv_columns() if c not in header and c not in optional]
  if missing:
    where = ('header lacks' if csv_format.has_header else
             'models/features.py declares the file header-less, and CSV_FORMAT.columns lacks')
    advice = format_advice(csv_paths[0], csv_format)
    raise ValueError(f'{csv_paths[0]}: {where} required columns {missing}; '
                     f'expected {list(features.csv_columns())}, got {header}.' +
                     (f' {advice}.' if advice else ''))
  for path in csv_paths[1:]:
    if _file_columns(path, csv_format, optional) != header:
      raise ValueError(f'{path}: header differs from that of {csv_paths[0]}.')
  return header


# ------------------------------------------------------------------------------------ rows

def _set_value(feature: tf.train.Feature, dtype: str, value: Any) -> None:
  """Fills a feature of an example in place (a third of the cost of building a Feature
  and copying it in, per field of every row)."""
  if dtype == 'int':
    feature.int64_list.value.append(value)
  elif dtype == 'float':
    feature.float_list.value.append(value)
  else:
    feature.bytes_list.value.append(value.encode('utf-8') if isinstance(value, str) else value)


def csv_folder(csv_path: str) -> str:
  """The folder a CSV's image paths are relative to."""
  return _filesystems().split(csv_path)[0]


class RowParser:
  """A record's cells (in `header` order) -> tf.Example, or the reasons it is refused.

  An optional column the header lacks (check_headers) is left out of the example. When
  features.py has an IMAGE field, the image_path cell names a creative relative to the CSV's
  folder; the example gets its bytes and the image_path column is dropped. With
  `images=False` (statistics of the other fields: they need no creative) the image rule is
  not applied: the image_path cell is not read and the example has no image field. With
  `values=False` (the monitoring check, which measures such values as schema anomalies) a
  value outside its range or domain is kept; the cell must still parse as its type.
  `csv_format` (default: the log's) is the format the records were read in."""

  def __init__(self, header: Sequence[str], images: bool = True, values: bool = True,
               csv_format: Optional[features.CsvFormat] = None):
    self.num_columns = len(header)
    self._delimiter = log_format(csv_format).delimiter
    self._values = values
    self._image_feature = features.image_feature() if images else None
    self._image_index = (header.index(features.IMAGE_PATH_COLUMN)
                         if self._image_feature else None)
    # A refused row is named by its KEY fields (e.g. impression and ad id).
    self._key_indexes = [header.index(f.name) for f in features.with_role(features.KEY)
                         if f.name in header]
    self._fields = [(f, header.index(f.name))
                    for f in features.FEATURES if f.role != features.IMAGE and f.name in header]
    self._image_cache = cachetools.LRUCache(_IMAGE_CACHE_BYTES, getsizeof=_cached_size)

  def key(self, record: Record) -> str:
    """The row's KEY cells joined by '/' (as many as it has; '' for a log without KEY
    fields, whose rows the file and line name); for a line refused as not text, read from
    its escaped text."""
    cells = record.cells
    if record.refusal:
      cells = _split(record.text, self._delimiter)
    return '/'.join(cells[i] for i in self._key_indexes if i < len(cells))

  def _image(self, csv_path: str, cell: str) -> Tuple[Optional[bytes], Optional[str]]:
    """The creative a CSV file's cell names; cached by (file, cell), which spares the path
    arithmetic of a hit (it costs as much as parsing the row)."""
    key = (csv_path, cell)
    entry = self._image_cache.get(key)
    if entry is None:
      entry = load_image(_filesystems().join(csv_folder(csv_path), cell))
      if _cached_size(entry) <= self._image_cache.maxsize:
        self._image_cache[key] = entry
    return entry

  def parse(self, csv_path: str, record: Record
            ) -> Tuple[Optional[tf.train.Example], Optional[str]]:
    """(the row's tf.Example, None), or (None, why the row is refused)."""
    if record.refusal:
      return None, record.refusal
    cells = record.cells
    if len(cells) != self.num_columns:
      return None, f'expected {self.num_columns} columns, got {len(cells)}'
    example = tf.train.Example()
    feature_map = example.features.feature
    errors = []
    for feature, index in self._fields:
      value, error = parse_cell(feature, cells[index], self._values)
      if error:
        errors.append(error)
      else:
        _set_value(feature_map[feature.name], feature.dtype, value)
    if self._image_feature:
      cell = cells[self._image_index]
      if not cell:
        errors.append(f'{features.IMAGE_PATH_COLUMN}: required value is empty')
      elif not errors:  # a row refused already needs no creative read
        image, error = self._image(csv_path, cell)
        if error:
          errors.append(error)
        else:
          _set_value(feature_map[self._image_feature.name], self._image_feature.dtype, image)
    if errors:
      return None, '; '.join(errors)
    return example, None
