"""Tests of ImageCsvExampleGen on tiny spans built in tmp_path."""
import csv
import glob
import io
import os

from ml_metadata import metadata_store
from PIL import Image
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

from components.image_csv_example_gen import component
from components.image_csv_example_gen import executor
from components.image_csv_example_gen import splits
from models import features
from models import preprocessing
from tests import test_image_bombs
from tests import test_rows


# Every test writes rows of the sample log (_row); ExampleGen on a log of one's own runs end to
# end in tests/test_own_csv.py.
pytestmark = pytest.mark.sample_fields


def _png(color) -> bytes:
  buffer = io.BytesIO()
  Image.new('RGB', (8, 8), color).save(buffer, format='PNG')
  return buffer.getvalue()


def _row(i: int, ad_id: str, **overrides) -> dict:
  row = {
      'impression_id': f'imp-{i}', 'ad_id': ad_id, 'campaign_id': 'cmp_1',
      'impression_time': str(1767225600 + 3600 * i), 'advertiser': 'adv_001',
      'category': features.CATEGORIES[i % 3],
      'creative_format': features.CREATIVE_FORMATS[0], 'placement': features.PLACEMENTS[0],
      'device': features.DEVICES[i % 2], 'country': 'US', 'hour': str(i), 'day_of_week': '2',
      'bid_price': f'{1 + i / 4:.2f}', 'headline_length': '30',
      features.IMAGE_PATH_COLUMN: f'images/{ad_id}.png', 'clicked': str(i % 2),
  }
  row.update(overrides)
  return row


def _write_span(input_base, span: int, rows, images: dict, columns=None):
  span_dir = input_base / f'span-{span}'
  (span_dir / 'images').mkdir(parents=True)
  for ad_id, data in images.items():
    (span_dir / 'images' / f'{ad_id}.png').write_bytes(data)
  columns = columns or features.csv_columns()
  with open(span_dir / 'ads.csv', 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      writer.writerow(row if isinstance(row, list) else [row[c] for c in columns])


GOOD_IMAGES = {f'ad_{n}': _png((60 * n, 100, 200)) for n in range(3)}


def _good_rows(count: int):
  return [_row(i, f'ad_{i % 3}') for i in range(count)]


@pytest.fixture
def mixed_span(tmp_path):
  """13 rows over 5 ads: 9 valid, a missing image, a corrupt image, an image too large to
  decode, a bad number."""
  rows = _good_rows(9)
  rows[0]['hour'] = ''  # optional -> default
  rows += [
      _row(9, 'ad_missing'),
      _row(10, 'ad_corrupt'),
      _row(11, 'ad_1', bid_price='abc'),
      _row(12, 'ad_huge'),
  ]
  # A header that claims 5000 x 5000 pixels: a valid PNG stream, too large for the model.
  images = dict(GOOD_IMAGES, ad_corrupt=b'definitely not a png',
                ad_huge=test_image_bombs.png(5000, 5000, rows=1))
  _write_span(tmp_path / 'data', 1, rows, images)
  return tmp_path / 'data'


def _run_executor(input_base, output_dir, max_rejected_fraction=0.05, window_spans=None):
  """Runs the executor with the exec properties the pipeline's component has, on span 1 or on
  a window of the latest `window_spans` spans."""
  examples = standard_artifacts.Examples()
  examples.uri = str(output_dir)
  spans = {'input_config': example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name='single_split', pattern='span-1/ads.csv')])}
  if window_spans:
    spans = {'range_config': range_config_pb2.RangeConfig(
        rolling_range=range_config_pb2.RollingRange(num_spans=window_spans))}
  example_gen = component.ImageCsvExampleGen(
      input_base=str(input_base), max_rejected_fraction=max_rejected_fraction,
      split_config=splits.SplitConfig(), **spans)
  executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]},
                         dict(example_gen.exec_properties))
  return examples


def _read_examples(uri: str):
  files = glob.glob(os.path.join(uri, 'Split-*', '*.gz'))
  return [tf.train.Example.FromString(record.numpy())
          for record in tf.data.TFRecordDataset(files, compression_type='GZIP')]


def test_executor_accepts_valid_rows_and_reports_rejected(mixed_span, tmp_path):
  examples = _run_executor(mixed_span, tmp_path / 'out', max_rejected_fraction=0.5)

  accepted = _read_examples(examples.uri)
  assert len(accepted) == 9
  assert examples.get_int_custom_property('rows_accepted') == 9
  assert examples.get_int_custom_property('rows_rejected') == 4
  by_impression = {e.features.feature['impression_id'].bytes_list.value[0]: e.features.feature
                   for e in accepted}
  first = by_impression[b'imp-0']
  assert first['ad_id'].bytes_list.value == [b'ad_0']
  assert first['hour'].int64_list.value == [features.BY_NAME['hour'].default]
  assert first['bid_price'].float_list.value == pytest.approx([1.0])
  assert first['clicked'].int64_list.value == [0]
  assert features.IMAGE_PATH_COLUMN not in first
  for feature in by_impression.values():
    ad_id = feature['ad_id'].bytes_list.value[0].decode()
    assert feature[features.image_feature().name].bytes_list.value == [GOOD_IMAGES[ad_id]]
    assert set(feature) == {f.name for f in features.example_features()}

  # Rejected rows are named by their key fields: impression / ad / campaign.
  rejected = {row['key'].split('/')[1]: row for row in executor.read_rejected_rows(examples.uri)}
  assert set(rejected) == {'ad_missing', 'ad_corrupt', 'ad_1', 'ad_huge'}
  assert rejected['ad_missing']['reason'].startswith('image missing: ')
  assert rejected['ad_missing']['reason'].endswith('ad_missing.png')
  assert rejected['ad_corrupt']['reason'].endswith(
      'ad_corrupt.png: image is not a known image format; the accepted formats are '
      'JPEG, PNG, GIF, BMP')
  assert rejected['ad_1']['reason'] == "bid_price: 'abc' is not a number"
  assert rejected['ad_huge']['reason'].startswith('image unusable: ')
  assert rejected['ad_huge']['reason'].endswith(
      'ad_huge.png: image is 5000 x 5000 pixels; the most accepted is '
      f'{preprocessing.MAX_IMAGE_PIXELS:,}')
  assert rejected['ad_1']['source_file'].endswith(os.path.join('span-1', 'ads.csv'))
  assert rejected['ad_1']['line_number'] == '13'  # the header is line 1
  assert rejected['ad_1']['line'].startswith('imp-11,ad_1,')


def _shards(split_uri):
  """[[(month, impression id) of each row, in file order] for each file of the split]."""
  shards = []
  for path in sorted(glob.glob(os.path.join(split_uri, '*'))):
    ids = [tf.train.Example.FromString(record.numpy()).features.feature['impression_id']
           .bytes_list.value[0].decode()
           for record in tf.data.TFRecordDataset(path, compression_type='GZIP')]
    shards.append([(int(i.split('-')[0][1:]), i) for i in ids])
  return shards


def test_each_split_is_written_shuffled_over_its_shards(tmp_path):
  """Every month's training rows spread over all the shards, and each shard mixes the months
  in its order: a stream of any file meets them all. A rerun writes the same files."""
  months, rows = (1, 2, 3), 300
  for month in months:
    _write_span(tmp_path / 'data', month, [
        _row(i, f'ad_{i % 3}', impression_id=f'm{month}-{i}', hour=str(i % 24),
             bid_price='1.00')
        for i in range(rows)], GOOD_IMAGES)
  examples = _run_executor(tmp_path / 'data', tmp_path / 'out', window_spans=len(months))
  assert examples.get_int_custom_property('rows_accepted') == len(months) * rows

  train = _shards(os.path.join(examples.uri, 'Split-train'))
  assert len(train) == splits.SHARDS
  for shard in train:
    order = [month for month, _ in shard]
    assert set(order) == set(months)
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches > len(order) / 3, order  # not month by month (that would be 2)
  for name in splits.NAMES:
    assert len(glob.glob(os.path.join(examples.uri, f'Split-{name}', '*'))) == splits.SHARDS
  assert sorted(os.listdir(examples.uri)) == ['Split-eval', 'Split-train', 'Split-validation',
                                              'rejected_rows']  # no pass-1 files left
  rerun = _run_executor(tmp_path / 'data', tmp_path / 'rerun', window_spans=len(months))
  assert _shards(os.path.join(rerun.uri, 'Split-train')) == train


def test_executor_fails_above_max_rejected_fraction(tmp_path):
  rows = _good_rows(8) + [_row(8, 'ad_0', clicked=''), ['imp-9', 'ad_2', 'too few']]
  _write_span(tmp_path / 'data', 1, rows, GOOD_IMAGES)

  with pytest.raises(ValueError, match=r'rejected 2 of 10 rows \(20.0%\)') as error:
    _run_executor(tmp_path / 'data', tmp_path / 'out')
  message = str(error.value)
  assert 'max_rejected_fraction=0.05' in message
  assert 'ads.csv line 10 (imp-8/ad_0/cmp_1): clicked: required value is empty' in message
  assert f'expected {len(features.csv_columns())} columns, got 3' in message
  assert 'rejected_rows' in message


def test_one_line_of_every_bad_kind_costs_that_line_only(tmp_path):
  """Each dirty line (tests/test_rows.py) is rejected by name with its line number and
  counted; the good rows and a row with a quoted newline are accepted."""
  columns = list(features.csv_columns())
  good = [[row[c] for c in columns] for row in _good_rows(12)]
  span_dir = tmp_path / 'data' / 'span-1'
  _write_span(tmp_path / 'data', 1, [], GOOD_IMAGES)
  dirty = test_rows.dirty_lines(_row(5, 'ad_1', impression_id='imp-x'), columns)
  expected = test_rows.write_dirty_csv(str(span_dir), columns, good, dirty)
  examples = _run_executor(tmp_path / 'data', tmp_path / 'out', max_rejected_fraction=0.9)

  rejected = {int(row['line_number']): row for row in executor.read_rejected_rows(examples.uri)}
  bad = {number: reason for number, reason in expected.items() if reason}
  assert sorted(rejected) == sorted(bad)
  for number, reason in bad.items():
    assert reason in rejected[number]['reason'], (number, rejected[number])
    assert rejected[number]['source_file'] == str(span_dir / 'ads.csv')
  assert {row['key'] for row in rejected.values()} >= {'imp-x/ad_1/cmp_1', 'imp-x/ad_1/cmp\\x00x'}
  assert examples.get_int_custom_property('rows_rejected') == len(bad)
  assert examples.get_int_custom_property('rows_accepted') == len(good) + 1
  accepted = _read_examples(examples.uri)
  campaigns = [e.features.feature['campaign_id'].bytes_list.value[0] for e in accepted]
  assert len(accepted) == len(good) + 1 and b'cmp\nwith a newline' in campaigns


def test_executor_rejects_header_without_required_columns(tmp_path):
  columns = [c for c in features.csv_columns() if c != features.LABEL_KEY]
  _write_span(tmp_path / 'data', 1, _good_rows(2), GOOD_IMAGES, columns=columns)

  with pytest.raises(ValueError, match=r"lacks required columns \['clicked'\]"):
    _run_executor(tmp_path / 'data', tmp_path / 'out')


def test_component_picks_latest_span(tmp_path):
  input_base = tmp_path / 'data'
  _write_span(input_base, 1, _good_rows(3), GOOD_IMAGES)
  _write_span(input_base, 2, _good_rows(10), GOOD_IMAGES)
  metadata_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      str(tmp_path / 'metadata.sqlite'))
  example_gen = component.ImageCsvExampleGen(
      input_base=str(input_base), max_rejected_fraction=0.05, split_config=splits.SplitConfig())

  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name='example_gen_test', pipeline_root=str(tmp_path / 'root'),
      components=[example_gen], metadata_connection_config=metadata_config))

  [artifact] = metadata_store.MetadataStore(metadata_config).get_artifacts_by_type('Examples')
  assert artifact.custom_properties['span'].int_value == 2
  assert artifact.custom_properties['rows_accepted'].int_value == 10
  assert artifact.custom_properties['rows_rejected'].int_value == 0


def test_an_empty_validation_split_is_refused_with_the_sizes(tmp_path):
  """Three rows, two at the last time: the cut points (quantiles of the rows' times) leave no
  row between them, and the run stops in words before a Trainer would fail in calibration."""
  rows = [_row(0, 'ad_0'), _row(1, 'ad_1'), _row(1, 'ad_2', impression_id='imp-x')]
  _write_span(tmp_path / 'data', 1, rows, GOOD_IMAGES)
  with pytest.raises(ValueError, match=r'The validation split is empty \(train 1 rows \(0 with '
                                       r'label 1\), validation 0 \(0\), eval 2 \(2\)\)'):
    _run_executor(tmp_path / 'data', tmp_path / 'out')


def test_split_sizes_are_recorded_by_label(tmp_path):
  _write_span(tmp_path / 'data', 1, _good_rows(20), GOOD_IMAGES)  # hours 0..19
  examples = _run_executor(tmp_path / 'data', tmp_path / 'out')
  sizes = {(split, label): examples.get_int_custom_property(
      executor.split_size_property(split, label)) for split in splits.NAMES for label in (0, 1)}
  assert sum(sizes.values()) == 20
  for split in splits.NAMES:
    files = glob.glob(os.path.join(examples.uri, f'Split-{split}', '*.gz'))
    labels = [tf.train.Example.FromString(record.numpy()).features.feature['clicked']
              .int64_list.value[0]
              for record in tf.data.TFRecordDataset(files, compression_type='GZIP')]
    assert (sizes[split, 0], sizes[split, 1]) == (labels.count(0), labels.count(1))
  assert 3 <= sizes['eval', 0] + sizes['eval', 1] <= 5  # the last 20 % of the rows in time


def test_a_header_less_tab_separated_log_is_read_as_features_py_declares(tmp_path,
                                                                          monkeypatch):
  """The sample log's columns in another order, tab-separated, without a header: line 1 is
  the first row, and a rejected row is named by its file and line."""
  columns = tuple(reversed(features.csv_columns()))
  monkeypatch.setattr(features, 'CSV_FORMAT',
                      features.CsvFormat(delimiter='\t', columns=columns))
  rows = _good_rows(10)
  rows[3]['bid_price'] = 'abc'  # line 4
  span_dir = tmp_path / 'data' / 'span-1'
  _write_span(tmp_path / 'data', 1, [], GOOD_IMAGES)
  with open(span_dir / 'ads.csv', 'w', newline='') as f:
    csv.writer(f, delimiter='\t').writerows([row[c] for c in columns] for row in rows)
  examples = _run_executor(tmp_path / 'data', tmp_path / 'out', max_rejected_fraction=0.5)

  [rejected] = executor.read_rejected_rows(examples.uri)
  assert (rejected['source_file'], rejected['line_number'], rejected['reason']) == (
      str(span_dir / 'ads.csv'), '4', "bid_price: 'abc' is not a number")
  accepted = {e.features.feature['impression_id'].bytes_list.value[0].decode()
              for e in _read_examples(examples.uri)}
  assert accepted == {f'imp-{i}' for i in range(10) if i != 3}
