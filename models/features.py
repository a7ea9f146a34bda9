"""The one definition of every field of an ad impression: edit this file to bring your own log.

Everything else derives from FEATURES: the curated schema (`make schema`), the ExampleGen
parser (CSV types, defaults, the image join), the time-based eval split, preprocessing_fn, the
Keras model inputs, the serving signatures, the client's request validation, the TFMA slices,
the run summary and the monitoring check's skew and drift thresholds (monitoring/). Change a
field here, run `make schema`, and the rest follows; a test fails if the schema and this file
disagree.

CSV_FORMAT says how the log's files are written: the delimiter (',' by default) and, for a
file without a header row, its column names in file order.

Only the sample-data generator (datagen/) and its oracle are tied to the fields below.
"""
import dataclasses
import math
from typing import Optional, Sequence, Tuple

# Roles: what the pipeline does with a field.
KEY = 'key'  # identifies a row/ad; carried along, never a model input
TIME = 'time'  # impression time (int, e.g. unix seconds): orders rows for the eval split
CATEGORICAL = 'categorical'  # string -> vocabulary with OOV buckets -> embedding
INTEGER = 'integer'  # small integer range -> one id per value -> embedding
NUMERIC = 'numeric'  # float -> log/z-score + bucketized id
IMAGE = 'image'  # creative bytes (rows.IMAGE_FORMATS) -> decoded, resized, scaled in the graph
LABEL = 'label'  # 0/1 click; exactly one field has this role
DERIVED = 'derived'  # written by ExampleGen, not read from the CSV, never a model input

IMAGE_SIZE = 32  # side in pixels the transform graph resizes creatives to


def is_missing(value) -> bool:
  """Whether a value is NaN: the missing value of a field with a missing indicator (the
  default of an optional NUMERIC float field declared without one)."""
  return isinstance(value, float) and math.isnan(value)


@dataclasses.dataclass(frozen=True)
class CsvFormat:
  """How the log's CSV files are written: its delimiter, and whether line 1 is a header.

  `columns` is None for a file whose first line names its columns (any order; unknown
  columns are ignored). A header-less file declares its column names in file order instead,
  every field's name among them (and IMAGE_PATH_COLUMN for an IMAGE field); a name
  features.py does not define marks a column that is ignored. Every reader of the log
  (ExampleGen, DataGate, batch scoring, check_csv, monitoring's labelled month) takes the
  format from CSV_FORMAT below; files the pipeline writes itself (rejected rows, batch scores,
  captured traffic) are comma-separated with a header whatever the log's format."""
  delimiter: str = ','
  columns: Optional[Tuple[str, ...]] = None

  def __post_init__(self):
    if len(self.delimiter) != 1 or self.delimiter in '"\r\n':
      raise ValueError(f'features.py: CSV_FORMAT: the delimiter must be one character other '
                       f'than a quote or a line break, e.g. "\\t"; got {self.delimiter!r}.')
    if self.columns is not None:
      if isinstance(self.columns, str) or not self.columns:
        raise ValueError('features.py: CSV_FORMAT: columns names a header-less file\'s '
                         "columns in file order, as a tuple of names, e.g. ('id', 'click').")
      repeated = sorted({c for c in self.columns if self.columns.count(c) > 1})
      if repeated:
        raise ValueError(f'features.py: CSV_FORMAT: columns names {repeated} more than once.')

  @property
  def has_header(self) -> bool:
    return self.columns is None


# The log's CSV format: a comma-separated file with a header row. For a tab-separated log
# without a header, e.g.:
#   CSV_FORMAT = CsvFormat(delimiter='\t', columns=('click', 'C1', 'banner_pos', ...))
CSV_FORMAT = CsvFormat()


@dataclasses.dataclass(frozen=True)
class Feature:
  """One field of the log, what the pipeline does with it (role) and the rules its values obey.

  log_scale (NUMERIC): the model sees sign(x) * log1p(|x|) before z-scoring and bucketizing
  (models/preprocessing.log_scale): log1p for values >= 0, and a negative value keeps its sign
  and order rather than clamping to 0. To refuse negative values instead, declare a
  value_range from 0: the row rules then reject such a row by name."""
  name: str
  role: str
  dtype: str  # 'string' | 'int' | 'float' | 'bytes'
  description: str
  # At serving and in the log: an optional field's missing value is its `default`; an
  # optional NUMERIC 'float' field declared without one gets a missing indicator.
  required: bool = True
  default: object = None
  domain: Tuple[str, ...] = ()  # closed string domain enforced by the schema
  value_range: Optional[Tuple[float, float]] = None  # inclusive
  log_scale: bool = False  # NUMERIC: sign(x) * log1p(|x|) before z-scoring (see above)
  drift_threshold: Optional[float] = None  # L-infinity bound between consecutive spans
  # Training/serving skew bound, checked on captured traffic (monitoring/): L-infinity over
  # value frequencies for a CATEGORICAL field, Jensen-Shannon divergence for a numeric one.
  skew_threshold: Optional[float] = None
  slice: bool = False  # the Evaluator reports metrics per value of this field
  row_id: bool = False  # KEY: names one impression (joins the oracle's ground truth)
  cohort_key: bool = False  # KEY: the ad whose first appearance makes it 'new'

  def __post_init__(self):
    if self.role == CATEGORICAL and self.default == '':
      # tft.vocabulary leaves empty strings out, so every row missing this field would fall
      # into the OOV buckets beside unseen values instead of having an embedding of its own.
      raise ValueError(
          f"features.py: {self.name}: a CATEGORICAL default of '' is dropped from the "
          "vocabulary; declare a visible value instead, e.g. default='<missing>'.")
    if self.required and self.default is not None:
      raise ValueError(
          f'features.py: {self.name}: a required field never uses its default '
          f'{self.default!r}; declare required=False to fill it in for a missing value, or '
          'drop the default.')
    if not self.required and (self.default is None or is_missing(self.default)):
      if not (self.role == NUMERIC and self.dtype == 'float'):
        raise ValueError(
            f'features.py: {self.name}: an optional {self.role} {self.dtype!r} field needs a '
            'default, the value a missing one takes; only an optional NUMERIC field of dtype '
            "'float' may go without one (it gets a missing indicator): declare dtype 'float' "
            'and no default to get a missing indicator, or a default.')
      # A missing value is NaN, in the rows ExampleGen writes and in requests: see
      # missing_indicator.
      object.__setattr__(self, 'default', math.nan)

  @property
  def missing_indicator(self) -> bool:
    """An optional NUMERIC float field declared without a default: a missing value is
    information. Its default is NaN: ExampleGen writes it for an empty cell and the
    serving client for a request without the field. The Transform graph gives the model the
    field's training mean in its place and a 0/1 input (preprocessing.missing_name) that is 1
    where the value was missing; its z-score and quantile buckets come from the values
    observed."""
    return self.role == NUMERIC and not self.required and is_missing(self.default)


CATEGORIES = ('apparel', 'automotive', 'beauty', 'electronics', 'finance', 'food',
              'gaming', 'health', 'home', 'travel')
CREATIVE_FORMATS = ('banner_728x90', 'rectangle_300x250', 'skyscraper_160x600',
                    'square_250x250', 'mobile_320x50')
PLACEMENTS = ('feed', 'sidebar', 'header', 'interstitial', 'search')
DEVICES = ('mobile', 'desktop', 'tablet')
COUNTRIES = ('US', 'GB', 'DE', 'FR', 'ES', 'IT', 'BR', 'IN', 'JP', 'CA')

FEATURES: Tuple[Feature, ...] = (
    Feature('impression_id', KEY, 'string', 'Unique id of the impression.', required=False,
            default='', row_id=True),
    Feature('ad_id', KEY, 'string', 'Ad shown; names its creative image.', cohort_key=True),
    Feature('campaign_id', KEY, 'string', 'Campaign of the ad.', required=False, default=''),
    Feature('impression_time', TIME, 'int', 'When the ad was shown, unix seconds (UTC).',
            required=False, default=0),
    Feature('advertiser', CATEGORICAL, 'string', 'Advertiser account; new ones appear monthly.',
            drift_threshold=0.1, skew_threshold=0.1),
    Feature('category', CATEGORICAL, 'string', 'Vertical of the advertised product.',
            domain=CATEGORIES, drift_threshold=0.1, skew_threshold=0.1, slice=True),
    Feature('creative_format', CATEGORICAL, 'string', 'IAB creative format and size.',
            domain=CREATIVE_FORMATS, skew_threshold=0.1),
    Feature('placement', CATEGORICAL, 'string', 'Where on the page the ad was shown.',
            domain=PLACEMENTS, drift_threshold=0.1, skew_threshold=0.1, slice=True),
    Feature('device', CATEGORICAL, 'string', 'Device class of the viewer.', domain=DEVICES,
            drift_threshold=0.1, skew_threshold=0.1, slice=True),
    Feature('country', CATEGORICAL, 'string', 'ISO country of the viewer.', domain=COUNTRIES,
            skew_threshold=0.1),
    Feature('hour', INTEGER, 'int', 'Hour of day of the impression (UTC).', required=False,
            default=12, value_range=(0, 23), skew_threshold=0.1),
    Feature('day_of_week', INTEGER, 'int', 'Day of week, 0 = Monday.', required=False,
            default=0, value_range=(0, 6), skew_threshold=0.1),
    Feature('bid_price', NUMERIC, 'float', 'Winning bid, USD CPM.', value_range=(0.01, 50.0),
            log_scale=True, skew_threshold=0.1),
    Feature('headline_length', NUMERIC, 'int', 'Characters in the headline.', required=False,
            default=40, value_range=(1, 150), skew_threshold=0.1),
    Feature('image', IMAGE, 'bytes', 'Creative image bytes (JPEG, PNG, GIF or BMP).'),
    Feature('clicked', LABEL, 'int', '1 if the impression was clicked.', value_range=(0, 1)),
)

# In the CSV the image is a path relative to the span folder; ExampleGen swaps in its bytes.
IMAGE_PATH_COLUMN = 'image_path'
# Derived by ExampleGen when the log has a TIME field and a cohort_key field: whether the
# row's ad was first seen in the evaluated period (the image tower exists for those).
COHORT_NEW, COHORT_ESTABLISHED = 'new', 'established'


def with_role(*roles: str) -> Sequence[Feature]:
  return [f for f in FEATURES if f.role in roles]


def _one(role: str, **flag) -> Optional[Feature]:
  found = [f for f in with_role(role) if all(getattr(f, k) == v for k, v in flag.items())]
  if len(found) > 1:
    raise ValueError(f'features.py: more than one {role} field {[f.name for f in found]}')
  return found[0] if found else None


def label_feature() -> Feature:
  label = _one(LABEL)
  if label is None:
    raise ValueError('features.py: no field has the role LABEL')
  return label


def image_feature() -> Optional[Feature]:
  """The creative image field, or None for a log without images."""
  return _one(IMAGE)


def time_feature() -> Optional[Feature]:
  """The impression time, or None: then the eval split is a random sample of rows."""
  return _one(TIME)


def row_id_feature() -> Optional[Feature]:
  return _one(KEY, row_id=True)


def cohort_key_feature() -> Optional[Feature]:
  return _one(KEY, cohort_key=True)


def cohort_feature() -> Optional[Feature]:
  """The derived new/established field, when the log can tell them apart."""
  if time_feature() is None or cohort_key_feature() is None:
    return None
  return Feature('cohort', DERIVED, 'string',
                 f'{COHORT_NEW} if the {cohort_key_feature().name} was first seen in the '
                 'evaluated period, else established (derived by ExampleGen).',
                 domain=(COHORT_NEW, COHORT_ESTABLISHED), slice=True)


def example_features() -> Sequence[Feature]:
  """Every field of a tf.Example ExampleGen writes: the CSV's fields plus derived ones."""
  cohort = cohort_feature()
  return list(FEATURES) + ([cohort] if cohort else [])


def model_features() -> Sequence[Feature]:
  """Fields the model reads: everything but keys, time, derived fields and the label."""
  return with_role(CATEGORICAL, INTEGER, NUMERIC, IMAGE)


def serving_features() -> Sequence[Feature]:
  """Fields a prediction request carries (keys too, so responses can be traced)."""
  return [f for f in FEATURES if f.role != LABEL]


def skew_features() -> Sequence[Feature]:
  """Fields whose serving traffic is compared with the training data (skew_threshold)."""
  return [f for f in FEATURES if f.skew_threshold is not None]


def slice_features() -> Sequence[str]:
  return [f.name for f in example_features() if f.slice]


def csv_columns() -> Sequence[str]:
  """The columns the log's CSV must have (a header, or CSV_FORMAT.columns, may have more, in
  any order): the FEATURES' names, IMAGE_PATH_COLUMN for the image; the order of a CSV the
  pipeline writes (datagen, the tests)."""
  return [IMAGE_PATH_COLUMN if f.role == IMAGE else f.name for f in FEATURES]


def transformed_name(name: str) -> str:
  return name + '_xf'


_TF_DTYPES = {'string': 'string', 'bytes': 'string', 'int': 'int64', 'float': 'float32'}


def tf_dtype(feature: Feature):
  """The TensorFlow dtype of a field (TensorFlow is imported only by callers that need it)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.as_dtype(_TF_DTYPES[feature.dtype])


BY_NAME = {f.name: f for f in FEATURES}
LABEL_KEY = label_feature().name
