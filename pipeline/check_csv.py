"""Checks a CSV against models/features.py before a run and says what is wrong, in words.

    python -m pipeline.check_csv data/span-1/ads.csv [--rows 10000]

Reads the header and the first --rows rows as ImageCsvExampleGen does (its header check and
cell parser) and reports:
  - columns features.py needs that the header lacks (the run would stop at once), and the
    columns features.py does not know (the pipeline ignores them);
  - rows ExampleGen would reject: a wrong number of columns, an empty required field, a number
    that does not parse, an image file that does not exist (when features.py has an image);
  - values outside a field's domain or range (the schema flags them and DataGate stops the run);
  - a TIME field with one value only (the out-of-time split would leave nothing to train on).
Exits 1 when it found a problem, else 0. The path may be local or gs://.
"""
import argparse
import collections
import csv
import dataclasses
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from apache_beam.io.filesystems import FileSystems

from components.image_csv_example_gen import executor
from models import features
from pipeline.config import PipelineConfig

DEFAULT_ROWS = 10000
_SHOWN = 3  # ignored columns (x2) and distinct examples named per finding
REJECTS = 'ExampleGen rejects the row'
STOPS = 'the schema flags it and DataGate stops the run'


@dataclasses.dataclass
class Report:
  csv_path: str
  rows_checked: int = 0
  whole_file: bool = False  # every row was checked, not only the first --rows
  columns: str = ''
  # finding -> [(line number, detail)] of the rows that have it, in the order found
  row_problems: Dict[str, List[Tuple[int, str]]] = dataclasses.field(
      default_factory=lambda: collections.defaultdict(list))
  rejected_lines: set = dataclasses.field(default_factory=set)
  file_problems: List[str] = dataclasses.field(default_factory=list)
  notes: List[str] = dataclasses.field(default_factory=list)

  def add(self, finding: str, consequence: str, line: int, detail: str) -> None:
    self.row_problems[f'{finding} ({consequence})'].append((line, detail))
    if consequence == REJECTS:
      self.rejected_lines.add(line)

  @property
  def problems(self) -> List[str]:
    """Every problem found, one line each."""
    found = []
    for finding, where in self.row_problems.items():
      examples = {}
      for line, detail in where:
        if detail not in examples and len(examples) < _SHOWN:
          examples[detail] = line
      rows = f'{len(where)} row' + ('s' if len(where) > 1 else '')
      found.append(f'{finding}: {rows}, e.g. ' +
                   '; '.join(f'line {line}: {detail}' for detail, line in examples.items()))
    return found + self.file_problems

  def text(self, max_rejected_fraction: float) -> str:
    if not self.columns:
      lines = [f'Checked {self.csv_path} against models/features.py.']
    else:
      extent = 'every row' if self.whole_file else f'the first {self.rows_checked} rows'
      lines = [f'Checked {self.csv_path} against models/features.py: the header and {extent}.',
               self.columns]
    lines += [f'  PROBLEM {problem}' for problem in self.problems]
    if self.rejected_lines:
      share = len(self.rejected_lines) / self.rows_checked
      verdict = ('more than' if share > max_rejected_fraction else 'within')
      lines.append(f'  ExampleGen would reject {len(self.rejected_lines)} of '
                   f'{self.rows_checked} rows ({share:.1%}), {verdict} the '
                   f'{max_rejected_fraction:.0%} a run tolerates (max_rejected_fraction).')
    lines += [f'  note: {note}' for note in self.notes]
    if self.problems:
      lines.append(f'Result: {len(self.problems)} problem(s). Fix the CSV, or models/features.py '
                   'and then `make schema`.')
    else:
      lines.append('Result: no problems found.')
    return '\n'.join(line for line in lines if line)


def _check_value(report: Report, feature: features.Feature, value, line: int) -> None:
  """Domain and range, as the schema generated from features.py declares them."""
  if feature.domain and value not in feature.domain:
    report.add(f"{feature.name}: value outside the field's domain", STOPS, line, repr(value))
  if feature.value_range and not feature.value_range[0] <= value <= feature.value_range[1]:
    low, high = feature.value_range
    report.add(f'{feature.name}: value outside [{low}, {high}]', STOPS, line, repr(value))


def _check_row(report: Report, header: Sequence[str], cells: List[str], line: int,
               folder: str) -> Dict[str, object]:
  """Checks one row; returns its parsed values."""
  if len(cells) != len(header):
    report.add('wrong number of columns', REJECTS, line,
               f'{len(cells)} columns, the header has {len(header)}')
    return {}
  values = {}
  for feature in features.FEATURES:
    if feature.role == features.IMAGE:
      path = cells[header.index(features.IMAGE_PATH_COLUMN)]
      if not path:
        report.add(f'{features.IMAGE_PATH_COLUMN}: empty', REJECTS, line, 'no image path')
      elif not FileSystems.exists(FileSystems.join(folder, path)):
        report.add(f'{features.IMAGE_PATH_COLUMN}: image file missing', REJECTS, line,
                   FileSystems.join(folder, path))
      continue
    value, error = executor.parse_value(feature, cells[header.index(feature.name)])
    if error:
      report.add(f'{feature.name}: unusable value', REJECTS, line, error.split(': ', 1)[-1])
    else:
      values[feature.name] = value
      _check_value(report, feature, value, line)
  return values


def _check_time(report: Report, times: set) -> None:
  time = features.time_feature()
  if time is None or len(times) != 1:
    return
  text = (f'{time.name} (TIME) has one value, {next(iter(times))}, in every row checked: the '
          'out-of-time split puts every row of the latest span in eval and none in train')
  if report.whole_file:
    report.file_problems.append(text)
  else:
    report.notes.append(text + ', if the rest of the file is the same')


def check(csv_path: str, rows: int = DEFAULT_ROWS) -> Report:
  report = Report(csv_path)
  if not FileSystems.exists(csv_path):
    report.file_problems.append(f'{csv_path} does not exist')
    return report
  try:
    header = executor.check_headers([csv_path])
  except ValueError as e:  # a UnicodeDecodeError too
    report.file_problems.append(str(e))
    return report
  known = set(features.csv_columns())
  ignored = [c for c in header if c not in known]
  shown = ', '.join(ignored[:2 * _SHOWN]) + (', ...' if len(ignored) > 2 * _SHOWN else '')
  report.columns = (f'Columns: all {len(known)} that features.py defines are present' +
                    (f'; {len(ignored)} it does not define are ignored: {shown}'
                     if ignored else '') + '.')
  folder = FileSystems.split(csv_path)[0]
  time = features.time_feature()
  times = set()
  report.whole_file = True
  with FileSystems.open(csv_path) as f:
    f.readline()  # the header
    for number, raw in enumerate(f, start=2):
      if report.rows_checked >= rows:
        report.whole_file = False
        break
      try:
        text = raw.decode('utf-8')
      except UnicodeDecodeError as e:
        report.file_problems.append(f'line {number} is not UTF-8 text ({e.reason}): ExampleGen '
                                    'reads UTF-8 only and would stop; rows after it unchecked')
        break
      cells = next(csv.reader([text.rstrip('\r\n')]), [])
      if not cells:  # ExampleGen skips blank lines too
        continue
      report.rows_checked += 1
      values = _check_row(report, header, cells, number, folder)
      if time is not None and time.name in values:
        times.add(values[time.name])
  if not report.rows_checked:
    report.file_problems.append('the file has a header and no rows')
  _check_time(report, times)
  return report


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('csv', help='the CSV to check, e.g. data/span-1/ads.csv')
  parser.add_argument('--rows', type=int, default=DEFAULT_ROWS,
                      help=f'check this many rows from the top (default {DEFAULT_ROWS})')
  args = parser.parse_args(argv)
  if args.rows < 1:
    parser.error('--rows must be at least 1')
  report = check(args.csv, args.rows)
  print(report.text(PipelineConfig().max_rejected_fraction))
  return 1 if report.problems else 0


if __name__ == '__main__':
  sys.exit(main())
