"""How ExampleGen splits the rows it read: out of time, so the eval split looks like next month.

With a TIME field in features.py, rows of the latest span are cut by their time:
  eval        the last `eval_fraction` of the latest span's time range
  validation  the `validation_fraction` of that range just before it (early stopping, tuning)
  train       everything earlier, including every older span of the window
so neither the new model nor the served one (trained on earlier months) has seen an eval row,
and eval rows are later than every row the model learned from, as next month's will be.
With a cohort_key field too, every example gets the derived `cohort` field: `new` when its ad
was first seen (in the whole window read) inside the eval period, else `established`.

Without a TIME field the rows are split at random by a hash of the row, in the same
proportions; the run summary then warns that the eval figures overstate next month's.

Each split is then written shuffled on disk (WriteShards): SHARDS gzipped TFRecord files, every
row in a random one and at a random place in it, so a reader streaming the files meets the
months mixed and needs no shuffle of the whole split (models/trainer.py).
"""
import dataclasses
import hashlib
import os
from typing import Dict, Iterable, Optional, Tuple

import apache_beam as beam
import tensorflow as tf

from models import features

TRAIN, VALIDATION, EVAL = 'train', 'validation', 'eval'
NAMES = (TRAIN, VALIDATION, EVAL)
SHARDS = 16  # files per split
# Seeds the rows' places on disk; not the hash of the hash split, so the two are independent.
_PLACE_SEED = b'shards'
_FILE_PREFIX = 'data_tfrecord'  # TFX's name for ExampleGen's files


@dataclasses.dataclass(frozen=True)
class SplitConfig:
  eval_fraction: float = 0.2  # of the latest span's time range
  validation_fraction: float = 0.1

  def hash_buckets(self) -> Dict[str, int]:
    """Buckets per split, for the hash split of a log without time (and TFX's output config)."""
    evaluation = round(100 * self.eval_fraction)
    validation = round(100 * self.validation_fraction)
    return {TRAIN: 100 - evaluation - validation, VALIDATION: validation, EVAL: evaluation}


def _int_value(example: tf.train.Example, name: str) -> int:
  return example.features.feature[name].int64_list.value[0]


def _key_value(example: tf.train.Example, name: str) -> bytes:
  return example.features.feature[name].bytes_list.value[0]


def time_cuts(t_min: int, t_max: int, config: SplitConfig) -> Tuple[float, float]:
  """(validation start, eval start) inside the latest span's time range [t_min, t_max]."""
  if t_max <= t_min:
    raise ValueError(
        f'Every row of the latest span has the same {features.time_feature().name} '
        f'({t_min}): an out-of-time split needs a range of times. Give the rows their '
        'impression times, or remove the TIME field from models/features.py to split at '
        'random.')
  span = t_max - t_min
  return (t_min + (1 - config.eval_fraction - config.validation_fraction) * span,
          t_min + (1 - config.eval_fraction) * span)


def assign(span: int, time: int, latest_span: int, cuts: Tuple[float, float]) -> str:
  if span != latest_span or time < cuts[0]:
    return TRAIN
  return VALIDATION if time < cuts[1] else EVAL


def _hash_split(example: tf.train.Example, config: SplitConfig) -> str:
  buckets = config.hash_buckets()
  bucket = int(hashlib.md5(example.SerializeToString(deterministic=True)).hexdigest(), 16) % 100
  for name in NAMES:
    if bucket < buckets[name]:
      return name
    bucket -= buckets[name]
  return EVAL


class _Assign(beam.DoFn):
  """(span, example) -> the example, tagged with its split and given its cohort."""

  def __init__(self, latest_span: int, config: SplitConfig):
    self._latest_span = latest_span
    self._config = config
    self._time = features.time_feature()
    self._cohort_key = features.cohort_key_feature()
    self._cohort = features.cohort_feature()

  def process(self, element, cuts=None, first_seen=None):
    span, example = element
    if self._time is None:
      yield beam.pvalue.TaggedOutput(_hash_split(example, self._config), example)
      return
    split = assign(span, _int_value(example, self._time.name), self._latest_span, cuts)
    if self._cohort is not None:
      seen = first_seen[_key_value(example, self._cohort_key.name)]
      cohort = features.COHORT_NEW if seen >= cuts[1] else features.COHORT_ESTABLISHED
      original, example = example, tf.train.Example()
      example.CopyFrom(original)  # Beam's input elements must not be mutated
      example.features.feature[self._cohort.name].bytes_list.value.append(cohort.encode())
    yield beam.pvalue.TaggedOutput(split, example)


@beam.ptransform_fn
def SplitExamples(keyed_examples: beam.PCollection, latest_span: int,  # pylint: disable=invalid-name
                  config: SplitConfig) -> Dict[str, beam.PCollection]:
  """(span, tf.Example) pairs -> {split name: tf.Examples}."""
  time = features.time_feature()
  side = {}
  if time is not None:
    latest_times = (keyed_examples
                    | 'LatestSpan' >> beam.Filter(lambda kv: kv[0] == latest_span)
                    | 'Time' >> beam.Map(lambda kv: _int_value(kv[1], time.name)))
    t_min = latest_times | 'MinTime' >> beam.CombineGlobally(min)
    t_max = latest_times | 'MaxTime' >> beam.CombineGlobally(max)
    cuts = (t_min | 'Cuts' >> beam.Map(
        lambda low, high: time_cuts(low, high, config), high=beam.pvalue.AsSingleton(t_max)))
    side['cuts'] = beam.pvalue.AsSingleton(cuts)
    key = features.cohort_key_feature()
    if key is not None and features.cohort_feature() is not None:
      first_seen = (keyed_examples
                    | 'KeyTime' >> beam.Map(lambda kv: (_key_value(kv[1], key.name),
                                                        _int_value(kv[1], time.name)))
                    | 'FirstSeen' >> beam.CombinePerKey(min))
      side['first_seen'] = beam.pvalue.AsDict(first_seen)
  tagged = keyed_examples | 'Assign' >> beam.ParDo(_Assign(latest_span, config), **side
                                                   ).with_outputs(*NAMES)
  return {name: tagged[name] for name in NAMES}


def _placed(serialized: bytes) -> Tuple[int, Tuple[int, bytes]]:
  """A row -> (its shard, (its place, the row)): the place is a seeded hash of the row, its
  shard the place modulo SHARDS, its rank in the shard the order of places. Every runner and
  every rerun then puts a row in the same place, whatever order the rows come in
  (beam.Reshuffle keeps their order on the DirectRunner)."""
  place = int.from_bytes(hashlib.blake2b(serialized, digest_size=7, key=_PLACE_SEED).digest(),
                         'big')
  return place % SHARDS, (place, serialized)


def _shard_path(split_uri: str, shard: int) -> str:
  return os.path.join(split_uri, f'{_FILE_PREFIX}-{shard:05d}-of-{SHARDS:05d}.gz')


def _write_shard(grouped: Tuple[int, Iterable[Optional[Tuple[int, bytes]]]], split_uri: str):
  """(shard, its rows) -> the shard's file, rows in the order of their places (None: the
  shard's marker)."""
  shard, rows = grouped
  tf.io.gfile.makedirs(split_uri)
  with tf.io.TFRecordWriter(_shard_path(split_uri, shard), options='GZIP') as writer:
    for _, serialized in sorted(row for row in rows if row is not None):
      writer.write(serialized)


@beam.ptransform_fn
def WriteShards(examples: beam.PCollection, split_uri: str):  # pylint: disable=invalid-name
  """tf.Examples -> SHARDS files under split_uri, each row at its place (_placed); every shard is
  written, an empty one too (a split without rows is then still a readable split)."""
  placed = (examples
            | 'Serialize' >> beam.Map(lambda e: e.SerializeToString(deterministic=True))
            | 'Place' >> beam.Map(_placed))
  markers = examples.pipeline | 'Shards' >> beam.Create([(s, None) for s in range(SHARDS)])
  return ((placed, markers)
          | 'Flatten' >> beam.Flatten()
          | 'GroupByShard' >> beam.GroupByKey()
          | 'Write' >> beam.Map(_write_shard, split_uri=split_uri))
