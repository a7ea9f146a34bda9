"""What a converted real log is: a data root of span folders the pipeline reads
(`<out>/data/span-N/ads.csv`, models/data_layout.py) and a held-out file in the same format
that no run sees (`<out>/heldout.csv`), written by examples/<log>/convert.py, and the command
line those converters share (`python -m examples.<log>.convert --out DIR`).
"""
import argparse
import csv
import dataclasses
import os
from typing import Callable, Dict, List, Optional, Sequence

from models import data_layout

DATA = 'data'
HELDOUT = 'heldout.csv'
# The real logs' raw files (shared beside the repository, each with a README).
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           '..', 'shared', 'data')


@dataclasses.dataclass(frozen=True)
class Converted:
  data_root: str
  heldout: str
  spans: List[int]


def _write(path: str, header: Optional[Sequence[str]], rows: Sequence[Sequence[str]],
           delimiter: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f, delimiter=delimiter, lineterminator='\n')
    if header is not None:
      writer.writerow(header)
    writer.writerows(rows)


def write(out: str, spans: Dict[int, Sequence[Sequence[str]]],
          heldout: Sequence[Sequence[str]], header: Optional[Sequence[str]] = None,
          delimiter: str = ',') -> Converted:
  """Each span's rows to <out>/data/span-N/ads.csv and the held-out rows to <out>/heldout.csv,
  all with the same delimiter and header (None: header-less, as the log's features.py
  declares)."""
  data_root = os.path.join(out, DATA)
  for span, rows in spans.items():
    _write(data_layout.ads_csv(data_root, span), header, rows, delimiter)
  heldout_path = os.path.join(out, HELDOUT)
  _write(heldout_path, header, heldout, delimiter)
  return Converted(data_root, heldout_path, sorted(spans))


def read_rows(path: str, delimiter: str = ',') -> List[List[str]]:
  with open(path, newline='') as f:
    return [row for row in csv.reader(f, delimiter=delimiter) if row]


def main(name: str, convert: Callable[[str, str], Converted], argv=None) -> None:
  """`python -m examples.<name>.convert --out DIR [--source DIR]`."""
  parser = argparse.ArgumentParser(description=f'Converts the {name} sample for the pipeline: '
                                   f'DIR/{DATA}/span-N/ads.csv and DIR/{HELDOUT}.')
  parser.add_argument('--out', required=True)
  parser.add_argument('--source', default=os.path.join(SHARED_DATA, f'{name}-sample'))
  args = parser.parse_args(argv)
  converted = convert(args.source, args.out)
  print(f'{name}: spans {converted.spans} under {converted.data_root}; held out: '
        f'{converted.heldout}')
