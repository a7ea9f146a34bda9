"""DataGate's anomaly wording and drift check on hand-made statistics."""
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from components import data_gate
from schema import generate


def _stats(counts):
  """Statistics of one string feature 'category' with the given value counts."""
  stats = statistics_pb2.DatasetFeatureStatisticsList()
  dataset = stats.datasets.add(num_examples=sum(counts.values()))
  feature = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.STRING)
  feature.path.step.append('category')
  feature.string_stats.unique = len(counts)
  for value, count in counts.items():
    feature.string_stats.rank_histogram.buckets.add(label=value, sample_count=count)
    feature.string_stats.top_values.add(value=value, frequency=count)
  feature.string_stats.common_stats.num_non_missing = sum(counts.values())
  feature.string_stats.common_stats.min_num_values = 1
  feature.string_stats.common_stats.max_num_values = 1
  return stats


def test_same_mix_has_no_drift():
  mix = {'food': 500, 'travel': 300, 'gaming': 200}
  found = data_gate.drift_anomalies(_stats(mix), _stats(mix), generate.build_schema())
  assert not found.anomaly_info


def test_shifted_mix_is_drift_in_words():
  before = {'food': 500, 'travel': 300, 'gaming': 200}
  after = {'food': 100, 'travel': 300, 'gaming': 600}
  found = data_gate.drift_anomalies(_stats(after), _stats(before), generate.build_schema())
  lines = data_gate.describe(found)
  assert len(lines) == 1 and lines[0].startswith('category: ')
  assert 'gaming' in lines[0] or 'food' in lines[0]


def test_describe_lists_every_reason():
  anomalies = anomalies_pb2.Anomalies()
  info = anomalies.anomaly_info['device']
  info.reason.add(short_description='Unexpected string values',
                  description='Examples contain values missing from the schema: watch.')
  assert data_gate.describe(anomalies) == [
      'device: Unexpected string values. Examples contain values missing from the schema: '
      'watch.']


def test_previous_span_is_found_only_when_it_exists(tmp_path):
  (tmp_path / 'span-1').mkdir()
  (tmp_path / 'span-1' / 'ads.csv').write_text('a\n')
  assert data_gate.previous_span_csv(str(tmp_path), 2).endswith('span-1/ads.csv')
  assert data_gate.previous_span_csv(str(tmp_path), 1) is None
  assert data_gate.previous_span_csv(str(tmp_path), 5) is None
