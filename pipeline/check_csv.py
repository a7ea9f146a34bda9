"""Checks a CSV against models/features.py before a run and says what is wrong, in words.

    python -m pipeline.check_csv data/span-1/ads.csv [--rows 10000]

Reads the header and the first --rows rows as ImageCsvExampleGen does, in the log's format
(features.CSV_FORMAT) and by the same rules (models/rows.py: the same lines, with the same
reasons), and reports:
  - a file whose first line shows another format than features.py declares: another common
    delimiter (tab, ';', '|', ',') or no header (line 1 holds values, not names) or a header
    where none is declared, with the CSV_FORMAT to declare (nothing else is checked then);
  - columns features.py needs that the header lacks (the run would stop at once), and the
    columns features.py does not know (the pipeline ignores them);
  - rows ExampleGen would reject, by line number and reason: a line that is not UTF-8 text or
    holds a NUL byte, a wrong number of columns, an empty required field, a number that does
    not parse, is not finite or lies outside its range, a value outside a closed domain, a
    label other than 0/1, a creative that is missing or that the model cannot decode;
  - a TIME field with one value only (the out-of-time split would leave nothing to train on);
  - the split sizes the rows checked would get if this file were the latest span (the cut
    points ExampleGen takes from the times' quantiles): an empty validation or eval split is a
    problem (the run would stop), one with fewer than MIN_SPLIT_CLICKS clicks a note (early
    stopping, calibration and the gate would rest on a handful of clicks).
Exits 1 when it found a problem, else 0; never crashes on what the file holds. The path may
be local or gs://.
"""
import argparse
import collections
import dataclasses
import re
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from apache_beam.io.filesystems import FileSystems

from components.image_csv_example_gen import splits
from models import features
from models import rows as row_rules
from pipeline.config import PipelineConfig

DEFAULT_ROWS = 10000
_SHOWN = 3  # ignored columns (x2) and distinct examples named per finding
REJECTS = 'ExampleGen rejects the row'
MIN_SPLIT_CLICKS = 20


@dataclasses.dataclass
class Report:
  csv_path: str
  has_header: bool = True  # the declared format's: the file's line 1 names its columns
  rows_checked: int = 0
  whole_file: bool = False  # every row was checked, not only the first --rows
  columns: str = ''
  # finding -> [(line number, detail)] of the rows that have it, in the order found
  row_problems: Dict[str, List[Tuple[int, str]]] = dataclasses.field(
      default_factory=lambda: collections.defaultdict(list))
  rejected_lines: set = dataclasses.field(default_factory=set)
  file_problems: List[str] = dataclasses.field(default_factory=list)
  notes: List[str] = dataclasses.field(default_factory=list)

  def reject(self, line: int, reason: str) -> None:
    """A row ExampleGen rejects, filed under the kind of its (first) reason."""
    self.rejected_lines.add(line)
    kind = _kind(reason)
    detail = reason[len(kind) + 2:] if reason.startswith(kind + ': ') else reason
    self.row_problems[f'{kind} ({REJECTS})'].append((line, detail))

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
      read = f'the header and {extent}' if self.has_header else extent
      lines = [f'Checked {self.csv_path} against models/features.py: {read}.', self.columns]
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


def _kind(reason: str) -> str:
  """What a rejection reason is about: its field (the words before ': '), else the reason with
  its numbers left out ('expected N columns, got N')."""
  subject, _, detail = reason.partition(': ')
  return subject if detail else re.sub(r'(?<![\w-])\d[\d,]*', 'N', reason)


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


def _check_splits(report: Report, times_and_labels: List[Tuple[int, int]],
                  config: splits.SplitConfig) -> None:
  """The out-of-time split of the rows checked, as if this file were the latest span."""
  times = sorted(time for time, _ in times_and_labels)
  if features.time_feature() is None or len(set(times)) < 2:
    return
  last = len(times) - 1
  quantiles = [times[round(last * i / (splits.QUANTILES - 1))] for i in range(splits.QUANTILES)]
  cuts = splits.time_cuts(quantiles, config)
  sizes = {name: [0, 0] for name in (splits.TRAIN, splits.VALIDATION, splits.EVAL)}
  for time, label in times_and_labels:
    size = sizes[splits.assign(0, time, 0, cuts)]
    size[0] += 1
    size[1] += label
  report.notes.append('as the latest span, the rows checked would split into ' + ', '.join(
      f'{name} {rows} rows ({clicks} clicks)' for name, (rows, clicks) in sizes.items()))
  for name in (splits.VALIDATION, splits.EVAL):
    rows, clicks = sizes[name]
    if not rows:
      text = f'the {name} split would be empty: the run stops before training'
      if report.whole_file:
        report.file_problems.append(text)
      else:
        report.notes.append(text + ', if the rest of the file is the same')
    elif clicks < MIN_SPLIT_CLICKS:
      report.notes.append(
          f'the {name} split would hold {clicks} clicks (fewer than {MIN_SPLIT_CLICKS}): '
          'early stopping, calibration and the gate would rest on them; more rows a month '
          'or a larger split.validation_fraction / split.eval_fraction help')


def check(csv_path: str, rows: int = DEFAULT_ROWS) -> Report:
  report = Report(csv_path, has_header=features.CSV_FORMAT.has_header)
  try:
    if not FileSystems.exists(csv_path):
      report.file_problems.append(f'{csv_path} does not exist')
      return report
    advice = row_rules.format_advice(csv_path)
    if advice:  # every row would be rejected, or the header read as a row
      report.file_problems.append(advice)
      return report
    header = row_rules.check_headers([csv_path])
    _check_rows(report, header, rows)
  except (ValueError, OSError) as e:  # a bad header; a folder or unreadable file
    report.file_problems.append(str(e) or type(e).__name__)
  return report


def _check_rows(report: Report, header: Sequence[str], rows: int) -> None:
  known = set(features.csv_columns())
  ignored = [c for c in header if c not in known]
  shown = ', '.join(ignored[:2 * _SHOWN]) + (', ...' if len(ignored) > 2 * _SHOWN else '')
  where = ('present' if report.has_header else
           'declared (no header: CSV_FORMAT.columns in features.py)')
  report.columns = (f'Columns: all {len(known)} that features.py defines are {where}' +
                    (f'; {len(ignored)} it does not define are ignored: {shown}'
                     if ignored else '') + '.')
  parser = row_rules.RowParser(header)
  time, label = features.time_feature(), features.label_feature()
  times_and_labels = []
  report.whole_file = True
  for record in row_rules.data_records(report.csv_path):
    if report.rows_checked >= rows:
      report.whole_file = False
      break
    report.rows_checked += 1
    example, reason = parser.parse(report.csv_path, record)
    if reason:
      report.reject(record.line_number, reason)
    elif time is not None and time.name in header:
      values = example.features.feature
      times_and_labels.append((values[time.name].int64_list.value[0],
                               values[label.name].int64_list.value[0]))
  if not report.rows_checked:
    report.file_problems.append('the file has a header and no rows' if report.has_header
                                else 'the file has no rows')
  _check_time(report, {t for t, _ in times_and_labels})
  _check_splits(report, times_and_labels, PipelineConfig().split)


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
