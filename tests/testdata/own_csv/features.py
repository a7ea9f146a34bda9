"""The fields of an ad log of one's own, modelled on the public Avazu sample: no image, no ad id,
anonymised categoricals of integer codes kept as strings, an hour as YYMMDDHH.

This is what a user writes in models/features.py in place of the sample log's fields (the
domain constants and FEATURES after the Feature class). tests/test_own_csv.py puts everything
below the imports into a copy of the repository in exactly that place; the imports only make
the file importable on its own (tests/test_check_csv.py checks the real Avazu sample with it).
"""
from typing import Tuple

from models.features import CATEGORICAL, INTEGER, KEY, LABEL, NUMERIC, TIME, Feature

DEVICE_TYPES = ('0', '1', '4', '5')  # integer codes, declared strings: no order between them

FEATURES: Tuple[Feature, ...] = (
    Feature('id', KEY, 'string', 'Impression id (up to 20 digits, so a string).', row_id=True),
    Feature('click', LABEL, 'int', '1 if the impression was clicked.', value_range=(0, 1)),
    Feature('hour', TIME, 'int', 'Hour of the impression as YYMMDDHH (UTC).'),
    Feature('C1', CATEGORICAL, 'string', 'Anonymised categorical (integer codes).',
            drift_threshold=0.1),
    Feature('banner_pos', CATEGORICAL, 'string', 'Position of the banner (integer codes).',
            slice=True),
    Feature('site_category', CATEGORICAL, 'string', 'Category of the site (hashed).'),
    Feature('device_type', CATEGORICAL, 'string', 'Device type (integer codes).',
            domain=DEVICE_TYPES, drift_threshold=0.1, slice=True),
    Feature('C15', NUMERIC, 'int', 'Banner width in pixels.', value_range=(1, 2000),
            log_scale=True),
    Feature('C16', NUMERIC, 'int', 'Banner height in pixels.', value_range=(1, 2000),
            log_scale=True),
    Feature('C18', INTEGER, 'int', 'Anonymised small integer.', value_range=(0, 3)),
)
