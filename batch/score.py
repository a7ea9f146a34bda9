"""Batch scoring: a span's ads.csv and creatives -> click probabilities, on Beam.

    python -m batch.score --input data/span-2 --output scores/span-2
        [--model-base-path outputs/serving/adclick] [--version N] [--beam-workers N]
        [Beam flags ...]
    python -m batch.score --data-root data --output scores ...   (latest span -> scores/span-<N>)

Reads the span's ads.csv and the images it names with ImageCsvExampleGen's reader, by the
rules of models/rows.py (same types, defaults and rejections, each rejected row named by its
line; the label column may be absent, from a header-less file's every line too, and a
creative the model cannot decode never reaches it), and scores the accepted rows
with the served SavedModel through tfx-bsl's RunInference on its serving_examples signature:
by default the newest complete version under --model-base-path, the one TF Serving serves
(models/serving_layout.py). Any other flag goes to Beam, so the training pipeline's
DirectRunner and Dataflow flags work here too (e.g. --runner=DataflowRunner --project=...);
--beam-workers N runs it in N worker processes, as local_runner.py does (pipeline/options.py).

The input is read in the log's format (features.CSV_FORMAT: e.g. tab-separated, header-less).
The output folder holds
  scores-SSSSS-of-NNNNN.csv   header impression_id,ad_id,click_probability,model_version: the
                              row's KEY fields (row id, cohort key) name it; a log without a
                              row-id field gets source_file,line_number first instead (line 1
                              being the header where the file has one), as rejected rows do.
                              Comma-separated, whatever the log's format
  rejected_rows/              rejected-*.csv (source_file,line_number,key,reason,line) and
                              accepted-*.txt, as ImageCsvExampleGen writes them
  manifest.json               model_version, model_path, input, rows_read, rows_scored,
                              rows_rejected, and the same counts per input file under `files`
                              (rows_scored + rows_rejected = rows_read)
It is written to a folder beside it and then moved into place, so a rerun replaces the whole
output and never mixes runs. Locally the move is one rename. On GCS, which cannot rename,
the files are copied and manifest.json is written last: an output is whole once it has one.
Every read and write goes through Beam FileSystems, so folders may be local or gs://; the
model is loaded by TensorFlow (local, or real GCS).
"""
import argparse
import datetime
import os
import sys
from typing import Dict, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
import numpy as np
import tensorflow as tf
from tfx_bsl.public.beam import RunInference
from tfx_bsl.public.proto import model_spec_pb2

from components.image_csv_example_gen import executor as example_gen
from components.image_csv_example_gen import spans
from models import data_layout
from models import features
from models import rows
from models import serving_layout
from models import signatures
from models import storage
from pipeline import options

MODEL_VERSION_COLUMN = 'model_version'
MANIFEST = storage.MANIFEST
SCORES_PREFIX = 'scores'
DEFAULT_MODEL_BASE_PATH = serving_layout.model_root(os.path.join('outputs', 'serving'))
_METRICS_NAMESPACE = 'BatchScore'
_ROWS_SCORED = 'rows_scored'


# What names a scored row of a log without a row-id field: its file and line (the columns of
# the rejected rows that name them).
ORIGIN_COLUMNS = ('source_file', 'line_number')


def key_fields() -> List[features.Feature]:
  """The fields that name a scored row: the impression (row id) and its ad (cohort key)."""
  return [f for f in (features.row_id_feature(), features.cohort_key_feature()) if f]


def named_by_origin() -> bool:
  """Whether a score is tied to its row by file and line: the log has no row-id field."""
  return features.row_id_feature() is None


def output_columns() -> List[str]:
  return ((list(ORIGIN_COLUMNS) if named_by_origin() else []) +
          [f.name for f in key_fields()] + [signatures.PREDICTION_KEY, MODEL_VERSION_COLUMN])


def resolve_version(model_base_path: str, version: Optional[int] = None) -> int:
  """The version to score with: the given one, or the newest complete one TF Serving serves."""
  if version is None:
    version = storage.latest_whole_version(model_base_path)
    if version is None:
      raise ValueError(f'No complete model version under {model_base_path}.')
  elif not storage.is_whole(
      serving_layout.version_dir(model_base_path, version)):
    raise ValueError(f'Version {version} under {model_base_path} is missing or incomplete.')
  return version


def _cell(feature: tf.train.Feature) -> str:
  kind = feature.WhichOneof('kind')
  value = getattr(feature, kind).value[0] if kind else ''
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


class _Keyed(beam.DoFn):
  """(span, example[, (file, line)]) -> (the cells naming the row: its file and line where
  given, then its key fields; the serialized example): they travel through RunInference,
  and the example is serialized once."""

  def __init__(self):
    self._names = [f.name for f in key_fields()]

  def process(self, element):
    example = element[1]
    origin = tuple(str(cell) for cell in element[2]) if len(element) > 2 else ()
    yield (origin + tuple(_cell(example.features.feature[name]) for name in self._names),
           example.SerializeToString())


def _probability(tensor) -> float:
  """The single float32 of a PredictionLog output (tf.make_ndarray costs as much as a row's
  parsing)."""
  if tensor.tensor_content:
    return float(np.frombuffer(tensor.tensor_content, dtype=np.float32)[0])
  return float(tensor.float_val[0])


class _FormatRow(beam.DoFn):
  """(key cells, PredictionLog) -> one output CSV line."""

  def __init__(self, version: int):
    self._version = str(version)
    self._scored = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, _ROWS_SCORED)

  def process(self, element):
    key, log = element
    probability = _probability(log.predict_log.response.outputs[signatures.PREDICTION_KEY])
    self._scored.inc()
    yield example_gen.format_csv_row(list(key) + [format(probability, '.7g'), self._version])


def read_manifest(output: str) -> Dict:
  return storage.read_manifest(output)


def score(input_dir: str, output: str, model_base_path: str = DEFAULT_MODEL_BASE_PATH,
          version: Optional[int] = None, beam_args: Sequence[str] = ()) -> Dict:
  """Scores `<input_dir>/ads.csv` into `output`; returns the manifest written there."""
  version = resolve_version(model_base_path, version)
  model_dir = serving_layout.version_dir(model_base_path, version)
  csv_path = FileSystems.join(input_dir, data_layout.ADS_FILE)
  if not FileSystems.exists(csv_path):
    raise ValueError(f'{csv_path} does not exist.')
  header = rows.check_headers([csv_path], optional=[features.LABEL_KEY])
  staging = storage.staging_dir(output)
  spec = model_spec_pb2.InferenceSpecType(saved_model_spec=model_spec_pb2.SavedModelSpec(
      model_path=model_dir, signature_name=[signatures.EXAMPLES_SIGNATURE]))
  pipeline = beam.Pipeline(options=PipelineOptions(list(beam_args)))
  _ = (pipeline
       | 'ReadRows' >> example_gen.ReadRows(
           [(0, csv_path)], header, example_gen.rejected_rows_dir(staging),
           example_gen.report_name(data_layout.ADS_FILE), with_origin=named_by_origin())
       # Typed, so that RunInference knows its input is keyed.
       | 'Key' >> beam.ParDo(_Keyed()).with_output_types(
           beam.typehints.Tuple[beam.typehints.Tuple[str, ...], bytes])
       | 'RunInference' >> RunInference(spec)
       | 'Format' >> beam.ParDo(_FormatRow(version))
       | 'Write' >> beam.io.WriteToText(FileSystems.join(staging, SCORES_PREFIX),
                                        file_name_suffix='.csv',
                                        header=','.join(output_columns())))
  try:
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace(_METRICS_NAMESPACE)
                                      .with_name(_ROWS_SCORED))['counters']
    counts = {'rows_scored': sum(c.committed for c in counters),
              'rows_rejected': len(example_gen.read_rejected_rows(staging))}
    counts['rows_read'] = counts['rows_rejected'] + example_gen.read_accepted_count(staging)
    manifest = dict(
        counts, files={csv_path: counts},  # one input file: its counts are the run's
        model_version=version, model_path=model_dir, input=csv_path,
        scored_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
    storage.publish(staging, output, extra=manifest, replace=True)
  finally:
    if FileSystems.exists(staging) or storage.relative_files(staging):
      storage.delete_tree(staging)  # a failed run leaves nothing behind
  return manifest


def latest_span_dir(data_root: str) -> str:
  found = spans.available_spans(data_root, data_layout.SPLIT_PATTERN)
  if not found:
    raise ValueError(f'No span-<N>/{data_layout.ADS_FILE} under {data_root}.')
  return data_layout.span_dir(data_root, found[-1])


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--input', help='a span folder (holds ads.csv and images/)')
  source.add_argument('--data-root', help='score the latest span-<N> under this folder into '
                      '<output>/span-<N>')
  parser.add_argument('--output', required=True, help='the output folder (local or gs://)')
  parser.add_argument('--model-base-path', default=DEFAULT_MODEL_BASE_PATH,
                      help='TF Serving\'s model base path, <serving_root>/<model_name>')
  parser.add_argument('--version', type=int, help='default: the newest complete version')
  options.add_beam_workers_option(parser)
  args, beam_args = parser.parse_known_args(argv)
  return args, beam_args + options.beam_workers_args(args.beam_workers)


def main(argv=None):
  args, beam_args = parse_args(argv)
  try:
    input_dir, output = args.input, args.output
    if args.data_root:
      input_dir = latest_span_dir(args.data_root)
      output = FileSystems.join(output, FileSystems.split(input_dir)[1])
    manifest = score(input_dir, output, args.model_base_path, args.version, beam_args)
  except ValueError as e:
    sys.exit(f'batch.score: {e}')
  print(f"Scored {manifest['rows_scored']} rows of {manifest['input']} with version "
        f"{manifest[MODEL_VERSION_COLUMN]} ({manifest['rows_rejected']} rejected) into {output}")


if __name__ == '__main__':
  main()
