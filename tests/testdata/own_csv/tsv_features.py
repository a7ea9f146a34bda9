"""A second log of one's own, as bare as real logs come: tab-separated, without a header row,
a key or a time. Modelled on the Avazu sample's columns, like features.py beside it.

Its rows are named by file and line (rejected rows, batch scores), and its eval split is a
random sample of rows. tests/test_own_csv.py puts everything below the imports into a copy of
the repository's models/features.py, as for features.py beside it; tests/test_rows.py,
tests/test_check_csv.py and tests/test_batch_score.py swap it in where they read such files.
"""
from typing import Tuple

from models.features import CATEGORICAL, INTEGER, LABEL, NUMERIC, CsvFormat, Feature

DEVICE_TYPES = ('0', '1', '4', '5')  # integer codes, declared strings: no order between them

# site_id is a column of the file that no field reads: the pipeline ignores it.
CSV_FORMAT = CsvFormat(delimiter='\t', columns=(
    'click', 'C1', 'banner_pos', 'site_id', 'site_category', 'device_type', 'C15', 'C16',
    'C18'))

FEATURES: Tuple[Feature, ...] = (
    Feature('click', LABEL, 'int', '1 if the impression was clicked.', value_range=(0, 1)),
    Feature('C1', CATEGORICAL, 'string', 'Anonymised categorical (integer codes).',
            drift_threshold=0.1),
    Feature('banner_pos', CATEGORICAL, 'string', 'Position of the banner (integer codes).',
            slice=True),
    Feature('site_category', CATEGORICAL, 'string', 'Category of the site (hashed).'),
    Feature('device_type', CATEGORICAL, 'string', 'Device type (integer codes).',
            domain=DEVICE_TYPES),
    Feature('C15', NUMERIC, 'int', 'Banner width in pixels.', value_range=(1, 2000),
            log_scale=True),
    Feature('C16', NUMERIC, 'int', 'Banner height in pixels.', value_range=(1, 2000),
            log_scale=True),
    Feature('C18', INTEGER, 'int', 'Anonymised small integer.', value_range=(0, 3)),
)
