"""Per-field skew (captured traffic vs the served model's training data) and drift (this span's
traffic vs the previous span's), with TFDV's comparators and the thresholds of features.py.

Captured CSVs are read like the data gate reads raw months (components/row_statistics.py): by
the row rules, a line they refuse left out and counted, each field typed by the schema; values
outside a field's range or domain are kept, for the schema check to name.
"""
import re
from typing import Dict, List, Optional

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2

from components import data_gate
from components import row_statistics
from models import features
from monitoring.measures import DRIFT, SCHEMA, SKEW, Measure

Stats = statistics_pb2.DatasetFeatureStatisticsList
# The data gate's helpers: keep some fields of a statistics proto; the schema's drift fields.
_only = data_gate._only  # pylint: disable=protected-access
_drift_features = data_gate._drift_features  # pylint: disable=protected-access
_MOVED_MOST = re.compile(r'The feature value with maximum difference is: (.+)$')
_METHODS = {anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: 'L-infinity distance',
            anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE:
                'Jensen-Shannon divergence'}


def skew_names() -> List[str]:
  return [f.name for f in features.skew_features()]


def _subset(schema: schema_pb2.Schema, names: List[str]) -> schema_pb2.Schema:
  kept = schema_pb2.Schema()
  kept.default_environment.extend(schema.default_environment)
  kept.feature.extend(f for f in schema.feature if f.name in names)
  return kept


def traffic(csv_pattern: str, schema: schema_pb2.Schema,
            csv_format: Optional[features.CsvFormat] = None) -> row_statistics.Counted:
  """Statistics of the skew fields of the rows of captured (or raw monthly) CSV files that
  the row rules accept, and the count of the lines they refused (left out). Values outside
  a field's range or domain are kept: skew() names them (the schema's complaints). The files
  are in `csv_format`: capture.CSV_FORMAT for captured rows, the log's by default."""
  return row_statistics.statistics(csv_pattern, schema, skew_names(),
                                   optional=[features.LABEL_KEY], values=False,
                                   csv_format=csv_format)


def _moved_most(found: anomalies_pb2.Anomalies) -> Dict[str, str]:
  """Field -> the value whose frequency moved most, as TFDV names it in its description."""
  result = {}
  for name, info in found.anomaly_info.items():
    for reason in info.reason:
      match = _MOVED_MOST.search(reason.description)
      if match:
        result[name] = match.group(1)
  return result


def _measures(found: anomalies_pb2.Anomalies, kind: str, against: str) -> List[Measure]:
  moved_most = _moved_most(found)
  result = []
  for info in found.drift_skew_info:
    name = info.path.step[-1]
    measurements = info.skew_measurements if kind == SKEW else info.drift_measurements
    for m in measurements:
      broken = m.value > m.threshold
      words = (f'{_METHODS.get(m.type, "distance")} {m.value:.3f} against {against}, '
               f'threshold {m.threshold:g}')
      if name in moved_most:
        words += f'; the value that moved most: {moved_most[name]}'
      result.append(Measure(kind, name, m.value, m.threshold, broken, words))
  return sorted(result, key=lambda m: (not m.broken, m.name))


def skew(training: Stats, serving: Stats, schema: schema_pb2.Schema) -> List[Measure]:
  """Skew of every skew field, plus the schema's complaints about the serving traffic
  (values outside a field's domain or range, missing fields)."""
  names = skew_names()
  fields_schema = _subset(schema, names)
  found = tfdv.validate_statistics(_only(training, names), fields_schema,
                                   serving_statistics=serving)
  result = _measures(found, SKEW, 'the training data')
  invalid = tfdv.validate_statistics(serving, fields_schema)
  for name, info in sorted(invalid.anomaly_info.items()):
    for reason in info.reason:
      result.insert(0, Measure(SCHEMA, name, None, None, True,
                               f'{reason.short_description}: {reason.description}'))
  return result


def drift(current: Stats, previous: Optional[Stats], schema: schema_pb2.Schema
          ) -> List[Measure]:
  """Drift of the fields with a drift comparator, this span's traffic vs the previous span's."""
  if previous is None:
    return []
  names = _drift_features(schema)
  found = tfdv.validate_statistics(_only(current, names), _subset(schema, names),
                                   previous_statistics=_only(previous, names))
  return _measures(found, DRIFT, "the previous span's traffic")
