"""The out-of-time split protocol: eval rows come after every training row; cohorts."""
import glob
import os

import apache_beam as beam
import pytest
import tensorflow as tf

from components.image_csv_example_gen import splits
from models import features

CONFIG = splits.SplitConfig(eval_fraction=0.2, validation_fraction=0.1)
# The time split and cohorts need a TIME and a cohort_key field, as the sample log has: the
# tests of them are sample_fields (None here for a log without them).
TIME, KEY, COHORT = (getattr(field, 'name', None) for field in (
    features.time_feature(), features.cohort_key_feature(), features.cohort_feature()))


def _example(ad: str, time: int, label: int = 0) -> tf.train.Example:
  example = tf.train.Example()
  example.features.feature[KEY].bytes_list.value.append(ad.encode())
  example.features.feature[TIME].int64_list.value.append(time)
  example.features.feature[features.LABEL_KEY].int64_list.value.append(label)
  return example


def test_time_cuts_and_assignment():
  cuts = splits.time_cuts(list(range(101)), CONFIG)  # 101 quantiles of times 0..100
  assert cuts == (70, 80)
  assert splits.assign(2, 10, latest_span=2, cuts=cuts) == splits.TRAIN
  assert splits.assign(2, 75, latest_span=2, cuts=cuts) == splits.VALIDATION
  assert splits.assign(2, 80, latest_span=2, cuts=cuts) == splits.EVAL
  # An older month of the window always trains, whatever its times.
  assert splits.assign(1, 95, latest_span=2, cuts=cuts) == splits.TRAIN


@pytest.mark.sample_fields
def test_a_month_without_a_time_range_is_refused_in_words():
  with pytest.raises(ValueError, match=f'same {TIME}'):
    splits.time_cuts([5, 5, 5], CONFIG)


def _write(keyed, out, sort_bytes=splits.SORT_BYTES):
  """Runs WriteSplits into out/<split>; returns {split: [shard's [(ad, time, cohort)]]}."""
  uris = {name: str(out / name) for name in splits.NAMES}
  with beam.Pipeline() as pipeline:
    _ = (pipeline | beam.Create(keyed)
         | splits.WriteSplits(latest_span=2, config=CONFIG, split_uris=uris,
                              temp_dir=str(out / 'temp'), sort_bytes=sort_bytes))
  return {name: [[_fields(record.numpy())
                  for record in tf.data.TFRecordDataset(path, compression_type='GZIP')]
                 for path in sorted(glob.glob(os.path.join(uri, '*')))]
          for name, uri in uris.items()}


def _fields(serialized: bytes):
  feature = tf.train.Example.FromString(serialized).features.feature
  return (feature[KEY].bytes_list.value[0].decode(), feature[TIME].int64_list.value[0],
          feature[COHORT].bytes_list.value[0].decode())


def _split(keyed, out):
  """{split: sorted [(ad, time, cohort)]}, whichever shard holds them."""
  return {name: sorted(row for shard in shards for row in shard)
          for name, shards in _write(keyed, out).items()}


@pytest.mark.sample_fields
def test_no_eval_row_in_the_training_period_and_cohorts(tmp_path):
  # Span 2 has 100 rows at t = 1000, 1010, ..., 1990: eval is its last 20 rows in time,
  # validation the 10 before them.
  keyed = [(1, _example('ad_old', 10)), (1, _example('ad_old', 500))]
  keyed += [(2, _example('ad_old', 1000 + 10 * i)) for i in range(95)]
  keyed += [(2, _example('ad_new', 1950)), (2, _example('ad_new', 1990)),
            (2, _example('ad_mid', 1500)), (2, _example('ad_mid', 1960)),
            (2, _example('ad_old', 1970))]
  found = _split(keyed, tmp_path)
  assert 19 <= len(found[splits.EVAL]) <= 21 and 9 <= len(found[splits.VALIDATION]) <= 11
  assert len(found[splits.TRAIN]) == len(keyed) - len(found[splits.EVAL]) - len(
      found[splits.VALIDATION])
  assert ('ad_old', 10, 'established') in found[splits.TRAIN]  # an older month trains
  last_training = max(t for _, t, _ in found[splits.TRAIN] + found[splits.VALIDATION])
  assert all(t > last_training for _, t, _ in found[splits.EVAL])
  assert max(t for _, t, _ in found[splits.TRAIN]) < min(t for _, t, _ in found[
      splits.VALIDATION])
  # An ad first seen in the eval period is new; one seen before it is established, even in eval.
  cohorts = {(ad, cohort) for ad, _, cohort in found[splits.EVAL]}
  assert ('ad_new', 'new') in cohorts and ('ad_mid', 'established') in cohorts
  new_ads = {ad for ad, _, c in found[splits.EVAL] if c == features.COHORT_NEW}
  assert new_ads == {'ad_new'}
  assert not new_ads & {ad for ad, _, _ in found[splits.TRAIN] + found[splits.VALIDATION]}


@pytest.mark.sample_fields
def test_every_shard_of_every_split_is_written_and_pieces_sort_like_the_whole(tmp_path):
  """With a sort budget far below a shard's bytes, a shard is sorted piece by piece on local
  disk: the same rows land in the same shards and splits, not in their input order, and a
  rerun writes the same order."""
  keyed = [(span, _example(f'ad_{i % 7}', 1000 * (span - 1) + i % 1000))
           for span in (1, 2) for i in range(1500)]
  whole = _write(keyed, tmp_path / 'whole')
  pieces = _write(keyed, tmp_path / 'pieces', sort_bytes=2000)
  for name in splits.NAMES:
    assert len(whole[name]) == len(pieces[name]) == splits.SHARDS
    for one, other in zip(whole[name], pieces[name]):
      assert sorted(one) == sorted(other)
  train = [row for shard in pieces[splits.TRAIN] for row in shard]
  assert train != sorted(train, key=lambda row: row[1])  # not in time (input) order
  assert _write(keyed, tmp_path / 'again', sort_bytes=2000) == pieces


@pytest.mark.sample_fields
def test_cut_points_follow_the_rows_not_the_range_of_a_time_field(tmp_path):
  """Times as YYMMDDHH (a gap of 77 between 23h and the next day's 0h): cuts at fractions of
  the range would put 60 % of the range in the gap and every row of the second day in eval;
  quantiles give eval and validation their shares of rows."""
  hours = [day * 100 + hour for day in (14102100, 14102200) for hour in range(24)]
  keyed = [(2, _example(f'ad_{i % 5}', hours[i % 48], i % 2)) for i in range(960)]
  found = _split(keyed, tmp_path)
  share = {name: len(rows) / len(keyed) for name, rows in found.items()}
  assert abs(share[splits.EVAL] - 0.2) < 0.03 and abs(share[splits.VALIDATION] - 0.1) < 0.03
  assert max(t for _, t, _ in found[splits.VALIDATION]) < min(t for _, t, _ in found[splits.EVAL])


def test_the_bundles_time_quantiles_merge_into_those_of_all_rows():
  """Pass 1 sums up each bundle's latest-span times; merged, they give the quantiles of all."""
  def accumulated(times):
    accumulator = splits.QUANTILES_FN.create_accumulator()
    for time in times:
      accumulator = splits.QUANTILES_FN.add_input(accumulator, time)
    return accumulator

  merge = splits._MergeQuantiles()  # pylint: disable=protected-access
  merged = merge.create_accumulator()
  for bundle in (range(0, 3000, 2), range(1, 3000, 2), range(3000, 4000)):
    merged = merge.add_input(merged, accumulated(bundle))
  assert merge.extract_output(merged) == splits.QUANTILES_FN.extract_output(
      accumulated(range(4000)))
  validation_start, eval_start = splits.time_cuts(merge.extract_output(merged), CONFIG)
  assert abs(validation_start - 2800) <= 4 and abs(eval_start - 3200) <= 4  # 0.1 % of rows
