"""Checks the served model against its captured traffic and, once it arrives, a labelled month.

    python -m monitoring.check [--output-root outputs] [--capture-root <output-root>/capture]
        [--data-root data] [--span N] [--metadata-db <output-root>/metadata.db |
        --metadata-grpc HOST:PORT] [--serving-root <output-root>/serving] [--no-report]

For span N (default: the latest captured one) it compares:
  * skew: the captured traffic of span N with StatisticsGen's statistics of the data the served
    model was trained on (TFDV: L-infinity for categorical fields, Jensen-Shannon divergence for
    numeric ones, thresholds beside the fields in models/features.py), plus the schema's
    domains and ranges;
  * drift: span N's traffic with span N-1's (the drift comparators of features.py);
  * prediction drift: the served predictions with the served model's predictions on its eval
    split (JSD of the two distributions, mean predicted CTR);
  * decay, when `<data-root>/span-N/ads.csv` (the month with its clicks) exists: the served
    model's AUC, log-loss and calibration on it against what its evaluation promised.
Each comparison prints one line; the check is recorded in the history and
<output-root>/monitoring/report.html is rendered again. Exit status 1 when a threshold is
broken (so any scheduler can alert), 2 when there is nothing to check.
"""
import argparse
import collections
import json
import re
import sys
from typing import List, Optional, Tuple

from apache_beam.io.filesystems import FileSystems
from ml_metadata.proto import metadata_store_pb2
import numpy as np
from tfx.utils import path_utils

from components import evaluation_results
from components.image_csv_example_gen import splits
from models import data_layout
from models import rows
from models import serving_layout
from models import storage
from monitoring import fields
from monitoring import history
from monitoring import lineage as lineage_lib
from monitoring import quality
from monitoring import report
from monitoring.measures import Thresholds
from schema import generate as schema_lib
from serving import capture

_SPAN_DIR = re.compile(r'span-(\d+)/?$')


class NothingToCheck(Exception):
  """No captured traffic for the span asked for."""


def captured_spans(capture_root: str) -> List[int]:
  matched = FileSystems.match([f"{capture_root.rstrip('/')}/span-*/{capture.FILE_PREFIX}*"])
  spans = set()
  for m in matched[0].metadata_list:
    found = _SPAN_DIR.search(FileSystems.split(m.path)[0])
    if found:
      spans.add(int(found.group(1)))
  return sorted(spans)


def _prediction(record: rows.Record, columns: int, probability: int) -> Optional[float]:
  """A captured row's click probability; None when the row rules refuse its line or the
  probability is not a number in [0, 1]."""
  if record.refusal or len(record.cells) != columns:
    return None
  try:
    value = float(record.cells[probability])
  except ValueError:
    return None
  return value if 0.0 <= value <= 1.0 else None


def read_capture(capture_root: str, span: int) -> Tuple[np.ndarray, List[str], int]:
  """(click probabilities, model versions, lines left out) of a span's captured rows, read by
  the row reader (models/rows.py): a line it refuses, or whose probability is not one, is
  left out and counted, never fatal."""
  probabilities, versions, left_out = [], [], 0
  for path in rows.matched_paths(capture.file_pattern(capture_root, span)):
    header = rows.read_header(path, capture.CSV_FORMAT)
    probability = header.index(capture.PREDICTION_COLUMN)
    version = header.index(capture.MODEL_VERSION_COLUMN)
    for record in rows.data_records(path, capture.CSV_FORMAT):
      value = _prediction(record, len(header), probability)
      if value is None:
        left_out += 1
        continue
      probabilities.append(value)
      versions.append(record.cells[version])
  return np.array(probabilities), versions, left_out


def capture_losses(capture_root: str, span: int) -> Tuple[int, int]:
  """(rows the capture dropped, rows lost by capture processes that died without closing,
  as counted when the next capture started: serving/capture.py) of a span."""
  dropped = lost = 0
  for m in FileSystems.match([capture.counts_pattern(capture_root, span)])[0].metadata_list:
    with FileSystems.open(m.path) as f:
      counts = json.loads(f.read().decode())
    dropped += counts['dropped']
    lost += counts.get('lost', 0)  # counts files written before losses were counted lack it
  return dropped, lost


def metadata_config(args) -> Optional[metadata_store_pb2.ConnectionConfig]:
  if args.metadata_grpc:
    host, port = args.metadata_grpc.rsplit(':', 1)
    config = metadata_store_pb2.MetadataStoreClientConfig(host=host, port=int(port))
    return config
  path = args.metadata_db or f"{args.output_root.rstrip('/')}/metadata.db"
  return lineage_lib.sqlite_config(path) if FileSystems.exists(path) else None


def _model_dir(serving_root: str, model_name: str, served) -> Optional[str]:
  """The served SavedModel: the version directory TF Serving reads, else the Trainer's copy."""
  if served is None:
    return None
  version_dir = serving_layout.version_dir(
      serving_layout.model_root(serving_root, model_name), served.version)
  if storage.is_whole(version_dir):
    return version_dir
  return path_utils.serving_model_dir(served.model_uri)


def run(capture_root: str, span: int, data_root: Optional[str], lineage, serving_root: str,
        model_name: str = serving_layout.MODEL_NAME,
        thresholds: Thresholds = Thresholds()) -> history.CheckRecord:
  """Measures span `span` and returns the record (not yet written to the history)."""
  predictions, versions, left_out = read_capture(capture_root, span)
  if not len(predictions):
    raise NothingToCheck(f'No captured traffic under {capture.span_dir(capture_root, span)}.')
  version = collections.Counter(versions).most_common(1)[0][0]
  notes = []
  if left_out:
    notes.append(f'{left_out} captured lines of span {span} had no readable click probability '
                 '(the row rules refuse them): left out of the prediction drift.')
  if len(set(versions)) > 1:
    notes.append(f'Versions {", ".join(sorted(set(versions)))} answered this span; compared '
                 f'with version {version}, which answered most rows.')
  served = lineage.served(version) if lineage is not None else None
  if served is None:
    notes.append(f'MLMD has no run that pushed version {version}: only drift was checked.')
  schema = schema_lib.build_schema()
  current = fields.traffic(capture.file_pattern(capture_root, span), schema,
                           capture.CSV_FORMAT)
  if current.rejected:
    notes.append(f'{current.rejected} captured lines of span {span} were left out of skew '
                 'and drift: the row rules refuse them.')
  measures = []
  if served is not None and served.statistics_uri:
    measures += fields.skew(lineage_lib.training_statistics(served.statistics_uri),
                            current.statistics, schema)
  if span - 1 in captured_spans(capture_root):
    previous = fields.traffic(capture.file_pattern(capture_root, span - 1), schema,
                              capture.CSV_FORMAT)
    measures += fields.drift(current.statistics, previous.statistics, schema)
  else:
    notes.append(f'No captured traffic for span {span - 1}: drift was not checked.')
  dropped, lost = capture_losses(capture_root, span)
  if lost:
    notes.append(f'{lost} captured rows were lost by capture processes that died without '
                 'closing (kill -9, out of memory); counted when the capture next started.')
  record = history.CheckRecord(span=span, served_version=version, captured=len(predictions),
                               dropped=dropped, lost=lost, measures=measures, notes=notes,
                               mean_prediction=float(predictions.mean()))
  model_dir = _model_dir(serving_root, model_name, served)
  if served is not None and served.eval_examples_uri and model_dir:
    eval_predictions = quality.score(
        model_dir, quality.split_examples(served.eval_examples_uri, splits.EVAL))
    record.eval_mean_prediction = float(eval_predictions.mean())
    measures += quality.prediction_drift(predictions, eval_predictions, thresholds)
  if served is not None and served.evaluation_uri:
    record.promised = quality.promised(served.evaluation_uri)
  labelled = data_root and FileSystems.exists(data_layout.ads_csv(data_root, span))
  if labelled and record.promised and model_dir:
    examples, labels, left_out = quality.labelled_examples(data_root, span)
    record.observed = evaluation_results.figures(labels, quality.score(model_dir, examples))
    measures += quality.decay(record.observed, record.promised, thresholds)
    if left_out:
      notes.append(f'{left_out} rows of the labelled month were left out, as ExampleGen '
                   'would reject them.')
  elif not labelled:
    notes.append(f'Span {span} has no labelled month under {data_root} yet: decay was not '
                 'checked.')
  return record


def describe(record: history.CheckRecord) -> str:
  lines = [f'Monitoring check of span {record.span}: served version {record.served_version}, '
           f'{record.captured} rows captured, {record.dropped} dropped, {record.lost} lost.']
  lines += [m.line() for m in sorted(record.measures, key=lambda m: not m.broken)]
  lines += [f'note: {note}' for note in record.notes]
  broken = record.broken
  lines.append(f'{len(broken)} threshold(s) broken: ' + ', '.join(
      f'{m.kind} of {m.name}' for m in broken) if broken else 'No threshold broken.')
  return '\n'.join(lines)


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--output-root', default='outputs')
  parser.add_argument('--capture-root', help='default: <output-root>/capture')
  parser.add_argument('--serving-root', help='default: <output-root>/serving')
  parser.add_argument('--model-name', default=serving_layout.MODEL_NAME)
  parser.add_argument('--data-root', default='data', help='labelled months (span-N/ads.csv)')
  parser.add_argument('--span', type=int, help='default: the latest captured span')
  parser.add_argument('--metadata-db', help='default: <output-root>/metadata.db')
  parser.add_argument('--metadata-grpc', help='HOST:PORT of an MLMD gRPC server (Kubeflow)')
  parser.add_argument('--no-report', action='store_true', help='do not render report.html')
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  root = args.output_root.rstrip('/')
  capture_root = args.capture_root or f'{root}/capture'
  config = metadata_config(args)
  lineage = lineage_lib.Lineage(config) if config is not None else None
  spans = captured_spans(capture_root)
  span = args.span if args.span is not None else (spans[-1] if spans else None)
  try:
    if span is None:
      raise NothingToCheck(f'No captured traffic under {capture_root}.')
    record = run(capture_root, span, args.data_root, lineage,
                 args.serving_root or f'{root}/serving', args.model_name)
  except NothingToCheck as e:
    print(e)
    return 2
  print(describe(record))
  print(f'Recorded: {history.append(root, record)}')
  if not args.no_report:
    print(f'Report: {report.write(root, lineage)}')
  return 1 if record.broken else 0


if __name__ == '__main__':
  sys.exit(main())
