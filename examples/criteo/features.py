"""The Criteo display-ads sample (../shared/data/criteo-sample) declared for this pipeline:
tab-separated, no header row, no key, no time (the eval split is a random sample of rows),
no image; 13 integer counts (often empty, some negative) and 26 hashed categoricals (often
empty, several mostly singletons).

To run your pipeline on it, put everything below the imports into models/features.py in
place of the sample log's fields (the domain constants and FEATURES after the Feature class)
and run `make schema`; benchmarks/real_logs.py does exactly that in a copy of the repository.
"""
from typing import Tuple

from models.features import CATEGORICAL, LABEL, NUMERIC, CsvFormat, Feature

COUNTS = tuple(f'I{i}' for i in range(1, 14))
HASHES = tuple(f'C{i}' for i in range(1, 27))
MISSING = '<missing>'  # an empty hashed field: a value of its own, not an unseen one

CSV_FORMAT = CsvFormat(delimiter='\t', columns=('label',) + COUNTS + HASHES)

FEATURES: Tuple[Feature, ...] = (
    (Feature('label', LABEL, 'int', '1 if the ad was clicked.', value_range=(0, 1)),) +
    tuple(Feature(name, NUMERIC, 'float', 'Anonymised count (may be empty or negative).',
                  required=False, log_scale=True) for name in COUNTS) +
    tuple(Feature(name, CATEGORICAL, 'string', 'Anonymised categorical, 32-bit hash.',
                  required=False, default=MISSING) for name in HASHES))
