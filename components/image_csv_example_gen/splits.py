"""How ExampleGen splits the rows it read: out of time, so the eval split looks like next month.

With a TIME field in features.py, rows of the latest span are cut by their time:
  eval        its latest `eval_fraction` of rows in time order
  validation  the `validation_fraction` of rows just before them (early stopping, tuning)
  train       everything earlier, including every older span of the window
The cut points are quantiles of the latest span's times (Beam's approximate quantiles, to
1/QUANTILES of its rows), not fractions of their numeric range: a TIME field that is not
linear (e.g. YYMMDDHH, whose range has gaps between days) or traffic that is not uniform in
time still gets splits of the declared sizes. Rows sharing the time at a cut stay together.
so neither the new model nor the served one (trained on earlier months) has seen an eval row,
and eval rows are later than every row the model learned from, as next month's will be.
With a cohort_key field too, every example gets the derived `cohort` field: `new` when its ad
was first seen (in the whole window read) inside the eval period, else `established`.

Without a TIME field the rows are split at random by a hash of the row, in the same
proportions; the run summary then warns that the eval figures overstate next month's.

Each split is written shuffled on disk: SHARDS gzipped TFRecord files, every row in a random one
and at a random place in it, so a reader streaming the files meets the months mixed and needs no
shuffle of the whole split (models/trainer.py). WriteSplits does it in bounded memory on every
runner, as an external shuffle in two passes:
  1. rows stream into per-bundle temporary files, one per shard (the shard drawn from a seeded
     hash of the row), and the same step sums up each bundle (quantiles of the latest span's
     times, each ad's first time), from which the cut points and first times are combined;
  2. each shard's files are read back, cut into pieces of at most SORT_BYTES on the worker's
     local disk, each piece sorted by the rows' places, and every row, now given its split
     and cohort, written to that split's shard.
No step holds more than SORT_BYTES of rows (pass 1: SHARDS blocks of WRITE_BYTES; plus one ad id
and first time per ad for cohorts), whatever the month's size: Beam's DirectRunner keeps every
grouped or side-input collection in memory, so rows never pass through one (measured with
benchmarks/example_gen_bench.py --trace: each Beam stage's RSS stays flat from 300,000 to
1,000,000 rows read).
"""
import dataclasses
import hashlib
import os
import struct
import tempfile
import uuid
from typing import BinaryIO, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import stats
import tensorflow as tf

from models import features

TRAIN, VALIDATION, EVAL = 'train', 'validation', 'eval'
NAMES = (TRAIN, VALIDATION, EVAL)
SHARDS = 16  # files per split
SORT_BYTES = 64 << 20  # rows a shard's writer sorts in memory at once
QUANTILES = 1001  # of the latest span's times: cut points to 0.1 % of its rows
QUANTILES_FN = stats.ApproximateQuantilesCombineFn.create(num_quantiles=QUANTILES)
WRITE_BYTES = 1 << 20  # pass 1 writes a shard's file in blocks of this size
_QUANTILES_TAG, _FIRST_SEEN_TAG = 'quantiles', 'first_seen'  # pass 1's summaries of a bundle
# Seeds the rows' places on disk; not the hash of the hash split, so the two are independent.
_PLACE_SEED = b'shards'
_FILE_PREFIX = 'data_tfrecord'  # TFX's name for ExampleGen's files
METRICS_NAMESPACE = 'ImageCsvExampleGen'


def counter_name(split: str, label: int) -> str:
  """The Beam counter of a split's rows of one label."""
  return f'{split}_label_{label}'


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


def time_cuts(quantiles: List[int], config: SplitConfig) -> Tuple[int, int]:
  """(validation start, eval start) from the latest span's time quantiles (its minimum
  first, its maximum last, evenly spaced in rows between)."""
  if not quantiles:
    raise ValueError('No row of the latest span was accepted: nothing to cut out of time.')
  t_min, t_max = quantiles[0], quantiles[-1]
  if t_max <= t_min:
    raise ValueError(
        f'Every row of the latest span has the same {features.time_feature().name} '
        f'({t_min}): an out-of-time split needs a range of times. Give the rows their '
        'impression times, or remove the TIME field from models/features.py to split at '
        'random.')
  last = len(quantiles) - 1

  def quantile(fraction: float) -> int:
    return quantiles[round(last * fraction)]

  return (quantile(1 - config.eval_fraction - config.validation_fraction),
          quantile(1 - config.eval_fraction))


def assign(span: int, time: int, latest_span: int, cuts: Tuple[float, float]) -> str:
  if span != latest_span or time < cuts[0]:
    return TRAIN
  return VALIDATION if time < cuts[1] else EVAL


# A row between the passes: its place, span, time (0 without a TIME field), label, cohort key
# length and example length, then the key and the serialized example.
_ROW_HEAD = struct.Struct('>QqqbII')


@dataclasses.dataclass(frozen=True)
class _Row:
  place: int
  span: int
  time: int
  label: int
  key: bytes
  example: bytes  # serialized tf.Example

  def pack(self) -> bytes:
    return (_ROW_HEAD.pack(self.place, self.span, self.time, self.label, len(self.key),
                           len(self.example)) + self.key + self.example)


def _read_rows(f: BinaryIO) -> Iterator[_Row]:
  while True:
    head = f.read(_ROW_HEAD.size)
    if not head:
      return
    place, span, time, label, key_size, example_size = _ROW_HEAD.unpack(head)
    yield _Row(place, span, time, label, f.read(key_size), f.read(example_size))


def _place(serialized: bytes) -> int:
  """A row's place: a seeded hash of the row. Its shard is the place modulo SHARDS and its rank
  the order of places, so every runner and every rerun puts a row in the same place whatever
  order the rows come in (beam.Reshuffle keeps their order on the DirectRunner)."""
  return int.from_bytes(hashlib.blake2b(serialized, digest_size=7, key=_PLACE_SEED).digest(),
                        'big')


class _BucketRows(beam.DoFn):
  """Pass 1: (span, tf.Example) -> the rows in this bundle's file of their shard under
  temp_dir; yields (shard, file) per file when the bundle ends, and on its tagged outputs
  what pass 2's side inputs are combined from: the bundle's quantiles of the latest span's
  times (an accumulator of QUANTILES_FN) and each ad's first time in the bundle. A retried
  bundle writes new files and only the files of the bundle that succeeded are read back.

  One step reads a row's fields once, instead of a Beam branch per side input over every row
  (each costs a Beam step per row), and it writes its files in blocks of WRITE_BYTES."""

  def __init__(self, temp_dir: str, latest_span: int):
    self._temp_dir = temp_dir
    self._latest_span = latest_span
    self._time = features.time_feature()
    self._key = features.cohort_key_feature()
    self._first_seen_wanted = self._time is not None and _cohorts_wanted()

  def start_bundle(self):
    self._bundle = uuid.uuid4().hex
    self._files: Dict[int, Tuple[str, BinaryIO]] = {}
    self._blocks: Dict[int, List[bytes]] = {}
    self._block_bytes: Dict[int, int] = {}
    self._quantiles = QUANTILES_FN.create_accumulator()
    self._first_seen: Dict[bytes, int] = {}

  def process(self, element: Tuple[int, tf.train.Example]):
    span, example = element
    serialized = example.SerializeToString(deterministic=True)
    row = _Row(place=_place(serialized), span=span,
               time=_int_value(example, self._time.name) if self._time else 0,
               label=_int_value(example, features.LABEL_KEY),
               key=_key_value(example, self._key.name) if self._key else b'',
               example=serialized)
    self._write(row.place % SHARDS, row.pack())
    if self._time is None:
      return
    if span == self._latest_span:
      self._quantiles = QUANTILES_FN.add_input(self._quantiles, row.time)
    if self._first_seen_wanted:
      seen = self._first_seen.get(row.key)
      if seen is None or row.time < seen:
        self._first_seen[row.key] = row.time

  def _write(self, shard: int, packed: bytes) -> None:
    """Appends to the shard's block, written out once it holds WRITE_BYTES."""
    self._blocks.setdefault(shard, []).append(packed)
    self._block_bytes[shard] = self._block_bytes.get(shard, 0) + len(packed)
    if self._block_bytes[shard] >= WRITE_BYTES:
      self._flush(shard)

  def _flush(self, shard: int) -> None:
    if shard not in self._files:
      path = FileSystems.join(self._temp_dir, f'{self._bundle}-{shard:05d}')
      self._files[shard] = path, FileSystems.create(
          path, compression_type=CompressionTypes.UNCOMPRESSED)
    self._files[shard][1].write(b''.join(self._blocks.pop(shard)))
    self._block_bytes[shard] = 0

  def finish_bundle(self):
    window = beam.transforms.window.GlobalWindows
    for shard in list(self._blocks):
      self._flush(shard)
    for shard, (path, f) in sorted(self._files.items()):
      f.close()
      yield window.windowed_value((shard, path))
    if self._time is not None:
      yield beam.pvalue.TaggedOutput(_QUANTILES_TAG, window.windowed_value(self._quantiles))
    for key, time in self._first_seen.items():
      yield beam.pvalue.TaggedOutput(_FIRST_SEEN_TAG, window.windowed_value((key, time)))


class _MergeQuantiles(beam.CombineFn):
  """QUANTILES_FN's accumulators (one a bundle of pass 1) -> the quantiles of all of them."""

  def create_accumulator(self):
    return QUANTILES_FN.create_accumulator()

  def add_input(self, mutable_accumulator, element):
    return QUANTILES_FN.merge_accumulators([mutable_accumulator, element])

  def merge_accumulators(self, accumulators):
    return QUANTILES_FN.merge_accumulators(accumulators)

  def extract_output(self, accumulator):
    return QUANTILES_FN.extract_output(accumulator)


def _sorted_rows(paths: List[str], sort_bytes: int) -> Iterator[_Row]:
  """The rows of a shard's files in the order of their places, holding at most about
  sort_bytes of them at once: the files are first cut into pieces on local disk by place."""
  total = sum(m.size_in_bytes for m in FileSystems.match(paths)[0].metadata_list) if paths else 0
  pieces = max(1, -(-total // sort_bytes))
  if pieces == 1:
    yield from sorted(_rows_of(paths), key=lambda row: row.place)
    return
  with tempfile.TemporaryDirectory() as local:
    piece_files = [open(os.path.join(local, str(i)), 'w+b') for i in range(pieces)]
    for row in _rows_of(paths):
      piece_files[(row.place // SHARDS) % pieces].write(row.pack())
    for f in piece_files:
      f.seek(0)
      yield from sorted(_read_rows(f), key=lambda row: row.place)
      f.close()


def _rows_of(paths: List[str]) -> Iterator[_Row]:
  for path in paths:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
      yield from _read_rows(f)


class _WriteShard(beam.DoFn):
  """Pass 2: (shard, its files) -> the shard's file of every split, each row given its split
  and cohort (a None among the files: the marker that makes every shard, an empty one too)."""

  def __init__(self, latest_span: int, config: SplitConfig, split_uris: Dict[str, str],
               sort_bytes: int):
    self._latest_span = latest_span
    self._config = config
    self._split_uris = split_uris
    self._sort_bytes = sort_bytes
    self._counters = {(name, label): beam.metrics.Metrics.counter(
        METRICS_NAMESPACE, counter_name(name, label)) for name in NAMES for label in (0, 1)}
    self._timed = features.time_feature() is not None
    cohort = features.cohort_feature()
    self._cohorts = None
    if _cohorts_wanted():
      # Appending a serialized message merges it into the one before (protobuf's rule), so a
      # row gains its cohort field without being parsed again.
      self._cohorts = {value: tf.train.Example(features=tf.train.Features(feature={
          cohort.name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
      })).SerializeToString() for value in (features.COHORT_NEW, features.COHORT_ESTABLISHED)}

  def process(self, element, cuts=None, first_seen=None):
    shard, paths = element
    paths = sorted(path for path in paths if path is not None)
    writers = {}
    for name, uri in self._split_uris.items():
      tf.io.gfile.makedirs(uri)
      writers[name] = tf.io.TFRecordWriter(_shard_path(uri, shard), options='GZIP')
    for row in _sorted_rows(paths, self._sort_bytes):
      split, example = self._split(row, cuts, first_seen)
      writers[split].write(example)
      self._counters[split, row.label].inc()
    for writer in writers.values():
      writer.close()

  def _split(self, row: _Row, cuts, first_seen) -> Tuple[str, bytes]:
    if not self._timed:
      return _hash_split(row.example, self._config), row.example
    split = assign(row.span, row.time, self._latest_span, cuts)
    if self._cohorts is None:
      return split, row.example
    cohort = (features.COHORT_NEW if first_seen[row.key] >= cuts[1]
              else features.COHORT_ESTABLISHED)
    return split, row.example + self._cohorts[cohort]


def _hash_split(serialized: bytes, config: SplitConfig) -> str:
  buckets = config.hash_buckets()
  bucket = int(hashlib.md5(serialized).hexdigest(), 16) % 100
  for name in NAMES:
    if bucket < buckets[name]:
      return name
    bucket -= buckets[name]
  return EVAL


def _cohorts_wanted() -> bool:
  return features.cohort_key_feature() is not None and features.cohort_feature() is not None


def _side_inputs(bucketed: beam.pvalue.DoOutputsTuple,
                 config: SplitConfig) -> Dict[str, beam.pvalue.AsSideInput]:
  """The cut points of the latest span's times and each ad's first time, for pass 2, from
  pass 1's summaries of its bundles."""
  if features.time_feature() is None:
    return {}
  cuts = (bucketed[_QUANTILES_TAG]
          | 'TimeQuantiles' >> beam.CombineGlobally(_MergeQuantiles())
          | 'Cuts' >> beam.Map(time_cuts, config))
  side = {'cuts': beam.pvalue.AsSingleton(cuts)}
  if _cohorts_wanted():
    first_seen = bucketed[_FIRST_SEEN_TAG] | 'FirstSeen' >> beam.CombinePerKey(min)
    side['first_seen'] = beam.pvalue.AsDict(first_seen)
  return side


def _shard_path(split_uri: str, shard: int) -> str:
  return os.path.join(split_uri, f'{_FILE_PREFIX}-{shard:05d}-of-{SHARDS:05d}.gz')


@beam.ptransform_fn
def WriteSplits(keyed_examples: beam.PCollection, latest_span: int,  # pylint: disable=invalid-name
                config: SplitConfig, split_uris: Dict[str, str], temp_dir: str,
                sort_bytes: int = SORT_BYTES):
  """(span, tf.Example) pairs -> SHARDS files under each split's URI (split_uris: name ->
  URI), rows split out of time and shuffled (see the module docstring). temp_dir holds pass 1's
  files: the caller deletes it once the pipeline has run (a step that deleted them would break
  a retried bundle of pass 2)."""
  bucketed = keyed_examples | 'BucketRows' >> beam.ParDo(
      _BucketRows(temp_dir, latest_span)).with_outputs(_QUANTILES_TAG, _FIRST_SEEN_TAG,
                                                       main='files')
  markers = keyed_examples.pipeline | 'Shards' >> beam.Create([(s, None) for s in range(SHARDS)])
  return ((bucketed.files, markers)
          | 'Flatten' >> beam.Flatten()
          | 'GroupByShard' >> beam.GroupByKey()
          | 'WriteShards' >> beam.ParDo(
              _WriteShard(latest_span, config, split_uris, sort_bytes),
              **_side_inputs(bucketed, config)))
