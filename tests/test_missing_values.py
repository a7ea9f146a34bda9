"""A log of one's own with missing numbers and rare categorical values, declared in
features.py: the row rules, the serving client and the Transform graph on tiny rows.

One graph is analysed for all of it (an analysis costs seconds): a numeric field with a
missing indicator, a categorical field whose rare values fall below vocabulary_min_count and
one whose values outnumber vocabulary_top_k."""
import functools
import math

import numpy as np
import pytest
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata

from models import features
from models import preprocessing
from models import rows
from schema import generate as schema_generate
from serving import client

OBSERVED = [float(v) for v in range(1, 13)]  # 12 values seen, then 8 missing
MISSING_ROWS = 8
# Counts of each value: 'c' and 'e' are below the min count of 2 (top-k 3 would keep one of
# them); all of 'w'..'z' reach it, and top-k 3 leaves 'w' out.
RARE = ['a'] * 10 + ['b'] * 8 + ['c', 'e']
MANY = ['x'] * 8 + ['y'] * 6 + ['z'] * 4 + ['w'] * 2
CONFIG = {'vocabulary_min_count': 2, 'vocabulary_top_k': 3, 'numeric_buckets': 4}


def _log_features():
  return (
      features.Feature('click', features.LABEL, 'int', 'Clicked.', value_range=(0, 1)),
      features.Feature('count', features.NUMERIC, 'float', 'A count, often empty.',
                       required=False),
      features.Feature('rare', features.CATEGORICAL, 'string', 'Two values seen once.'),
      features.Feature('many', features.CATEGORICAL, 'string', 'Four values.'),
  )


@pytest.fixture
def own_log(monkeypatch):
  monkeypatch.setattr(features, 'FEATURES', _log_features())
  monkeypatch.setattr(features, 'LABEL_KEY', 'click')
  return {f.name: f for f in features.FEATURES}


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
  """(the Transform graph of the log's rows under CONFIG, its transformed rows)."""
  out = tmp_path_factory.mktemp('missing_values')
  counts = OBSERVED + [math.nan] * MISSING_ROWS
  raw = [{'click': [i % 2], 'count': [c], 'rare': [r], 'many': [m]}
         for i, (c, r, m) in enumerate(zip(counts, RARE, MANY))]
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(features, 'FEATURES', _log_features())
    patch.setattr(features, 'LABEL_KEY', 'click')
    metadata = dataset_metadata.DatasetMetadata(schema_generate.build_schema())
    with tft_beam.Context(temp_dir=str(out / 'tmp'), force_tf_compat_v1=False):
      (data, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
          functools.partial(preprocessing.preprocessing_fn, custom_config=CONFIG),
          output_record_batches=False)
      _ = transform_fn | tft_beam.WriteTransformFn(str(out / 'graph'))
  return tft.TFTransformOutput(str(out / 'graph')), data


def _transform(output, **values):
  """One raw row through the graph, as served; the other fields take a seen value."""
  row = dict({'click': 0, 'count': 1.0, 'rare': 'a', 'many': 'x'}, **values)
  raw = {name: np.array([[value]]) for name, value in row.items()}
  return {k: v.numpy()[0] for k, v in output.transform_raw_features(raw).items()}


def test_only_an_optional_float_without_default_has_a_missing_indicator(own_log):
  assert own_log['count'].missing_indicator and features.is_missing(own_log['count'].default)
  assert not any(f.missing_indicator for f in features.FEATURES if f.name != 'count')
  with_default = features.Feature('n', features.NUMERIC, 'float', 'N.', required=False,
                                  default=0.0)
  assert not with_default.missing_indicator and with_default.default == 0.0


@pytest.mark.parametrize('declared,words', [
    (dict(role=features.NUMERIC, dtype='int', required=False),
     "an optional numeric 'int' field needs a default.*declare dtype 'float' and no default"),
    (dict(role=features.CATEGORICAL, dtype='string', required=False),
     "an optional categorical 'string' field needs a default"),
    (dict(role=features.NUMERIC, dtype='int', required=False, default=math.nan),
     "an optional numeric 'int' field needs a default"),
    (dict(role=features.NUMERIC, dtype='float', default=1.0),
     'a required field never uses its default 1.0; declare required=False'),
])
def test_inconsistent_missing_value_declarations_are_refused_in_words(declared, words):
  with pytest.raises(ValueError, match=f'features.py: n: {words}'):
    features.Feature('n', description='N.', **declared)


def test_an_empty_cell_is_written_as_nan_and_other_values_stay_checked(own_log):
  header = ['click', 'count', 'rare', 'many']
  parser = rows.RowParser(header)
  example, refusal = parser.parse('log.csv', rows.Record(2, '1,,a,x', ('1', '', 'a', 'x')))
  assert refusal is None
  assert math.isnan(example.features.feature['count'].float_list.value[0])
  _, refusal = parser.parse('log.csv', rows.Record(3, '1,inf,a,x', ('1', 'inf', 'a', 'x')))
  assert refusal == "count: inf is not a finite number"


def test_a_request_without_the_field_is_sent_as_missing(own_log):
  instance, problems = client.validate({'rare': 'a', 'many': 'x'})
  assert problems == [] and math.isnan(instance['count'])


def test_missing_values_get_the_training_mean_and_an_indicator(graph):
  output, data = graph
  name = features.transformed_name('count')
  missing = preprocessing.missing_name('count')
  assert [row[missing] for row in data] == [0.0] * len(OBSERVED) + [1.0] * MISSING_ROWS
  mean = float(np.mean(OBSERVED))
  as_mean, as_nan = _transform(output, count=mean), _transform(output, count=math.nan)
  assert (as_mean[missing], as_nan[missing]) == (0.0, 1.0)
  for out in (name, preprocessing.bucket_name('count')):
    assert as_nan[out] == pytest.approx(as_mean[out]), out


def test_scaling_and_quantiles_come_from_the_observed_values(graph):
  """The 8 stand-ins at the mean would shrink the variance and crowd the middle buckets."""
  output, data = graph
  seen = data[:len(OBSERVED)]
  z = np.array([row[features.transformed_name('count')] for row in seen])
  assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, rel=1e-4)
  bucket = preprocessing.bucket_name('count')
  assert preprocessing.num_ids(output, bucket) == CONFIG['numeric_buckets']
  per_bucket = np.bincount([int(row[bucket]) for row in seen])
  assert list(per_bucket) == [3, 3, 3, 3]


def test_values_below_the_min_count_or_past_the_top_k_hash_into_the_oov_buckets(graph):
  output, _ = graph
  oov = preprocessing.PreprocessingConfig().oov_buckets
  for field, kept, left_out in (('rare', ['a', 'b'], ['c', 'e']),
                                ('many', ['x', 'y', 'z'], ['w'])):
    size = output.vocabulary_size_by_name(field)
    assert size == len(kept), field
    assert preprocessing.oov_buckets(output, field) == oov, field
    ids = [int(_transform(output, **{field: v})[features.transformed_name(field)])
           for v in kept + left_out]
    assert sorted(ids[:len(kept)]) == list(range(size)), field
    assert all(size <= i < size + oov for i in ids[len(kept):]), field


@pytest.mark.parametrize('name,value', [('vocabulary_min_count', 0),
                                        ('vocabulary_top_k', -1)])
def test_vocabulary_thresholds_are_checked(name, value):
  with pytest.raises(ValueError, match=f'preprocessing.{name} must be >= '):
    preprocessing.PreprocessingConfig(**{name: value})
