"""The out-of-time split protocol: eval rows come after every training row; cohorts."""
import apache_beam as beam
import pytest
from apache_beam.testing import util as beam_util
import tensorflow as tf

from components.image_csv_example_gen import splits
from models import features

CONFIG = splits.SplitConfig(eval_fraction=0.2, validation_fraction=0.1)
TIME = features.time_feature().name
KEY = features.cohort_key_feature().name
COHORT = features.cohort_feature().name


def _example(ad: str, time: int) -> tf.train.Example:
  example = tf.train.Example()
  example.features.feature[KEY].bytes_list.value.append(ad.encode())
  example.features.feature[TIME].int64_list.value.append(time)
  return example


def test_time_cuts_and_assignment():
  cuts = splits.time_cuts(0, 100, CONFIG)
  assert cuts == (70, 80)
  assert splits.assign(2, 10, latest_span=2, cuts=cuts) == splits.TRAIN
  assert splits.assign(2, 75, latest_span=2, cuts=cuts) == splits.VALIDATION
  assert splits.assign(2, 80, latest_span=2, cuts=cuts) == splits.EVAL
  # An older month of the window always trains, whatever its times.
  assert splits.assign(1, 95, latest_span=2, cuts=cuts) == splits.TRAIN


def test_a_month_without_a_time_range_is_refused_in_words():
  with pytest.raises(ValueError, match='same impression_time'):
    splits.time_cuts(5, 5, CONFIG)


def _split(keyed):
  """Runs SplitExamples; returns {split: sorted [(ad, time, cohort)]}."""
  with beam.Pipeline() as pipeline:
    result = (pipeline | beam.Create(keyed)
              | splits.SplitExamples(latest_span=2, config=CONFIG))
    for name, examples in result.items():
      rows = examples | f'Rows[{name}]' >> beam.Map(lambda e: (
          e.features.feature[KEY].bytes_list.value[0].decode(),
          e.features.feature[TIME].int64_list.value[0],
          e.features.feature[COHORT].bytes_list.value[0].decode()))
      beam_util.assert_that(rows, _collect(name), label=f'Collect[{name}]')
  return _COLLECTED


_COLLECTED = {}  # assert_that's callback runs inside the pipeline; it hands the rows out


def _collect(name):
  def check(rows):
    _COLLECTED[name] = sorted(rows)
  return check


def test_no_eval_row_in_the_training_period_and_cohorts():
  # Span 2 runs from t=1000 to t=2000: eval from 1800, validation from 1700.
  keyed = [(1, _example('ad_old', 10)), (1, _example('ad_old', 500)),
           (2, _example('ad_old', 1000)), (2, _example('ad_old', 1900)),
           (2, _example('ad_mid', 1750)), (2, _example('ad_mid', 1950)),
           (2, _example('ad_new', 1850)), (2, _example('ad_new', 2000))]
  found = _split(keyed)
  assert found[splits.EVAL] == [('ad_mid', 1950, 'established'), ('ad_new', 1850, 'new'),
                                ('ad_new', 2000, 'new'), ('ad_old', 1900, 'established')]
  assert found[splits.VALIDATION] == [('ad_mid', 1750, 'established')]
  assert found[splits.TRAIN] == [('ad_old', 10, 'established'), ('ad_old', 500, 'established'),
                                 ('ad_old', 1000, 'established')]
  last_training = max(t for _, t, _ in found[splits.TRAIN] + found[splits.VALIDATION])
  assert all(t > last_training for _, t, _ in found[splits.EVAL])
  # A 'new' ad never appears before the eval period, in any split.
  new_ads = {ad for ad, _, c in found[splits.EVAL] if c == features.COHORT_NEW}
  assert not new_ads & {ad for ad, _, _ in found[splits.TRAIN] + found[splits.VALIDATION]}
