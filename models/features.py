"""The one definition of every field of an ad impression.

Everything else derives from FEATURES: the sample-data generator (domains), the curated
schema (`python -m schema.generate`), the ExampleGen parser (CSV types), preprocessing_fn,
the Keras model inputs, the raw serving signature and the request validation of the client.
Change a field here and regenerate the schema; a test fails if the two disagree.
"""
import dataclasses
from typing import Optional, Sequence, Tuple

# Roles: what the pipeline does with a field.
KEY = 'key'  # identifies a row/ad; carried along, never a model input
CATEGORICAL = 'categorical'  # string -> vocabulary with OOV buckets -> embedding
INTEGER = 'integer'  # small integer range -> one id per value -> embedding
NUMERIC = 'numeric'  # float -> log/z-score + bucketized id
IMAGE = 'image'  # creative bytes (PNG/JPEG) -> decoded, resized, scaled in the graph
LABEL = 'label'

IMAGE_SIZE = 32  # side in pixels the transform graph resizes creatives to


@dataclasses.dataclass(frozen=True)
class Feature:
  name: str
  role: str
  dtype: str  # 'string' | 'int' | 'float' | 'bytes'
  description: str
  required: bool = True  # at serving; optional fields fall back to `default`
  default: object = None
  domain: Tuple[str, ...] = ()  # closed string domain enforced by the schema
  value_range: Optional[Tuple[float, float]] = None  # inclusive
  log_scale: bool = False  # NUMERIC: log1p before z-scoring
  drift_threshold: Optional[float] = None  # L-infinity bound between consecutive spans


CATEGORIES = ('apparel', 'automotive', 'beauty', 'electronics', 'finance', 'food',
              'gaming', 'health', 'home', 'travel')
CREATIVE_FORMATS = ('banner_728x90', 'rectangle_300x250', 'skyscraper_160x600',
                    'square_250x250', 'mobile_320x50')
PLACEMENTS = ('feed', 'sidebar', 'header', 'interstitial', 'search')
DEVICES = ('mobile', 'desktop', 'tablet')
COUNTRIES = ('US', 'GB', 'DE', 'FR', 'ES', 'IT', 'BR', 'IN', 'JP', 'CA')

FEATURES: Tuple[Feature, ...] = (
    Feature('impression_id', KEY, 'string', 'Unique id of the impression.', required=False,
            default=''),
    Feature('ad_id', KEY, 'string', 'Ad shown; names its creative image.'),
    Feature('campaign_id', KEY, 'string', 'Campaign of the ad.', required=False, default=''),
    Feature('advertiser', CATEGORICAL, 'string', 'Advertiser account; new ones appear monthly.',
            drift_threshold=0.1),
    Feature('category', CATEGORICAL, 'string', 'Vertical of the advertised product.',
            domain=CATEGORIES, drift_threshold=0.1),
    Feature('creative_format', CATEGORICAL, 'string', 'IAB creative format and size.',
            domain=CREATIVE_FORMATS),
    Feature('placement', CATEGORICAL, 'string', 'Where on the page the ad was shown.',
            domain=PLACEMENTS, drift_threshold=0.1),
    Feature('device', CATEGORICAL, 'string', 'Device class of the viewer.', domain=DEVICES,
            drift_threshold=0.1),
    Feature('country', CATEGORICAL, 'string', 'ISO country of the viewer.', domain=COUNTRIES),
    Feature('hour', INTEGER, 'int', 'Hour of day of the impression (UTC).', required=False,
            default=12, value_range=(0, 23)),
    Feature('day_of_week', INTEGER, 'int', 'Day of week, 0 = Monday.', required=False,
            default=0, value_range=(0, 6)),
    Feature('bid_price', NUMERIC, 'float', 'Winning bid, USD CPM.', value_range=(0.01, 50.0),
            log_scale=True),
    Feature('headline_length', NUMERIC, 'int', 'Characters in the headline.', required=False,
            default=40, value_range=(1, 150)),
    Feature('image', IMAGE, 'bytes', 'Creative image bytes (PNG or JPEG).'),
    Feature('clicked', LABEL, 'int', '1 if the impression was clicked.', value_range=(0, 1)),
)

BY_NAME = {f.name: f for f in FEATURES}
LABEL_KEY = 'clicked'
IMAGE_KEY = 'image'
# In the CSV the image is a path relative to the span folder; ExampleGen swaps in its bytes.
IMAGE_PATH_COLUMN = 'image_path'


def with_role(*roles: str) -> Sequence[Feature]:
  return [f for f in FEATURES if f.role in roles]


def model_features() -> Sequence[Feature]:
  """Fields the model reads: everything but keys and the label."""
  return with_role(CATEGORICAL, INTEGER, NUMERIC, IMAGE)


def serving_features() -> Sequence[Feature]:
  """Fields a prediction request carries (ad_id too, so responses can be traced)."""
  return [f for f in FEATURES if f.role != LABEL]


def csv_columns() -> Sequence[str]:
  """Column order of the monthly ads.csv."""
  return [IMAGE_PATH_COLUMN if f.role == IMAGE else f.name for f in FEATURES]


def transformed_name(name: str) -> str:
  return name + '_xf'


_TF_DTYPES = {'string': 'string', 'bytes': 'string', 'int': 'int64', 'float': 'float32'}


def tf_dtype(feature: Feature):
  """The TensorFlow dtype of a field (TensorFlow is imported only by callers that need it)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.as_dtype(_TF_DTYPES[feature.dtype])


def image_feature() -> Optional[Feature]:
  """The creative image field, or None for a log without images."""
  return next((f for f in FEATURES if f.role == IMAGE), None)
