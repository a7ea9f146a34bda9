"""The Criteo sample as the pipeline reads it: its 8,000 rows (train.csv, dev.csv, test.csv,
in that order; tab-separated, no header, as features.py's CSV_FORMAT declares) in file order,
the last third held out and the first two thirds in spans 1 and 2. The rows are in no time
order (the README), so the held-out third is a random sample in effect.

    python -m examples.criteo.convert --out DIR
"""
import os

from examples import layout

FILES = ('train.csv', 'dev.csv', 'test.csv')
DELIMITER = '\t'


def convert(source: str, out: str) -> layout.Converted:
  rows = [row for name in FILES
          for row in layout.read_rows(os.path.join(source, name), DELIMITER)]
  kept = len(rows) - -(-len(rows) // 3)  # 2,667 of 8,000 held out
  half = -(-kept // 2)
  return layout.write(out, {1: rows[:half], 2: rows[half:kept]}, rows[kept:],
                      delimiter=DELIMITER)


if __name__ == '__main__':
  layout.main('criteo', convert)
