"""DataGate: stops the run before Transform/Trainer when the data is bad, in plain words.

ExampleValidator records schema anomalies but does not stop a TFX run. This component
reads its anomalies, adds a drift check of the new span against the previous span for the
fields whose schema carries a drift comparator, writes everything to `report.md` in its
output artifact and raises DataValidationError listing each anomaly. Transform is wired to
run after it, so bad data never reaches the Trainer.

The previous span's statistics come straight from its raw CSV (models/data_layout.py; only the
drift fields), not from a Resolver: open-source Kubeflow Pipelines cannot run resolvers. Its
columns are typed by the schema, as ExampleGen typed the new span's: left to guess, TFDV would
read a categorical of integer codes declared 'string' as numbers, and every comparison with
the new span's strings would report drift.
"""
import os
from typing import Dict, List, Optional

from absl import logging
from apache_beam.io.filesystems import FileSystems
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.annotations import Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components.image_csv_example_gen import splits
from models import data_layout

STATS_SPLIT = splits.TRAIN  # drift compares the training split of the new span
REPORT_FILE = 'report.md'


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
  drift_schema = schema_pb2.Schema()
  drift_schema.feature.extend(f for f in schema.feature if f.name in names)
  found = tfdv.validate_statistics(_only(current, names), drift_schema,
                                   previous_statistics=_only(previous, names))
  result = anomalies_pb2.Anomalies()
  for feature, info in found.anomaly_info.items():
    reasons = [r for r in info.reason
               if anomalies_pb2.AnomalyInfo.Type.Name(r.type).startswith('COMPARATOR')]
    if reasons:
      result.anomaly_info[feature].reason.extend(reasons)
  return result


def previous_span_csv(data_root: str, span: int) -> Optional[str]:
  path = data_layout.ads_csv(data_root, span - 1)
  return path if span > 1 and FileSystems.exists(path) else None


def csv_statistics(csv_path: str, schema: schema_pb2.Schema
                   ) -> statistics_pb2.DatasetFeatureStatisticsList:
  """Statistics of the drift fields of a raw CSV, each column typed as the schema declares."""
  return tfdv.generate_statistics_from_csv(csv_path, stats_options=tfdv.StatsOptions(
      schema=schema, infer_type_from_schema=True,
      feature_allowlist=_drift_features(schema)))


def _load_split_anomalies(artifact) -> Dict[str, anomalies_pb2.Anomalies]:
  result = {}
  for split in artifact_utils.decode_split_names(artifact.split_names):
    path = os.path.join(artifact_utils.get_split_uri([artifact], split), 'SchemaDiff.pb')
    result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
  return result


def _load_split_stats(artifact, split) -> statistics_pb2.DatasetFeatureStatisticsList:
  path = os.path.join(artifact_utils.get_split_uri([artifact], split), 'FeatureStats.pb')
  return tfdv.load_stats_binary(path)


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


@component
def DataGate(  # pylint: disable=invalid-name
    statistics: InputArtifact[standard_artifacts.ExampleStatistics],
    schema: InputArtifact[standard_artifacts.Schema],
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
    examples: InputArtifact[standard_artifacts.Examples],
    drift: OutputArtifact[standard_artifacts.ExampleAnomalies],
    data_root: Parameter[str]):
  """Raises DataValidationError if ExampleValidator or the drift check found anomalies."""
  schema_proto = io_utils.SchemaReader().read(
      io_utils.get_only_uri_in_dir(schema.uri))
  span = int(examples.span)
  problems = {f'Schema anomalies in split {split}': describe(found)
              for split, found in _load_split_anomalies(anomalies).items()}
  notes = []
  drift.split_names = artifact_utils.encode_split_names([STATS_SPLIT])
  drift_result = anomalies_pb2.Anomalies()
  previous_csv = previous_span_csv(data_root, span)
  if previous_csv:
    drift_result = drift_anomalies(_load_split_stats(statistics, STATS_SPLIT),
                                   csv_statistics(previous_csv, schema_proto), schema_proto)
    problems[f'Drift against span {span - 1}'] = describe(drift_result)
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
