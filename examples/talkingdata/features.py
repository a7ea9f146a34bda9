"""The TalkingData AdTracking sample (../shared/data/talkingdata-sample) declared for this
pipeline: mobile ad clicks over four days, the label a conversion (the app was downloaded),
0.23 % positive. No image, no key.

examples/talkingdata/convert.py writes one span per day with `click_time` as unix seconds
(TIME) and the hour of day beside it; `attributed_time` is left out (it is set only for
converted clicks: it leaks the label). To run your pipeline on it, put everything below the
imports into models/features.py in place of the sample log's fields and run `make schema`;
benchmarks/real_logs.py does exactly that in a copy of the repository.
"""
from typing import Tuple

from models.features import CATEGORICAL, INTEGER, LABEL, TIME, Feature

FEATURES: Tuple[Feature, ...] = (
    Feature('click_time', TIME, 'int', 'When the ad was clicked, unix seconds (UTC).'),
    Feature('ip', CATEGORICAL, 'string', 'IP address of the click (integer code).'),
    Feature('app', CATEGORICAL, 'string', 'App advertised (integer code).', slice=True),
    Feature('device', CATEGORICAL, 'string', 'Device type (integer code).'),
    Feature('os', CATEGORICAL, 'string', 'OS version (integer code).'),
    Feature('channel', CATEGORICAL, 'string', 'Channel of the publisher (integer code).'),
    Feature('hour', INTEGER, 'int', 'Hour of day of the click (UTC, from click_time).',
            value_range=(0, 23)),
    Feature('is_attributed', LABEL, 'int', '1 if the app was downloaded after the click.',
            value_range=(0, 1)),
)
