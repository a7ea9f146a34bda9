"""The one-hour Avazu sample (../shared/data/avazu-sample) declared for this pipeline: mobile ad
impressions with an impression id, anonymised categoricals (hashes and integer codes, declared
strings: codes have no order), no image. Every row has the same hour (14102100), so there is
no TIME field: the eval split is a random sample of rows, and `hour` is not a feature.

examples/avazu/convert.py writes its three files as comma-separated spans with a header (dev
and test have none). To run your pipeline on it, put everything below the imports into
models/features.py in place of the sample log's fields and run `make schema`;
benchmarks/real_logs.py does exactly that in a copy of the repository.
"""
from typing import Tuple

from models.features import CATEGORICAL, KEY, LABEL, Feature

# Hashed ids and integer-coded fields alike: a vocabulary each (unseen values share OOV ids).
CODED = ('C1', 'banner_pos', 'site_id', 'site_domain', 'site_category', 'app_id', 'app_domain',
         'app_category', 'device_id', 'device_ip', 'device_model', 'device_type',
         'device_conn_type', 'C14', 'C15', 'C16', 'C17', 'C18', 'C19', 'C20', 'C21')
SLICED = ('banner_pos', 'device_type')

FEATURES: Tuple[Feature, ...] = (
    (Feature('id', KEY, 'string', 'Impression id (up to 20 digits, so a string).', row_id=True),
     Feature('click', LABEL, 'int', '1 if the impression was clicked.', value_range=(0, 1))) +
    tuple(Feature(name, CATEGORICAL, 'string', 'Anonymised categorical (hash or integer code).',
                  slice=name in SLICED) for name in CODED))
