"""Statistics of some fields of the CSV rows that the row rules accept, in Beam.

Raw months (DataGate's drift check) and captured traffic (the monitoring check) are summarised
the same way: each file is read as a stream by ExampleGen's own reader and row rules
(models/rows.py); a line they refuse (not UTF-8, a NUL, a quoted field left open, the wrong
number of columns, a cell not of its type, a bad value unless `values=False`) is left out and
counted, never fatal. Creatives are neither read nor decoded (RowParser(images=False)): the
statistics are of the other fields. TFDV
computes them as StatisticsGen does (tf.Examples -> Arrow RecordBatches by tfx-bsl ->
tfdv.GenerateStatistics), typed by the schema: left to guess, it would read a categorical of
integer codes declared 'string' as numbers.
"""
import dataclasses
import os
import tempfile
from typing import FrozenSet, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics.metric import Metrics
from apache_beam.metrics.metric import MetricsFilter
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx_bsl.public import tfxio

from models import features
from models import rows

Stats = statistics_pb2.DatasetFeatureStatisticsList
# The Beam counter of the lines the row rules refused.
COUNTER_NAMESPACE = 'row_statistics'
REJECTED_COUNTER = 'rejected_lines'


@dataclasses.dataclass(frozen=True)
class Counted:
  statistics: Stats
  rejected: int  # lines of the files that the row rules refused


def csv_files(csv_pattern: str) -> List[str]:
  """The files a pattern (local or gs://) matches, sorted; ValueError when there are none."""
  paths = rows.matched_paths(csv_pattern)
  if not paths:
    raise ValueError(f'No CSV file matches {csv_pattern}.')
  return paths


def fields_schema(schema: schema_pb2.Schema, names: Sequence[str]) -> schema_pb2.Schema:
  """The schema's features named in `names`."""
  kept = schema_pb2.Schema()
  kept.feature.extend(f for f in schema.feature if f.name in names)
  return kept


def _file_records(csv_path: str, csv_format: Optional[features.CsvFormat]
                  ) -> Iterator[Tuple[str, rows.Record]]:
  return ((csv_path, record) for record in rows.data_records(csv_path, csv_format))


class _FieldsExample(beam.DoFn):
  """(CSV file, record) -> a serialized tf.Example of the named fields; nothing when the row
  rules refuse it (counted) or its line is in `skipped` (CSV file -> line numbers)."""

  def __init__(self, header: Sequence[str], names: Sequence[str],
               skipped: Mapping[str, FrozenSet[int]], values: bool,
               csv_format: Optional[features.CsvFormat]):
    self._header, self._names, self._skipped = list(header), list(names), dict(skipped)
    self._values, self._csv_format = values, csv_format
    self._rejected = Metrics.counter(COUNTER_NAMESPACE, REJECTED_COUNTER)

  def setup(self):
    self._parser = rows.RowParser(self._header, images=False, values=self._values,
                                  csv_format=self._csv_format)

  def process(self, element: Tuple[str, rows.Record]) -> Iterator[bytes]:
    csv_path, record = element
    if record.line_number in self._skipped.get(csv_path, ()):
      return
    example, refusal = self._parser.parse(csv_path, record)
    if refusal:
      self._rejected.inc()
      return
    kept = tf.train.Example()
    for name in self._names:
      kept.features.feature[name].CopyFrom(example.features.feature[name])
    yield kept.SerializeToString()


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.pvalue.PBegin)
def RowStatistics(pipeline: beam.pvalue.PBegin, csv_paths: Sequence[str],  # pylint: disable=invalid-name
                  schema: schema_pb2.Schema, names: Sequence[str],
                  skipped: Optional[Mapping[str, FrozenSet[int]]] = None,
                  optional: Sequence[str] = (), values: bool = True,
                  csv_format: Optional[features.CsvFormat] = None):
  """CSV files (one header, check_headers: `optional` columns may be absent) -> one
  DatasetFeatureStatisticsList of the fields `names` of the rows the row rules accept,
  leaving out `skipped` lines too (CSV file -> line numbers). The lines the rules refuse are
  counted by the Beam counter REJECTED_COUNTER. `values=False` keeps values outside their
  range or domain (RowParser), for a schema check to name them. The files are in
  `csv_format` (default: the log's, features.CSV_FORMAT)."""
  header = rows.check_headers(csv_paths, optional, csv_format)
  kept_schema = fields_schema(schema, names)
  source = tfxio.TFExampleBeamRecord(physical_format='inmem', schema=kept_schema,
                                     telemetry_descriptors=['RowStatistics'])
  return (pipeline
          | 'ListFiles' >> beam.Create(list(csv_paths))
          # Streamed from the read to the statistics (no Reshuffle, which would hold every
          # row): parsing cells costs far less than reading them.
          | 'ReadRecords' >> beam.FlatMap(_file_records, csv_format)
          | 'Fields' >> beam.ParDo(_FieldsExample(header, names, skipped or {}, values,
                                                  csv_format))
          | 'ToRecordBatches' >> source.BeamSource()
          | 'GenerateStatistics' >> tfdv.GenerateStatistics(
              tfdv.StatsOptions(schema=kept_schema, feature_allowlist=list(names))))


def rejected_lines(result: beam.runners.runner.PipelineResult) -> int:
  """The lines the row rules refused in a finished pipeline's RowStatistics."""
  counters = result.metrics().query(
      MetricsFilter().with_namespace(COUNTER_NAMESPACE).with_name(REJECTED_COUNTER))['counters']
  return sum(counter.committed for counter in counters)


def statistics(csv_pattern: str, schema: schema_pb2.Schema, names: Sequence[str],
               optional: Sequence[str] = (), values: bool = True,
               csv_format: Optional[features.CsvFormat] = None) -> Counted:
  """RowStatistics of the files a pattern matches, in a Beam pipeline of its own (the
  DirectRunner), with the count of the lines the row rules refused."""
  with tempfile.TemporaryDirectory() as folder:
    output = os.path.join(folder, 'FeatureStats.pb')
    pipeline = beam.Pipeline()
    _ = (pipeline
         | 'RowStatistics' >> RowStatistics(csv_files(csv_pattern), schema, names,
                                            optional=optional, values=values,
                                            csv_format=csv_format)
         | 'WriteStatistics' >> tfdv.WriteStatisticsToBinaryFile(output))
    result = pipeline.run()
    result.wait_until_finish()
    return Counted(tfdv.load_stats_binary(output), rejected_lines(result))
