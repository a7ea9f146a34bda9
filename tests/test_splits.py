"""The out-of-time split protocol: eval rows come after every training row; cohorts."""
import glob
import os

import apache_beam as beam
import pytest
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


def test_no_eval_row_in_the_training_period_and_cohorts(tmp_path):
  # Span 2 runs from t=1000 to t=2000: eval from 1800, validation from 1700.
  keyed = [(1, _example('ad_old', 10)), (1, _example('ad_old', 500)),
           (2, _example('ad_old', 1000)), (2, _example('ad_old', 1900)),
           (2, _example('ad_mid', 1750)), (2, _example('ad_mid', 1950)),
           (2, _example('ad_new', 1850)), (2, _example('ad_new', 2000))]
  found = _split(keyed, tmp_path)
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
