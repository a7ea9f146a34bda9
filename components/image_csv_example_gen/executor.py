"""Executor of ImageCsvExampleGen: ads.csv rows plus creative images -> tf.Examples.

Each span folder holds `ads.csv` (columns features.csv_columns() at least, in the log's
format, features.CSV_FORMAT: its delimiter, and a header row or the declared column names of
a header-less file) and `images/`; the `image_path` column is relative to the CSV's folder. Every read goes
through Beam's FileSystems, so `input_base` may be a local path or `gs://...`. The
executor picks the spans itself from the `{SPAN}` pattern and the range config (see
spans.py): the latest span, one given span, or a window of recent spans read as one
dataset (the hash split then draws train/eval rows from every span of the window).

Each CSV file is read as a stream by models/rows.py, whose rules decide every row: a row
is rejected (named by file, line number, key and reason, never crashing the run) when its
line is not UTF-8 text or holds a NUL byte, has the wrong number of columns, an empty
required field, a number that does not parse or lies outside its range, a string outside its
closed domain, a label other than 0/1, or a creative that is missing, empty, not one of
rows.IMAGE_FORMATS, larger than the model decodes or refused by the model's own decoder.
A quoted field may hold newlines (one row). An empty optional field takes its default. When
features.py has an IMAGE field, the example gets the image bytes under its name and the
image_path column is dropped; a log without images needs no image column. Rows are then
split out of time, and each split is written shuffled over splits.SHARDS files (splits.py).

Besides the Split-* folders, the executor writes under the output Examples URI:
  rejected_rows/rejected-<input>-SSSSS-of-NNNNN.csv  CSV with the header
      source_file,line_number,key,reason,line  (comma-separated whatever the log's format;
      `line_number` is the line the row starts on, from 1, the header being line 1 where
      the file has one: file and line name every row; `key` adds the row's KEY fields, empty
      for a log without them; `line` is the raw CSV text as read, undecodable bytes escaped)
  rejected_rows/accepted-<input>.txt                the number of accepted rows
where <input> is the split pattern made file-name safe. `Do` then sets the integer
custom properties `rows_accepted` and `rows_rejected` on the Examples artifact, each split's
rows of each label (`rows_<split>_label_<0|1>`), its `span` (the latest span read) and
`spans` (all spans read, e.g. "10,11,12"), and fails the run if the rejected share exceeds
`max_rejected_fraction` or the validation or eval split is empty.
"""
import csv
import io
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options import pipeline_options
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.image_csv_example_gen import spans as spans_lib
from components.image_csv_example_gen import splits
from models import features
from models import rows

MAX_REJECTED_FRACTION_KEY = 'max_rejected_fraction'
EVAL_FRACTION_KEY = 'eval_fraction'
VALIDATION_FRACTION_KEY = 'validation_fraction'
ROWS_ACCEPTED_PROPERTY = 'rows_accepted'
ROWS_REJECTED_PROPERTY = 'rows_rejected'
SPANS_PROPERTY = 'spans'
REJECTED_ROWS_DIR = 'rejected_rows'
REJECTED_COLUMNS = ('source_file', 'line_number', 'key', 'reason', 'line')

# Private exec property through which Do tells the PTransform where to write reports;
# the base class hands the PTransform nothing but exec_properties and the pattern.
_REJECTED_ROWS_DIR_KEY = '_rejected_rows_dir'
_SPANS_KEY = '_spans'  # the spans Do picked, for the PTransform
_SHUFFLE_DIR = '.shuffle'  # splits.WriteSplits' files between its passes, under the output
_REJECTED_TAG = 'rejected'
_FIRST_REJECTED_SHOWN = 5


def rejected_rows_dir(examples_uri: str) -> str:
  """Where the reports on rejected rows go under an output (Examples, batch scores)."""
  return FileSystems.join(examples_uri, REJECTED_ROWS_DIR)


def _read_text(path: str) -> str:
  with FileSystems.open(path) as f:
    return f.read().decode('utf-8')


def read_rejected_rows(examples_uri: str) -> List[Dict[str, str]]:
  """Returns the rows ImageCsvExampleGen rejected, as dicts keyed by REJECTED_COLUMNS."""
  pattern = FileSystems.join(rejected_rows_dir(examples_uri), 'rejected-*.csv')
  rejected = []
  for path in rows.matched_paths(pattern):
    rejected.extend(csv.DictReader(io.StringIO(_read_text(path), newline='')))
  return rejected


def rejected_row_name(row: Dict[str, str]) -> str:
  """A rejected row in words: file, line, key (where the log has one) and reason."""
  key = f" ({row['key']})" if row['key'] else ''
  return f"{row['source_file']} line {row['line_number']}{key}: {row['reason']}"


def read_accepted_count(examples_uri: str) -> int:
  """The number of rows ImageCsvExampleGen (or ReadRows) accepted, from its reports."""
  pattern = FileSystems.join(rejected_rows_dir(examples_uri), 'accepted-*.txt')
  return sum(int(_read_text(path)) for path in rows.matched_paths(pattern))


def format_csv_row(values: Sequence[str]) -> str:
  """One CSV record without its line end (a cell holding a line break is quoted)."""
  buffer = io.StringIO()
  # csv quotes a cell that holds a character of the line terminator: '\r\n' covers both.
  csv.writer(buffer, lineterminator='\r\n').writerow(values)
  return buffer.getvalue()[:-2]


def _direct_runner(pipeline: beam.pvalue.PBegin) -> bool:
  runner = pipeline.pipeline.options.view_as(pipeline_options.StandardOptions).runner
  return runner in (None, 'DirectRunner', 'direct')


def _records(file: Tuple[int, str], csv_format: features.CsvFormat
             ) -> Iterator[Tuple[int, str, rows.Record]]:
  """(span, csv file) -> (span, csv file, record) for each record after the header (which
  check_headers has read), or each record of a header-less file."""
  span, path = file
  for record in rows.data_records(path, csv_format):
    yield span, path, record


class _ParseRow(beam.DoFn):
  """(span, csv file, record) -> (span, tf.Example), or a rejected row on the tagged output.
  With `with_origin`, (span, tf.Example, (csv file, line number)): what names a row of a log
  without a KEY field."""

  def __init__(self, header: Sequence[str], csv_format: features.CsvFormat,
               with_origin: bool):
    self._header = list(header)
    self._csv_format = csv_format
    self._with_origin = with_origin
    self._rows_read = beam.metrics.Metrics.counter(splits.METRICS_NAMESPACE, 'rows_read')
    self._rows_rejected = beam.metrics.Metrics.counter(splits.METRICS_NAMESPACE,
                                                       'rows_rejected')

  def setup(self):
    # Holds this worker's cache of creatives.
    self._parser = rows.RowParser(self._header, csv_format=self._csv_format)

  def process(self, element: Tuple[int, str, rows.Record]) -> Iterator[Any]:
    span, csv_path, record = element
    self._rows_read.inc()
    example, reason = self._parser.parse(csv_path, record)
    if reason is None:
      yield (span, example, (csv_path, record.line_number)) if self._with_origin else (
          span, example)
      return
    self._rows_rejected.inc()
    yield beam.pvalue.TaggedOutput(_REJECTED_TAG, format_csv_row(
        [csv_path, str(record.line_number), self._parser.key(record), reason,
         record.text]))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def ReadRows(pipeline: beam.Pipeline,  # pylint: disable=invalid-name
             files: Sequence[Tuple[int, str]], header: Sequence[str], report_dir: str,
             input_name: str, csv_format: Optional[features.CsvFormat] = None,
             with_origin: bool = False) -> beam.pvalue.PCollection:
  """Parses the (span, CSV file) pairs into (span, tf.Example), by models/rows.py's rules;
  with `with_origin`, into (span, tf.Example, (CSV file, line number)).

  The files are read in `csv_format` (default: the log's, features.CSV_FORMAT, as the
  pipeline is built: the workers are handed it).
  Each file is read as a stream by one worker (rows.read_records: line numbers, quoted
  newlines, a line that is not text refused alone); its records are then spread over the
  workers, which parse them and load the creatives.

  Rejected rows and the accepted count go to `report_dir` as `rejected-<input_name>-*.csv`
  and `accepted-<input_name>.txt` (read back by read_rejected_rows / read_accepted_count
  from the output whose rejected_rows_dir it is). Batch scoring (batch/score.py) reads its
  input here too.
  """
  csv_format = rows.log_format(csv_format)
  records = (pipeline
             | 'ListFiles' >> beam.Create(list(files))
             | 'SpreadFiles' >> beam.Reshuffle()
             | 'ReadRecords' >> beam.FlatMap(_records, csv_format))
  if not _direct_runner(pipeline):
    # Spreads one file's rows over the workers (Dataflow would parse a file on one). The
    # DirectRunner would hold every record of the input in memory here instead.
    records = records | 'SpreadRecords' >> beam.Reshuffle()
  parsed = records | 'ParseRows' >> beam.ParDo(
      _ParseRow(header, csv_format, with_origin)).with_outputs(
      _REJECTED_TAG, main='examples')
  _ = (parsed[_REJECTED_TAG]
       | 'WriteRejected' >> beam.io.WriteToText(
           FileSystems.join(report_dir, f'rejected-{input_name}'),
           file_name_suffix='.csv', num_shards=1, header=','.join(REJECTED_COLUMNS)))
  _ = (parsed.examples
       | 'CountAccepted' >> beam.combiners.Count.Globally()
       | 'WriteAcceptedCount' >> beam.io.WriteToText(
           FileSystems.join(report_dir, f'accepted-{input_name}'),
           file_name_suffix='.txt', shard_name_template=''))
  return parsed.examples


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def _ImageCsvToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                       split_pattern: str) -> beam.pvalue.PCollection:
  """Reads the CSV files of the chosen spans into (span, tf.Example); writes rejected rows."""
  input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
  spans = exec_properties[_SPANS_KEY] or [0]  # 0: a fixed pattern without {SPAN}
  patterns = [FileSystems.join(input_base, spans_lib.pattern_for_span(split_pattern, span))
              for span in spans]
  files = []
  for span, pattern in zip(spans, patterns):
    matched = rows.matched_paths(pattern)
    if not matched:
      raise ValueError(f'Split pattern {pattern} does not match any files.')
    files += [(span, path) for path in matched]
  header = rows.check_headers([path for _, path in files])
  logging.info('Reading %d CSV file(s) for %s.', len(files), ', '.join(patterns))
  # One report per input pattern, so several input splits do not overwrite each other.
  return pipeline | ReadRows(files, header,
                             exec_properties[_REJECTED_ROWS_DIR_KEY],
                             report_name(split_pattern))


def report_name(pattern: str) -> str:
  """A file pattern made file-name safe, naming its rejected-rows report."""
  return re.sub(r'[^0-9A-Za-z]+', '_', pattern).strip('_')


def _select_spans(exec_properties: Dict[str, Any]) -> List[int]:
  """Spans to read for the first input split's `{SPAN}` pattern; [] for a fixed pattern."""
  input_config = example_gen_pb2.Input()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                            input_config)
  pattern = input_config.splits[0].pattern
  if spans_lib.SPAN_SPEC not in pattern:
    return []
  range_config = None
  if exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY):
    range_config = range_config_pb2.RangeConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.RANGE_CONFIG_KEY],
                              range_config)
  return spans_lib.select_spans(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                                pattern, range_config)


def split_size_property(split: str, label: int) -> str:
  """The Examples' int custom property: a split's rows of one label (0 or 1)."""
  return f'rows_{split}_label_{label}'


def _record_split_sizes(examples: types.Artifact, result) -> None:
  """Sets each split's rows of each label on the artifact (from pass 2's Beam counters), and
  refuses an empty validation or eval split in words (the Trainer would fail in calibration,
  the Evaluator measure nothing)."""
  counted = {c.key.metric.name: c.committed for c in result.metrics().query(
      MetricsFilter().with_namespace(splits.METRICS_NAMESPACE))['counters']}
  sizes = {}
  for split in splits.NAMES:
    for label in (0, 1):
      sizes[split, label] = counted.get(splits.counter_name(split, label), 0)
      examples.set_int_custom_property(split_size_property(split, label), sizes[split, label])
  empty = [split for split in (splits.VALIDATION, splits.EVAL)
           if not sizes[split, 0] + sizes[split, 1]]
  if empty:
    raise ValueError(
        f'The {" and ".join(empty)} split{"s are" if len(empty) > 1 else " is"} empty '
        f'({split_sizes_text(examples)}). Give the run more rows (a longer latest span or a '
        'larger window) or larger eval_fraction and validation_fraction.')


def split_sizes_text(examples: types.Artifact) -> str:
  """E.g. 'train 2,100 rows (95 with label 1), validation 300 (14), eval 600 (31)'."""
  parts = []
  for split in splits.NAMES:
    ones = examples.get_int_custom_property(split_size_property(split, 1))
    rows = examples.get_int_custom_property(split_size_property(split, 0)) + ones
    parts.append(f'{split} {rows:,}' + (' rows' if not parts else '') +
                 (f' ({ones:,} with label 1)' if not parts else f' ({ones:,})'))
  return ', '.join(parts)


def _split_config(exec_properties: Dict[str, Any]) -> splits.SplitConfig:
  return splits.SplitConfig(eval_fraction=exec_properties[EVAL_FRACTION_KEY],
                            validation_fraction=exec_properties[VALIDATION_FRACTION_KEY])


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Turns ads.csv rows and their creative images into tf.Examples, split out of time."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ImageCsvToExample

  def _write_splits(self, examples: types.Artifact, exec_properties: Dict[str, Any]) -> None:
    """The base class's Do, with the rows split out of time and each split shuffled on disk in
    bounded memory (splits.WriteSplits) where the base class's split and WriteSplit keep the
    input order on the DirectRunner and hold a split in memory."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    examples.split_names = artifact_utils.encode_split_names(list(splits.NAMES))
    temp_dir = FileSystems.join(examples.uri, _SHUFFLE_DIR)
    pipeline = self._make_beam_pipeline()
    with pipeline:
      _ = (pipeline
           | 'InputToRecord' >> _ImageCsvToExample(exec_properties, input_config.splits[0].pattern)
           | 'WriteSplits' >> splits.WriteSplits(
               latest_span=max(exec_properties[_SPANS_KEY] or [0]),
               config=_split_config(exec_properties),
               split_uris={name: artifact_utils.get_split_uri([examples], name)
                           for name in splits.NAMES},
               temp_dir=temp_dir))
    # File by file (a folder of gs:// has nothing to delete), then the local folder.
    leftovers = rows.matched_paths(FileSystems.join(temp_dir, '*'))
    if leftovers:
      FileSystems.delete(leftovers)
    if FileSystems.exists(temp_dir):
      FileSystems.delete([temp_dir])
    _record_split_sizes(examples, pipeline.result)
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, write_split.to_file_format_str(
        example_gen_pb2.FORMAT_TFRECORDS_GZIP))

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Generates the examples, records row counts and enforces the rejection limit.

    Raises:
      ValueError: more than `max_rejected_fraction` of the rows were rejected, or
        the input has no or a malformed header.
    """
    examples = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.EXAMPLES_KEY])
    exec_properties = dict(exec_properties)
    exec_properties[_REJECTED_ROWS_DIR_KEY] = rejected_rows_dir(examples.uri)
    spans = _select_spans(exec_properties)
    exec_properties[_SPANS_KEY] = spans
    self._log_startup(input_dict, output_dict, exec_properties)
    self._write_splits(examples, exec_properties)
    if spans:
      logging.info('ImageCsvExampleGen read spans %s.', spans)
      # Where TFX's FileBasedExampleGen driver puts the span, and the typed property.
      examples.set_int_custom_property(example_gen_utils.SPAN_PROPERTY_NAME, spans[-1])
      examples.span = spans[-1]
      examples.set_string_custom_property(SPANS_PROPERTY, ','.join(map(str, spans)))

    accepted = read_accepted_count(examples.uri)
    rejected_rows = read_rejected_rows(examples.uri)
    rejected = len(rejected_rows)
    examples.set_int_custom_property(ROWS_ACCEPTED_PROPERTY, accepted)
    examples.set_int_custom_property(ROWS_REJECTED_PROPERTY, rejected)

    total = accepted + rejected
    fraction = rejected / total if total else 0.0
    first = rejected_rows[:_FIRST_REJECTED_SHOWN]
    logging.info('ImageCsvExampleGen read %d rows: %d accepted, %d rejected (%.1f%%). '
                 'First rejected rows: %s.', total, accepted, rejected, 100 * fraction,
                 '; '.join(rejected_row_name(r) for r in first) or 'none')
    max_fraction = exec_properties[MAX_REJECTED_FRACTION_KEY]
    if fraction > max_fraction:
      details = '; '.join(rejected_row_name(r) for r in first)
      raise ValueError(
          f'ImageCsvExampleGen rejected {rejected} of {total} rows ({fraction:.1%}), '
          f'more than max_rejected_fraction={max_fraction:g}. First rejected: '
          f'{details}. Full list: {rejected_rows_dir(examples.uri)}/rejected-*.csv')
