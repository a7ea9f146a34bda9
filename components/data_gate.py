"""DataGate: stops the run before Transform/Trainer when the data is bad, in plain words.

ExampleValidator records schema anomalies but does not stop a TFX run. This component
reads its anomalies, adds a drift check of the new span against the previous span for the
fields whose schema carries a drift comparator, writes everything to `report.md` in its
output artifact and raises DataValidationError listing each anomaly. Transform is wired to
run after it, so bad data never reaches the Trainer.

Drift compares the new span's CSV with the previous span's (models/data_layout.py; only the
drift fields), both read the same way: not the ExampleGen splits, whose training split mixes
the older months of the window into the new one and would dilute a shift, and not a
Resolver: open-source Kubeflow Pipelines cannot run resolvers. Each CSV is read as a stream,
in Beam, in the log's format (features.CSV_FORMAT: delimiter, header or declared columns) by
ExampleGen's own reader and row rules (components/row_statistics.py): a line they
refuse (not UTF-8, a NUL, the wrong number of columns, a bad value or label) is left out,
never fatal, and so is every line ExampleGen's rejected-rows report names (e.g. for its
creative: DataGate reads none), so the statistics describe the rows ExampleGen accepted.
TFDV computes them from tf.Examples of the drift fields, typed by the schema; they are kept
in the output artifact under `statistics/span-<N>/`.
"""
import os
from typing import Dict, FrozenSet, List, Optional, Sequence

from absl import logging
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.dsl.component.experimental.annotations import BeamComponentParameter
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components import row_statistics
from components.image_csv_example_gen import executor
from components.image_csv_example_gen import splits
from models import data_layout

STATS_SPLIT = splits.TRAIN  # the split name the drift anomalies are recorded under
REPORT_FILE = 'report.md'
STATISTICS_DIR = 'statistics'  # the drift fields' statistics of each span compared
STATISTICS_FILE = 'FeatureStats.pb'


class DataValidationError(ValueError):
  """The data has anomalies; the message lists them in plain words."""


def describe(anomalies: anomalies_pb2.Anomalies) -> List[str]:
  """One line per anomaly reason: '<feature>: <what is wrong>'."""
  lines = []
  for feature, info in sorted(anomalies.anomaly_info.items()):
    for reason in info.reason:
      lines.append(f'{feature}: {reason.short_description}. {reason.description}')
  for reason in anomalies.dataset_anomaly_info.reason:
    lines.append(f'(dataset): {reason.short_description}. {reason.description}')
  return lines


def _drift_features(schema: schema_pb2.Schema) -> List[str]:
  return [f.name for f in schema.feature if f.HasField('drift_comparator')]


def _only(stats: statistics_pb2.DatasetFeatureStatisticsList,
          names: List[str]) -> statistics_pb2.DatasetFeatureStatisticsList:
  kept = statistics_pb2.DatasetFeatureStatisticsList()
  kept.CopyFrom(stats)
  for dataset in kept.datasets:
    features = [f for f in dataset.features if f.path.step[-1:] and f.path.step[-1] in names]
    del dataset.features[:]
    dataset.features.extend(features)
  return kept


def drift_anomalies(current: statistics_pb2.DatasetFeatureStatisticsList,
                    previous: statistics_pb2.DatasetFeatureStatisticsList,
                    schema: schema_pb2.Schema) -> anomalies_pb2.Anomalies:
  """Drift (L-infinity over value frequencies) of the schema's drift fields only."""
  names = _drift_features(schema)
  drift_schema = row_statistics.fields_schema(schema, names)
  found = tfdv.validate_statistics(_only(current, names), drift_schema,
                                   previous_statistics=_only(previous, names))
  result = anomalies_pb2.Anomalies()
  for feature, info in found.anomaly_info.items():
    reasons = [r for r in info.reason
               if anomalies_pb2.AnomalyInfo.Type.Name(r.type).startswith('COMPARATOR')]
    if reasons:
      result.anomaly_info[feature].reason.extend(reasons)
  return result


def span_csv(data_root: str, span: int) -> Optional[str]:
  path = data_layout.ads_csv(data_root, span)
  return path if span >= 1 and FileSystems.exists(path) else None


def rejected_lines(examples_uri: str) -> Dict[str, FrozenSet[int]]:
  """CSV file -> the line numbers of the rows ImageCsvExampleGen rejected there."""
  found: Dict[str, set] = {}
  for row in executor.read_rejected_rows(examples_uri):
    found.setdefault(row['source_file'], set()).add(int(row['line_number']))
  return {path: frozenset(numbers) for path, numbers in found.items()}


def statistics_path(output_dir: str, span: int) -> str:
  return FileSystems.join(output_dir, STATISTICS_DIR, f'span-{span}', STATISTICS_FILE)


def drift_statistics(pipeline: beam.Pipeline, data_root: str, spans: Sequence[int],
                     schema: schema_pb2.Schema, skipped: Dict[str, FrozenSet[int]],
                     output_dir: str) -> Dict[int, statistics_pb2.DatasetFeatureStatisticsList]:
  """Statistics of the drift fields of each span's accepted rows, in one Beam pipeline.

  The rows come through ExampleGen's own reader and row rules (components/row_statistics.py:
  a line they refuse is left out, never fatal; creatives are not read); `skipped` (CSV file
  -> line numbers) names further lines to leave out: those ExampleGen rejected, e.g. for
  their creative."""
  with pipeline as p:
    for span in spans:
      csv_path = data_layout.ads_csv(data_root, span)
      _ = (p
           | f'Span[{span}]' >> row_statistics.RowStatistics(
               [csv_path], schema, _drift_features(schema), skipped)
           | f'WriteSpan[{span}]' >> tfdv.WriteStatisticsToBinaryFile(
               statistics_path(output_dir, span)))
  return {span: tfdv.load_stats_binary(statistics_path(output_dir, span)) for span in spans}


def _load_split_anomalies(artifact) -> Dict[str, anomalies_pb2.Anomalies]:
  result = {}
  for split in artifact_utils.decode_split_names(artifact.split_names):
    path = os.path.join(artifact_utils.get_split_uri([artifact], split), 'SchemaDiff.pb')
    result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
  return result


def write_report(path: str, span: int, problems: Dict[str, List[str]], notes: List[str]) -> str:
  lines = [f'# Data validation of span {span}', '']
  if not any(problems.values()):
    lines.append('No anomalies: the data matches the schema and has not drifted.')
  for section, items in problems.items():
    if items:
      lines += [f'## {section}', ''] + [f'- {item}' for item in items] + ['']
  lines += [f'_{note}_' for note in notes]
  text = '\n'.join(lines) + '\n'
  io_utils.write_string_file(path, text)
  return text


def drift_note(span: int, stats: Dict[int, statistics_pb2.DatasetFeatureStatisticsList],
               spans_read: Sequence[int]) -> str:
  """What the drift check compared, in words."""
  counts = {s: stats[s].datasets[0].num_examples for s in stats}
  note = (f'Drift compared the {counts[span]:,} rows of span {span} with the '
          f'{counts[span - 1]:,} rows of span {span - 1} that the row rules accept.')
  if span - 1 not in spans_read:
    note += (f' ExampleGen did not read span {span - 1} in this run, so its rows with an '
             'unusable creative are counted (DataGate reads no creatives).')
  return note


def _spans_read(examples) -> List[int]:
  spans = examples.get_string_custom_property(executor.SPANS_PROPERTY)
  return [int(span) for span in spans.split(',')] if spans else []


@component(use_beam=True)
def DataGate(  # pylint: disable=invalid-name
    schema: InputArtifact[standard_artifacts.Schema],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    examples: InputArtifact[standard_artifacts.Examples],
    drift: OutputArtifact[standard_artifacts.ExampleAnomalies],
    data_root: Parameter[str],
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None):
  """Raises DataValidationError if ExampleValidator or the drift check found anomalies."""
  schema_proto = io_utils.SchemaReader().read(
      io_utils.get_only_uri_in_dir(schema.uri))
  span = int(examples.span)
  problems = {f'Schema anomalies in split {split}': describe(found)
              for split, found in _load_split_anomalies(anomalies).items()}
  notes = []
  drift.split_names = artifact_utils.encode_split_names([STATS_SPLIT])
  drift_result = anomalies_pb2.Anomalies()
  if span_csv(data_root, span - 1) and span_csv(data_root, span):
    stats = drift_statistics(beam_pipeline, data_root, [span - 1, span], schema_proto,
                             rejected_lines(examples.uri), drift.uri)
    drift_result = drift_anomalies(stats[span], stats[span - 1], schema_proto)
    problems[f'Drift against span {span - 1}'] = describe(drift_result)
    notes.append(drift_note(span, stats, _spans_read(examples)))
  else:
    notes.append(f'No previous span next to span {span}: drift was not checked.')
  io_utils.write_bytes_file(
      os.path.join(artifact_utils.get_split_uri([drift], STATS_SPLIT), 'SchemaDiff.pb'),
      drift_result.SerializeToString())
  report = write_report(os.path.join(drift.uri, REPORT_FILE), span, problems, notes)
  if any(problems.values()):
    raise DataValidationError(
        f'Span {span} failed data validation; the run stops before Transform.\n{report}'
        f'Report: {os.path.join(drift.uri, REPORT_FILE)}')
  logging.info(report)
