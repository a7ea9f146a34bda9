"""Tests of the sample-data generator (datagen/generate.py)."""
import calendar
import csv
import datetime
import os
import re

import numpy as np
from PIL import Image
import pytest

from datagen import generate
from models import features

ROWS = 2000
# The generator writes the sample ad log only; with a features.py of one's own only the test
# that it says so runs.


def _read(path):
  with open(path, newline='') as f:
    reader = csv.reader(f)
    header = next(reader)
    return header, list(reader)


def _columns(path):
  header, rows = _read(path)
  return {name: np.array(values) for name, values in zip(header, zip(*rows))}


def _auc(labels, scores):
  """Rank-based ROC AUC; tied scores share their average rank."""
  _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
  rank = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
  positive = labels == 1
  n_pos, n_neg = positive.sum(), (~positive).sum()
  return (rank[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _shares(values):
  names, counts = np.unique(values, return_counts=True)
  return dict(zip(names, counts / counts.sum()))


def _linf(a, b):
  return max(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def _opens(path):
  try:
    with Image.open(path) as image:
      image.verify()
    with Image.open(path) as image:
      image.load()
    return True
  except Exception:  # pylint: disable=broad-except
    return False


@pytest.fixture(scope='module')
def normal_span(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('data'))
  return root, generate.generate_span(root, 1, ROWS)


@pytest.fixture(scope='module')
def drift_span(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('drift'))
  return root, generate.generate_span(root, 2, 5000, drift=True)


@pytest.mark.sample_fields
def test_layout_header_and_images(normal_span):
  root, summary = normal_span
  span_dir = os.path.join(root, 'span-1')
  assert summary['paths']['csv'] == os.path.join(span_dir, 'ads.csv')
  header, rows = _read(summary['paths']['csv'])
  assert header == list(features.csv_columns())
  assert len(rows) == summary['rows'] == ROWS
  cols = _columns(summary['paths']['csv'])
  assert len(set(cols['ad_id'])) == summary['n_ads'] >= generate.MIN_ADS // 2
  # Many impressions share an ad (Zipf-like popularity).
  assert max(_shares(cols['ad_id']).values()) > 3.0 / summary['n_ads']
  for ad_id, path in set(zip(cols['ad_id'], cols['image_path'])):
    assert path == f'images/{ad_id}.png'
    with Image.open(os.path.join(span_dir, path)) as image:
      assert image.size == (64, 64) and image.mode == 'RGB'
  assert len(os.listdir(summary['paths']['images'])) == summary['n_ads']


@pytest.mark.sample_fields
def test_deterministic(tmp_path, normal_span):
  root, summary = normal_span
  again = generate.generate_span(str(tmp_path), 1, ROWS)
  for key in ('csv', 'ground_truth'):
    with open(summary['paths'][key], 'rb') as a, open(again['paths'][key], 'rb') as b:
      assert a.read() == b.read()
  for name in sorted(os.listdir(summary['paths']['images']))[:50]:
    with open(os.path.join(summary['paths']['images'], name), 'rb') as a, \
        open(os.path.join(again['paths']['images'], name), 'rb') as b:
      assert a.read() == b.read()
  other_seed = generate.simulate(ROWS, seed=8)
  assert not np.array_equal(other_seed.clicked, generate.simulate(ROWS).clicked)


@pytest.mark.sample_fields
def test_ctr_and_domains(normal_span):
  _, summary = normal_span
  cols = _columns(summary['paths']['csv'])
  assert 0.01 <= summary['ctr'] <= 0.10
  assert len(set(cols['impression_id'])) == ROWS
  for feature in features.FEATURES:
    if feature.role == features.IMAGE:
      continue
    values = cols[feature.name]
    assert all(values != ''), feature.name
    if feature.domain:
      assert set(values) <= set(feature.domain), feature.name
    if feature.value_range:
      numbers = values.astype(float)
      low, high = feature.value_range
      assert numbers.min() >= low and numbers.max() <= high, feature.name
    if feature.dtype == 'int':
      assert all(np.char.isdigit(values)), feature.name
  assert all(len(v.split('.')[1]) == 4 for v in cols['bid_price'])
  assert set(cols['clicked']) == {'0', '1'}
  assert np.mean(cols['clicked'].astype(int)) == pytest.approx(summary['ctr'])
  assert all(a.startswith('adv_') for a in cols['advertiser'])


@pytest.mark.sample_fields
def test_ground_truth_aligns(normal_span):
  _, summary = normal_span
  cols = _columns(summary['paths']['csv'])
  header, _ = _read(summary['paths']['ground_truth'])
  assert header == ['impression_id', 'click_probability']
  truth = _columns(summary['paths']['ground_truth'])
  np.testing.assert_array_equal(truth['impression_id'], cols['impression_id'])
  probability = truth['click_probability'].astype(float)
  assert ((probability > 0) & (probability < 1)).all()
  # The labels were drawn from these probabilities.
  assert probability.mean() == pytest.approx(summary['ctr'], abs=0.01)


@pytest.mark.sample_fields
def test_image_matters():
  sim = generate.simulate(20000, seed=7)
  labels = sim.clicked
  oracle = _auc(labels, sim.probability)
  blind = _auc(labels, sim.blind_probability)
  assert oracle - blind > 0.03, (oracle, blind)
  assert 0.6 <= np.std(sim.image_logit) <= 1.0
  # The image cues are drawn independently of every tabular field.
  assert abs(np.corrcoef(sim.image_logit, sim.blind_logit)[0, 1]) < 0.1


@pytest.mark.sample_fields
def test_universe_shared_across_spans():
  one, two = generate.simulate(ROWS, span=1), generate.simulate(ROWS, span=2)
  ads_one, ads_two = set(one.ads.ad_id), set(two.ads.ad_id)
  assert len(ads_one) == len(ads_two)
  assert 0.85 <= len(ads_one & ads_two) / len(ads_one) < 1.0
  assert not set(one.impression_ids()) & set(two.impression_ids())
  shared = sorted(ads_one & ads_two)[0]
  i, j = list(one.ads.ad_id).index(shared), list(two.ads.ad_id).index(shared)
  assert one.ads.campaign_id[i] == two.ads.campaign_id[j]
  assert one.ads.advertiser[i] == two.ads.advertiser[j]


@pytest.mark.sample_fields
def test_consecutive_normal_spans_stay_within_drift_thresholds():
  one, two = generate.simulate(20000, span=1), generate.simulate(20000, span=2)
  for feature in features.FEATURES:
    if feature.drift_threshold is not None:
      distance = _linf(_shares(one.column(feature.name)), _shares(two.column(feature.name)))
      assert distance < feature.drift_threshold, feature.name


@pytest.mark.sample_fields
def test_drift(normal_span, drift_span):
  _, normal = normal_span
  root, drifted = drift_span
  cols = _columns(drifted['paths']['csv'])
  base = _columns(normal['paths']['csv'])
  advertisers = _shares(cols['advertiser'])
  assert 0.15 <= advertisers['adv_new_2'] <= 0.25
  assert 'adv_new_1' not in _shares(base['advertiser'])
  categories = _shares(cols['category'])
  assert sum(sorted(categories.values())[-2:]) >= 0.5
  assert _linf(categories, _shares(base['category'])) > \
      features.BY_NAME['category'].drift_threshold
  assert set(cols['category']) <= set(features.CATEGORIES)

  span_dir = os.path.join(root, 'span-2')
  paths = [os.path.join(span_dir, p) for p in cols['image_path']]
  missing = [p for p, a in zip(paths, cols['ad_id']) if a.startswith('ad_missing_')]
  corrupt = [p for p, a in zip(paths, cols['ad_id']) if a.startswith('ad_corrupt_')]
  expected = max(3, round(0.002 * 5000))
  assert len(missing) == len(set(missing)) == expected
  assert len(corrupt) == len(set(corrupt)) == expected
  assert not any(os.path.exists(p) for p in missing)
  assert all(os.path.exists(p) and not _opens(p) for p in corrupt)
  others = sorted(set(paths) - set(missing) - set(corrupt))
  assert all(_opens(p) for p in others)


@pytest.mark.sample_fields
def test_no_drift_artifacts_without_flag(normal_span):
  _, summary = normal_span
  cols = _columns(summary['paths']['csv'])
  assert not any(a.startswith('adv_new') for a in cols['advertiser'])
  assert all(re.fullmatch(r'ad_\d{5}', a) for a in cols['ad_id'])


@pytest.mark.sample_fields
def test_cli(tmp_path, capsys):
  generate.main(['--root', str(tmp_path), '--rows', '300', '--spans', '1', '2'])
  out = capsys.readouterr().out.splitlines()
  assert len(out) == 2 and out[0].startswith('span-1: 300 rows')
  for span in (1, 2):
    assert os.path.exists(tmp_path / f'span-{span}' / 'ads.csv')
    assert os.path.exists(tmp_path / 'ground_truth' / f'span-{span}.csv')


@pytest.mark.sample_fields
def test_impression_time_is_in_the_month_and_matches_hour_and_day():
  sim = generate.simulate(ROWS, span=2)
  start = generate.month_start(2)
  times = [datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc)
           for t in sim.impression_time]
  assert {(t.year, t.month) for t in times} == {(start.year, start.month)}
  assert [t.hour for t in times] == list(sim.hour)
  assert [t.weekday() for t in times] == list(sim.day_of_week)
  assert len({t.day for t in times}) > 20  # spread over the month


@pytest.mark.sample_fields
def test_new_ads_launch_mid_month():
  span = 2
  sim = generate.simulate(20000, span=span)
  month = generate.month_start(span)
  month_days = calendar.monthrange(month.year, month.month)[1]
  start = int(month.timestamp())
  days = (sim.impression_time - start) // 86400
  ad_ids = sim.shown.ad_id
  is_new = np.array([int(a[len('ad_'):]) > generate.MAX_ADS for a in ad_ids])
  assert 0.01 < is_new.mean() < 0.1
  # No impression of a new ad before its launch day.
  assert (days[is_new] >= np.floor(sim.shown.launch[is_new] * month_days)).all()
  first_day = {}
  for ad_id, day in zip(ad_ids, days):
    first_day[ad_id] = min(day, first_day.get(ad_id, day))
  new_first = [first_day[a] for a in set(ad_ids[is_new])]
  established_first = [first_day[a] for a in set(ad_ids[~is_new])]
  # Some creatives are first seen in the month's last fifth (the eval period), and only
  # new ones: the established ones all show up in the first half.
  assert max(new_first) >= 0.8 * month_days and max(established_first) < month_days / 2


@pytest.mark.parametrize('change,sentence', [
    (lambda by_name: by_name.pop('category'),
     'datagen generates the sample ad log only; models/features.py no longer has field '
     'category.'),
    (lambda by_name: by_name.update(site_code=None),
     'datagen generates the sample ad log only; it cannot write the field site_code of '
     'models/features.py.'),
])
def test_other_fields_are_refused_in_one_sentence(monkeypatch, tmp_path, change, sentence):
  by_name = {name: None for name in generate.SAMPLE_FIELDS}
  change(by_name)
  monkeypatch.setattr(features, 'BY_NAME', by_name)
  with pytest.raises(ValueError) as error:
    generate.generate_span(str(tmp_path), 1, 10)
  assert str(error.value) == sentence
  with pytest.raises(SystemExit) as exit_info:
    generate.main(['--root', str(tmp_path), '--spans', '1'])
  assert exit_info.value.code == sentence
  assert not os.listdir(tmp_path)  # nothing half-written
