"""Seeded generator of monthly ad-impression spans: ads.csv, creative PNGs, ground truth.

  python -m datagen.generate --root data --rows 20000 --spans 1 2 [--seed 7] [--drift]

writes, per span N:
  <root>/span-N/ads.csv               columns of features.csv_columns(), in that order; span N
                                      is calendar month N counted from January 2026
  <root>/span-N/images/<ad_id>.png    64x64 RGB creative of every ad shown in the span
  <root>/ground_truth/span-N.csv      impression_id,click_probability (never read by the
                                      pipeline; gives the oracle AUC / log-loss)

The ad universe (advertisers, campaigns, ads, creatives) derives from the seed alone, so
consecutive months show mostly the same ads; each month adds ~10% new ads derived from
seed and span, launched on a random day of the month (their impressions start then, so the
last days of a month show creatives never seen before, as the next month will). Clicks are
Bernoulli draws from a logistic model whose image terms come
from visual properties drawn into the PNG (product contrast, call-to-action badge,
clutter) and drawn independently of every tabular field, so an image-blind model is
measurably worse. --drift makes a shifted month: two categories dominate, a new
advertiser takes ~20% of impressions and a few rows have a missing or corrupt image.
"""
import argparse
import calendar
import dataclasses
import datetime
import functools
import io
import os
import shutil
import sys
import time
from typing import Dict, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from models import data_layout
from models import features

# The fields of the sample ad log this generator simulates. models/features.py must define
# exactly these (the domains and ranges below are read from it); with a log of your own it
# does not, and the generator says so instead of crashing.
SAMPLE_FIELDS = ('impression_id', 'ad_id', 'campaign_id', 'impression_time', 'advertiser',
                 'category', 'creative_format', 'placement', 'device', 'country', 'hour',
                 'day_of_week', 'bid_price', 'headline_length', 'image', 'clicked')


def sample_fields_problem() -> Optional[str]:
  """Why models/features.py does not describe the sample ad log, in one sentence; or None."""
  missing = [name for name in SAMPLE_FIELDS if name not in features.BY_NAME]
  unknown = [name for name in features.BY_NAME if name not in SAMPLE_FIELDS]
  if missing:
    return ('datagen generates the sample ad log only; models/features.py no longer has '
            f"field{'s' if len(missing) > 1 else ''} {', '.join(missing)}.")
  if unknown:
    return ('datagen generates the sample ad log only; it cannot write the field'
            f"{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} of models/features.py.")
  return None


if sample_fields_problem() is None:  # otherwise simulate() says why before any use of these
  CATEGORIES = features.BY_NAME['category'].domain
  CREATIVE_FORMATS = features.BY_NAME['creative_format'].domain
  PLACEMENTS = features.BY_NAME['placement'].domain
  DEVICES = features.BY_NAME['device'].domain
  COUNTRIES = features.BY_NAME['country'].domain
  HOURS = np.arange(features.BY_NAME['hour'].value_range[0],
                    features.BY_NAME['hour'].value_range[1] + 1)
  BID_RANGE = features.BY_NAME['bid_price'].value_range
  HEADLINE_RANGE = features.BY_NAME['headline_length'].value_range

IMAGE_SIDE = 64
FIRST_MONTH = (2026, 1)  # span 1

MIN_ADS = 60
MAX_ADS = 3000  # also the size of the seed-only ad universe
ROWS_PER_AD = 50
NEW_AD_SHARE = 0.1
NEW_AD_POPULARITY = 0.5  # scale of a new ad's popularity draw (established ads: 0-1)
N_ADVERTISERS = 40
# New ads of span N get ids from N * ID_BLOCK on, above the universe's 1..MAX_ADS.
ID_BLOCK = 10000

# Drifted month.
DRIFT_HOT_SHARE = 0.6  # share of the two hot categories among established advertisers
DRIFT_NEW_ADVERTISER_SHARE = 0.2
DRIFT_BROKEN_SHARE = 0.002  # of rows, for missing and for corrupt images each
DRIFT_MIN_BROKEN = 3

# Image state of an ad.
IMAGE_OK, IMAGE_MISSING, IMAGE_CORRUPT = 0, 1, 2

# Independent random streams, so e.g. creatives do not change when row sampling does.
_UNIVERSE, _UNIVERSE_IMAGES, _SPAN_ADS, _SPAN_IMAGES, _ROWS, _RENDER = range(6)

# Impression-level distributions; values missing from a table get the smallest weight.
_PLACEMENT_MIX = {'feed': 0.35, 'sidebar': 0.2, 'header': 0.15, 'interstitial': 0.1,
                  'search': 0.2}
_DEVICE_MIX = {'mobile': 0.55, 'desktop': 0.35, 'tablet': 0.1}
_COUNTRY_MIX = {'US': 0.3, 'GB': 0.1, 'DE': 0.1, 'FR': 0.08, 'ES': 0.06, 'IT': 0.06,
                'BR': 0.08, 'IN': 0.12, 'JP': 0.05, 'CA': 0.05}

# Click model (logit units). Values missing from a table are neutral.
_BASE_LOGIT = -3.7
_CATEGORY_EFFECT = {'apparel': 0.1, 'automotive': -0.35, 'beauty': 0.15,
                    'electronics': 0.0, 'finance': -0.45, 'food': 0.25, 'gaming': 0.4,
                    'health': -0.15, 'home': 0.0, 'travel': 0.2}
_PLACEMENT_EFFECT = {'feed': 0.2, 'sidebar': -0.5, 'header': -0.1, 'interstitial': 0.45,
                     'search': 0.4}
_DEVICE_EFFECT = {'mobile': 0.1, 'desktop': 0.0, 'tablet': -0.05}
_DEVICE_PLACEMENT_EFFECT = {('mobile', 'interstitial'): 0.7, ('desktop', 'sidebar'): -0.7,
                            ('tablet', 'feed'): 0.3}
_COUNTRY_EFFECT = {'US': 0.1, 'IN': -0.2, 'BR': 0.05, 'JP': -0.1}
_HOUR_AMPLITUDE = 0.3  # evenings click more
_BID_COEF = 0.15  # per log-unit of bid: pricier slots are slightly better
_BID_REFERENCE = 1.5
_HEADLINE_COEF = -0.005  # per character above the typical length
_HEADLINE_REFERENCE = 45
_ADVERTISER_SD = 0.4
# Image terms: their standard deviation over impressions is about 0.8.
_CONTRAST_COEF = 1.8
_BADGE_COEF = 1.1
_BADGE_RATE = 0.45
_CLUTTER_COEF = -0.035  # per scattered shape
_MAX_CLUTTER = 40


@dataclasses.dataclass(frozen=True)
class Ads:
  """Ads as parallel arrays, one entry per ad."""
  ad_id: np.ndarray  # str
  campaign_id: np.ndarray  # str
  advertiser: np.ndarray  # str
  advertiser_effect: np.ndarray  # logit
  category: np.ndarray  # index into CATEGORIES
  creative_format: np.ndarray  # index into CREATIVE_FORMATS
  headline_length: np.ndarray
  base_bid: np.ndarray
  popularity: np.ndarray  # ranks the ads for the Zipf-like impression share
  contrast: np.ndarray  # 0..1, background vs product block
  badge: np.ndarray  # bool, call-to-action badge drawn
  clutter: np.ndarray  # number of small scattered shapes
  image_key: np.ndarray  # seeds the rendering of the creative
  image_state: np.ndarray  # IMAGE_OK | IMAGE_MISSING | IMAGE_CORRUPT
  launch: np.ndarray  # share of the month before the ad's first impression (0 = shown all month)

  def __len__(self):
    return len(self.ad_id)

  def take(self, index: np.ndarray) -> 'Ads':
    return Ads(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

  @staticmethod
  def concat(*parts: 'Ads') -> 'Ads':
    return Ads(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                  for f in dataclasses.fields(Ads)})

  def image_logit(self) -> np.ndarray:
    """Click effect of the creative, centred on zero; unknown for broken images."""
    effect = (_CONTRAST_COEF * (self.contrast - 0.5) +
              _BADGE_COEF * (self.badge - _BADGE_RATE) +
              _CLUTTER_COEF * (self.clutter - _MAX_CLUTTER / 2))
    return np.where(self.image_state == IMAGE_OK, effect, 0.0)


@dataclasses.dataclass(frozen=True)
class Simulation:
  """One span before it is written: per-row arrays plus the ads they index."""
  span: int
  ads: Ads
  ad_index: np.ndarray  # row -> ad
  placement: np.ndarray  # index into PLACEMENTS
  device: np.ndarray  # index into DEVICES
  country: np.ndarray  # index into COUNTRIES
  hour: np.ndarray
  day_of_week: np.ndarray
  impression_time: np.ndarray  # unix seconds
  bid_price: np.ndarray  # rounded to the 4 decimals written
  image_logit: np.ndarray
  blind_logit: np.ndarray  # the click logit without the image terms
  clicked: np.ndarray  # 0/1

  @property
  def probability(self) -> np.ndarray:
    return _sigmoid(self.blind_logit + self.image_logit)

  @property
  def blind_probability(self) -> np.ndarray:
    """Ranks rows like the best image-blind model (the image terms are independent)."""
    return _sigmoid(self.blind_logit)

  def impression_ids(self) -> np.ndarray:
    return np.array([f's{self.span}-{i:07d}' for i in range(len(self.ad_index))])

  @functools.cached_property
  def shown(self) -> Ads:
    """The ad of each row."""
    return self.ads.take(self.ad_index)

  def column(self, name: str) -> np.ndarray:
    """The ads.csv column `name` as strings."""
    ads = self.shown
    if name == 'impression_id':
      return self.impression_ids()
    if name in ('ad_id', 'campaign_id', 'advertiser'):
      return getattr(ads, name)
    if name == 'category':
      return np.asarray(CATEGORIES)[ads.category]
    if name == 'creative_format':
      return np.asarray(CREATIVE_FORMATS)[ads.creative_format]
    if name == 'headline_length':
      return ads.headline_length.astype(str)
    if name == features.IMAGE_PATH_COLUMN:
      return np.char.add(np.char.add(data_layout.IMAGE_DIR + '/', ads.ad_id.astype(str)),
                         '.png')
    if name == 'bid_price':
      return np.char.mod('%.4f', self.bid_price)
    domains = {'placement': PLACEMENTS, 'device': DEVICES, 'country': COUNTRIES}
    if name in domains:
      return np.asarray(domains[name])[getattr(self, name)]
    return getattr(self, name).astype(str)  # hour, day_of_week, impression_time, clicked


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _lookup(table: Dict, domain: Sequence[str], default: float) -> np.ndarray:
  return np.array([table.get(v, default) for v in domain], dtype=float)


def _mix(table: Dict, domain: Sequence[str]) -> np.ndarray:
  weights = _lookup(table, domain, min(table.values()))
  return weights / weights.sum()


def _rng(*keys: int) -> np.random.Generator:
  return np.random.default_rng([int(k) for k in keys])


def _make_ads(rng: np.random.Generator, image_rng: np.random.Generator, n: int,
              first_id: int, first_campaign: int, advertisers: np.ndarray,
              advertiser_category: np.ndarray, advertiser_effect: np.ndarray,
              campaign_width: int) -> Ads:
  """`n` ads in campaigns of 2-6 ads, each campaign run by one of `advertisers`."""
  campaign = np.repeat(np.arange(n), rng.integers(2, 7, size=n))[:n]
  campaign_advertiser = rng.integers(len(advertisers), size=campaign[-1] + 1)
  advertiser = campaign_advertiser[campaign]
  # Advertisers mostly sell in their main vertical.
  category = np.where(rng.random(n) < 0.8, advertiser_category[advertiser],
                      rng.integers(len(CATEGORIES), size=n))
  headline = np.clip(np.rint(rng.normal(_HEADLINE_REFERENCE, 20, n)), *HEADLINE_RANGE)
  ids = np.arange(first_id, first_id + n)
  return Ads(
      ad_id=np.array([f'ad_{i:05d}' for i in ids]),
      campaign_id=np.array([f'cmp_{first_campaign + c:0{campaign_width}d}'
                            for c in campaign]),
      advertiser=advertisers[advertiser],
      advertiser_effect=advertiser_effect[advertiser],
      category=category,
      creative_format=rng.integers(len(CREATIVE_FORMATS), size=n),
      headline_length=headline.astype(int),
      base_bid=rng.lognormal(np.log(_BID_REFERENCE), 0.6, n),
      popularity=rng.random(n),
      # Drawn from their own stream: nothing tabular predicts the creative.
      contrast=image_rng.random(n),
      badge=image_rng.random(n) < _BADGE_RATE,
      clutter=image_rng.integers(0, _MAX_CLUTTER + 1, size=n),
      image_key=ids,
      image_state=np.full(n, IMAGE_OK),
      launch=np.zeros(n))


def _advertisers(rng: np.random.Generator, names: Sequence[str], category=None):
  n = len(names)
  main = rng.integers(len(CATEGORIES), size=n) if category is None else np.full(n, category)
  return np.array(names), main, rng.normal(0.0, _ADVERTISER_SD, n)


def _universe(seed: int):
  """Advertisers and the MAX_ADS established ads, from the seed alone."""
  rng = _rng(seed, _UNIVERSE)
  advertisers = _advertisers(rng, [f'adv_{i:03d}' for i in range(1, N_ADVERTISERS + 1)])
  ads = _make_ads(rng, _rng(seed, _UNIVERSE_IMAGES), MAX_ADS, 1, 1, *advertisers,
                  campaign_width=4)
  return advertisers, ads


def _zipf(popularity: np.ndarray) -> np.ndarray:
  rank = np.argsort(np.argsort(-popularity))
  weights = (rank + 5.0) ** -1.0
  return weights / weights.sum()


def month_start(span: int) -> datetime.datetime:
  months = FIRST_MONTH[1] - 1 + span - 1
  return datetime.datetime(FIRST_MONTH[0] + months // 12, months % 12 + 1, 1,
                           tzinfo=datetime.timezone.utc)


def _broken_copies(ads: Ads, span: int, state: int, label: str) -> Ads:
  """Copies of `ads` under their own ids whose image is missing or corrupt."""
  ids = np.array([f'ad_{label}_s{span}_{i:03d}' for i in range(len(ads))])
  return dataclasses.replace(ads, ad_id=ids, image_state=np.full(len(ads), state))


def simulate(rows: int, seed: int = 7, span: int = 1, drift: bool = False) -> Simulation:
  """Draws one span's impressions and clicks without writing anything.

  Raises:
    ValueError: models/features.py does not define the sample log's fields, or span < 1.
  """
  problem = sample_fields_problem()
  if problem:
    raise ValueError(problem)
  if span < 1:
    raise ValueError(f'span must be >= 1, got {span}')
  advertisers, universe = _universe(seed)
  n_ads = min(MAX_ADS, max(MIN_ADS, rows // ROWS_PER_AD))
  n_new = int(round(n_ads * NEW_AD_SHARE))
  first_new = span * ID_BLOCK + 1
  rng = _rng(seed, _SPAN_ADS, span)
  image_rng = _rng(seed, _SPAN_IMAGES, span)
  new = _make_ads(rng, image_rng, n_new, first_new, first_new, *advertisers,
                  campaign_width=5)
  # New creatives ramp up: they start in the less popular half, so a normal month's mix
  # stays close to the last one (the drift check must not fire on ordinary churn).
  new = dataclasses.replace(new, popularity=new.popularity * NEW_AD_POPULARITY,
                            launch=rng.random(n_new))
  ads = Ads.concat(universe.take(np.arange(n_ads - n_new)), new)
  weights = _zipf(ads.popularity)

  if drift:
    # Two categories present this month take most established advertisers' impressions.
    hot = rng.choice(np.unique(ads.category), 2, replace=False)
    is_hot = np.isin(ads.category, hot)
    weights = np.where(is_hot, DRIFT_HOT_SHARE * weights / weights[is_hot].sum(),
                       (1 - DRIFT_HOT_SHARE) * weights / weights[~is_hot].sum())
  rows_rng = _rng(seed, _ROWS, span)
  ad_index = rows_rng.choice(len(ads), size=rows, p=weights)
  if drift:
    # A new advertiser in the first hot vertical, with ids after this span's new ads.
    newcomer = _advertisers(rng, [f'adv_new_{span}'], category=hot[0])
    n_newcomer = max(5, n_ads // 20)
    newcomer_ads = _make_ads(rng, image_rng, n_newcomer, first_new + n_new,
                             first_new + n_new, *newcomer, campaign_width=5)
    is_newcomer = rows_rng.random(rows) < DRIFT_NEW_ADVERTISER_SHARE
    ad_index[is_newcomer] = len(ads) + rows_rng.choice(
        n_newcomer, size=is_newcomer.sum(), p=_zipf(newcomer_ads.popularity))
    ads = Ads.concat(ads, newcomer_ads)
    # Broken rows keep their ad's fields but get their own ad ids, so no valid row shares
    # the missing or corrupt file.
    n_broken = max(DRIFT_MIN_BROKEN, int(round(DRIFT_BROKEN_SHARE * rows)))
    broken = rows_rng.choice(rows, size=2 * n_broken, replace=False)
    missing, corrupt = broken[:n_broken], broken[n_broken:]
    broken_ads = Ads.concat(
        _broken_copies(ads.take(ad_index[missing]), span, IMAGE_MISSING, 'missing'),
        _broken_copies(ads.take(ad_index[corrupt]), span, IMAGE_CORRUPT, 'corrupt'))
    ad_index[broken] = len(ads) + np.arange(2 * n_broken)
    ads = Ads.concat(ads, broken_ads)

  shown = ads.take(ad_index)
  placement = rows_rng.choice(len(PLACEMENTS), size=rows, p=_mix(_PLACEMENT_MIX, PLACEMENTS))
  device = rows_rng.choice(len(DEVICES), size=rows, p=_mix(_DEVICE_MIX, DEVICES))
  country = rows_rng.choice(len(COUNTRIES), size=rows, p=_mix(_COUNTRY_MIX, COUNTRIES))
  # Diurnal traffic: quiet around 08:00 UTC, busiest around 20:00 UTC.
  hour_traffic = 1.0 + 0.7 * np.cos(2 * np.pi * (HOURS - 20) / 24)
  hour = rows_rng.choice(HOURS, size=rows, p=hour_traffic / hour_traffic.sum())
  # Days: uniform over the part of the month the ad runs in (new ads start mid-month).
  start = month_start(span)
  days = calendar.monthrange(start.year, start.month)[1]
  day = np.floor((shown.launch + (1 - shown.launch) * rows_rng.random(rows)) * days)
  impression_time = (int(start.timestamp()) + day.astype(np.int64) * 86400 + hour * 3600 +
                     rows_rng.integers(0, 3600, size=rows))
  day_of_week = (start.weekday() + day.astype(int)) % 7
  bid = np.clip(shown.base_bid * rows_rng.lognormal(0.0, 0.4, rows), *BID_RANGE).round(4)

  interaction = np.array([[_DEVICE_PLACEMENT_EFFECT.get((d, p), 0.0) for p in PLACEMENTS]
                          for d in DEVICES])
  blind_logit = (_BASE_LOGIT +
                 _lookup(_CATEGORY_EFFECT, CATEGORIES, 0.0)[shown.category] +
                 _lookup(_PLACEMENT_EFFECT, PLACEMENTS, 0.0)[placement] +
                 _lookup(_DEVICE_EFFECT, DEVICES, 0.0)[device] +
                 interaction[device, placement] +
                 _lookup(_COUNTRY_EFFECT, COUNTRIES, 0.0)[country] +
                 _HOUR_AMPLITUDE * np.cos(2 * np.pi * (hour - 20) / 24) +
                 _BID_COEF * np.log(bid / _BID_REFERENCE) +
                 _HEADLINE_COEF * (shown.headline_length - _HEADLINE_REFERENCE) +
                 shown.advertiser_effect)
  image_logit = shown.image_logit()
  clicked = (rows_rng.random(rows) < _sigmoid(blind_logit + image_logit)).astype(int)
  return Simulation(span=span, ads=ads, ad_index=ad_index, placement=placement,
                    device=device, country=country, hour=hour, day_of_week=day_of_week,
                    impression_time=impression_time, bid_price=bid, image_logit=image_logit, blind_logit=blind_logit,
                    clicked=clicked)


def _colour(level: float, tint: np.ndarray):
  return tuple(int(v) for v in np.clip(np.rint(255 * level * tint), 0, 255))


def render_creative(seed: int, key: int, contrast: float, badge: bool,
                    clutter: int) -> bytes:
  """PNG bytes of a 64x64 creative; the cues stay visible at 32x32."""
  rng = _rng(seed, _RENDER, key)
  # Luminance gap between background and product block grows with contrast.
  gap = 0.1 + 0.8 * contrast
  low = rng.uniform(0.05, 0.95 - gap)
  levels = (low + gap, low) if rng.random() < 0.5 else (low, low + gap)
  background = _colour(levels[0], 0.55 + 0.45 * rng.random(3))
  block = _colour(levels[1], 0.55 + 0.45 * rng.random(3))
  image = Image.new('RGB', (IMAGE_SIDE, IMAGE_SIDE), background)
  draw = ImageDraw.Draw(image)
  # Product block in the upper left, clear of the badge corner.
  w, h = rng.integers(28, 37), rng.integers(26, 33)
  x, y = rng.integers(4, 51 - w), rng.integers(4, 46 - h)
  shape = draw.ellipse if rng.random() < 0.3 else draw.rectangle
  shape([x, y, x + w - 1, y + h - 1], fill=block)
  # Headline text line: decoration with no effect on clicks.
  draw.rectangle([4, 52, 4 + rng.integers(12, 32), 54], fill=block)
  for _ in range(clutter):
    cx, cy = rng.integers(0, IMAGE_SIDE, size=2)
    size = rng.integers(3, 6)
    dot = draw.ellipse if rng.random() < 0.5 else draw.rectangle
    dot([cx, cy, cx + size - 1, cy + size - 1],
        fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
  if badge:
    # Bright orange/red call-to-action button with a white label bar, drawn last.
    draw.rectangle([42, 48, 61, 60], fill=(255, int(rng.integers(40, 120)), 0))
    draw.rectangle([45, 53, 58, 55], fill=(255, 255, 255))
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def _write_images(sim: Simulation, seed: int, image_dir: str) -> None:
  os.makedirs(image_dir)
  ads = sim.ads
  # Each ad is rendered once however many impressions it has.
  for i in np.unique(sim.ad_index):
    if ads.image_state[i] == IMAGE_MISSING:
      continue
    data = render_creative(seed, ads.image_key[i], ads.contrast[i], ads.badge[i],
                           ads.clutter[i])
    if ads.image_state[i] == IMAGE_CORRUPT:
      data = data[:len(data) // 2]  # truncated upload
    with open(os.path.join(image_dir, ads.ad_id[i] + '.png'), 'wb') as f:
      f.write(data)


def _write_csv(path: str, header: Sequence[str], columns: Sequence[np.ndarray]) -> None:
  lines = [','.join(header)] + [','.join(row) for row in zip(*columns)]
  with open(path, 'w', newline='') as f:
    f.write('\n'.join(lines) + '\n')


def generate_span(root: str, span: int, rows: int, seed: int = 7,
                  drift: bool = False) -> dict:
  """Writes span `span` under `root`, replacing any previous copy of that span.

  Returns:
    {'rows', 'ctr', 'n_ads' (distinct ads shown), 'paths': {'csv', 'images',
    'ground_truth'}}.
  """
  sim = simulate(rows, seed=seed, span=span, drift=drift)
  span_dir = data_layout.span_dir(root, span)
  if os.path.exists(span_dir):
    shutil.rmtree(span_dir)  # stale images of a previous, larger run must not linger
  image_dir = os.path.join(span_dir, data_layout.IMAGE_DIR)
  _write_images(sim, seed, image_dir)
  csv_path = data_layout.ads_csv(root, span)
  columns = features.csv_columns()
  _write_csv(csv_path, columns, [sim.column(c) for c in columns])
  truth_path = data_layout.ground_truth_csv(root, span)
  os.makedirs(os.path.dirname(truth_path), exist_ok=True)
  _write_csv(truth_path, data_layout.GROUND_TRUTH_COLUMNS,
             [sim.impression_ids(), np.char.mod('%.8f', sim.probability)])
  return {
      'rows': rows,
      'ctr': float(sim.clicked.mean()),
      'n_ads': int(len(np.unique(sim.ad_index))),
      'paths': {'csv': csv_path, 'images': image_dir, 'ground_truth': truth_path},
  }


def main(argv: Optional[Sequence[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--root', default='data', help='Folder that receives span-<N>/.')
  parser.add_argument('--rows', type=int, default=20000, help='Impressions per span.')
  parser.add_argument('--spans', type=int, nargs='+', required=True,
                      help='Span numbers (months) to write, >= 1.')
  parser.add_argument('--seed', type=int, default=7, help='Seed of the ad universe.')
  parser.add_argument('--drift', action='store_true',
                      help='Write drifted months (category shift, new advertiser, '
                      'broken images).')
  args = parser.parse_args(argv)
  problem = sample_fields_problem()
  if problem:
    sys.exit(problem)
  for span in args.spans:
    start = time.perf_counter()
    summary = generate_span(args.root, span, args.rows, seed=args.seed, drift=args.drift)
    print(f"span-{span}: {summary['rows']} rows, CTR {summary['ctr']:.2%}, "
          f"{summary['n_ads']} ads, {time.perf_counter() - start:.1f} s "
          f"-> {os.path.dirname(summary['paths']['csv'])}")


if __name__ == '__main__':
  main()
