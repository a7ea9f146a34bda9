"""The one-hour Avazu sample as the pipeline reads it: all 8,999 rows (train.csv has a header,
dev.csv and test.csv have none), written comma-separated with the header; a seeded random
third held out and the rest in spans 1 and 2. Every row has the same hour, so the split is
random.

    python -m examples.avazu.convert --out DIR
"""
import os

import numpy as np

from examples import layout

SEED = 0


def convert(source: str, out: str) -> layout.Converted:
  header, *rows = layout.read_rows(os.path.join(source, 'train.csv'))
  rows += layout.read_rows(os.path.join(source, 'dev.csv'))
  rows += layout.read_rows(os.path.join(source, 'test.csv'))
  heldout = np.zeros(len(rows), bool)
  heldout[np.random.default_rng(SEED).permutation(len(rows))[:len(rows) // 3]] = True
  kept = [row for row, held in zip(rows, heldout) if not held]
  half = -(-len(kept) // 2)
  return layout.write(out, {1: kept[:half], 2: kept[half:]},
                      [row for row, held in zip(rows, heldout) if held], header)


if __name__ == '__main__':
  layout.main('avazu', convert)
