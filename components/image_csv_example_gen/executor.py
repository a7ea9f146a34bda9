"""Executor of ImageCsvExampleGen: ads.csv rows plus creative images -> tf.Examples.

Each span folder holds `ads.csv` (header row, columns = features.csv_columns()) and
`images/`; the `image_path` column is relative to the CSV's folder. Every read goes
through Beam's FileSystems, so `input_base` may be a local path or `gs://...`. The
executor picks the spans itself from the `{SPAN}` pattern and the range config (see
spans.py): the latest span, one given span, or a window of recent spans read as one
dataset (the hash split then draws train/eval rows from every span of the window).

Field types, required-ness and defaults come from models/features.py. A row is
rejected, never crashing the run, when it has the wrong number of columns, an empty
required field, an unparseable number, or an image that is missing, does not decode or is
larger than the model decodes (models/preprocessing.MAX_IMAGE_PIXELS).
An empty optional field takes its default. When features.py has an IMAGE field, the
example gets the image bytes under its name and the image_path column is dropped; a log
without images needs no image column. Rows are then split out of time (splits.py).

Besides the Split-* folders, the executor writes under the output Examples URI:
  rejected_rows/rejected-<input>-SSSSS-of-NNNNN.csv  CSV with the header
      source_file,key,reason,line  (`key` names the row by its KEY fields, `line` is the
      raw CSV line as read)
  rejected_rows/accepted-<input>.txt                the number of accepted rows
where <input> is the split pattern made file-name safe. `Do` then sets the integer
custom properties `rows_accepted` and `rows_rejected` on the Examples artifact, its
`span` (the latest span read) and `spans` (all spans read, e.g. "10,11,12"), and
fails the run if the rejected share exceeds `max_rejected_fraction`.

Rows are read line by line, so quoted fields must not contain newlines.
"""
import csv
import io
import math
import re
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from PIL import Image
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components.image_csv_example_gen import spans as spans_lib
from components.image_csv_example_gen import splits
from models import features
from models import preprocessing

MAX_REJECTED_FRACTION_KEY = 'max_rejected_fraction'
EVAL_FRACTION_KEY = 'eval_fraction'
VALIDATION_FRACTION_KEY = 'validation_fraction'
ROWS_ACCEPTED_PROPERTY = 'rows_accepted'
ROWS_REJECTED_PROPERTY = 'rows_rejected'
SPANS_PROPERTY = 'spans'
REJECTED_ROWS_DIR = 'rejected_rows'
REJECTED_COLUMNS = ('source_file', 'key', 'reason', 'line')

# Private exec property through which Do tells the PTransform where to write reports;
# the base class hands the PTransform nothing but exec_properties and the pattern.
_REJECTED_ROWS_DIR_KEY = '_rejected_rows_dir'
_SPANS_KEY = '_spans'  # the spans Do picked, for the PTransform
_METRICS_NAMESPACE = 'ImageCsvExampleGen'
_REJECTED_TAG = 'rejected'
# Many impressions show the same ad, so each worker keeps recent creatives in memory.
_IMAGE_CACHE_SIZE = 2048
_FIRST_REJECTED_SHOWN = 5


def rejected_rows_dir(examples_uri: str) -> str:
  """Where the reports on rejected rows go under an output (Examples, batch scores)."""
  return FileSystems.join(examples_uri, REJECTED_ROWS_DIR)


def _read_text(path: str) -> str:
  with FileSystems.open(path) as f:
    return f.read().decode('utf-8')


def _matched_paths(pattern: str) -> List[str]:
  return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read_rejected_rows(examples_uri: str) -> List[Dict[str, str]]:
  """Returns the rows ImageCsvExampleGen rejected, as dicts keyed by REJECTED_COLUMNS."""
  pattern = FileSystems.join(rejected_rows_dir(examples_uri), 'rejected-*.csv')
  rows = []
  for path in _matched_paths(pattern):
    rows.extend(csv.DictReader(io.StringIO(_read_text(path), newline='')))
  return rows


def read_accepted_count(examples_uri: str) -> int:
  """The number of rows ImageCsvExampleGen (or ReadRows) accepted, from its reports."""
  pattern = FileSystems.join(rejected_rows_dir(examples_uri), 'accepted-*.txt')
  return sum(int(_read_text(path)) for path in _matched_paths(pattern))


def _read_header(path: str) -> List[str]:
  with FileSystems.open(path) as f:
    # utf-8-sig: spreadsheet exports often start with a byte order mark.
    return next(csv.reader([f.readline().decode('utf-8-sig')]), [])


def check_headers(csv_paths: Sequence[str], optional: Sequence[str] = ()) -> List[str]:
  """Returns the column names shared by all files; raises ValueError on a bad header.

  Columns named in `optional` (e.g. the label, for batch scoring) may be absent."""
  header = _read_header(csv_paths[0])
  if not header:
    raise ValueError(f'{csv_paths[0]}: the file is empty; expected a header row '
                     f'{list(features.csv_columns())}.')
  missing = [c for c in features.csv_columns() if c not in header and c not in optional]
  if missing:
    raise ValueError(f'{csv_paths[0]}: header lacks required columns {missing}; '
                     f'expected {list(features.csv_columns())}, got {header}.')
  for path in csv_paths[1:]:
    if _read_header(path) != header:
      raise ValueError(f'{path}: header differs from that of {csv_paths[0]}.')
  return header


def parse_value(feature: features.Feature, cell: str) -> Tuple[Any, Optional[str]]:
  """Returns (value, None), or (None, reason) when the cell is unusable."""
  if not cell:
    if feature.required:
      return None, f'{feature.name}: required value is empty'
    return feature.default, None
  if feature.dtype == 'int':
    try:
      return int(cell), None
    except ValueError:
      return None, f'{feature.name}: {cell!r} is not an integer'
  if feature.dtype == 'float':
    try:
      value = float(cell)
    except ValueError:
      return None, f'{feature.name}: {cell!r} is not a number'
    if not math.isfinite(value):
      return None, f'{feature.name}: {cell!r} is not a finite number'
    return value, None
  return cell, None


def _set_value(feature: tf.train.Feature, dtype: str, value: Any) -> None:
  """Fills a feature of an example in place (a third of the cost of building a Feature
  and copying it in, per field of every row)."""
  if dtype == 'int':
    feature.int64_list.value.append(value)
  elif dtype == 'float':
    feature.float_list.value.append(value)
  else:
    feature.bytes_list.value.append(value.encode('utf-8') if isinstance(value, str) else value)


def format_csv_row(values: Sequence[str]) -> str:
  buffer = io.StringIO()
  csv.writer(buffer, lineterminator='').writerow(values)
  return buffer.getvalue()


class _ParseRow(beam.DoFn):
  """(span, (csv file, line)) -> (span, tf.Example), or a rejected row on the tagged output."""

  def __init__(self, header: Sequence[str]):
    self._num_columns = len(header)
    self._image_feature = features.image_feature()
    self._image_index = (header.index(features.IMAGE_PATH_COLUMN)
                         if self._image_feature else None)
    # A rejected row is named by its KEY fields (e.g. impression and ad id).
    self._key_indexes = [header.index(f.name) for f in features.with_role(features.KEY)]
    # An optional column the header lacks (check_headers) is left out of the example.
    self._fields = [(f, header.index(f.name))
                    for f in features.FEATURES if f.role != features.IMAGE and f.name in header]
    self._rows_read = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, 'rows_read')
    self._rows_rejected = beam.metrics.Metrics.counter(_METRICS_NAMESPACE, 'rows_rejected')

  def setup(self):
    self._image_cache = {}

  def _load_image(self, path: str) -> Tuple[Optional[bytes], Optional[str]]:
    """Returns (bytes, None), or (None, reason) when the image is unusable."""
    try:
      with FileSystems.open(path) as f:
        data = f.read()
    except Exception as e:  # pylint: disable=broad-except
      # Local files raise OSError, Beam BeamIOError, GCS its client's NotFound (whose read
      # fails only here, inside read()): each rejects the row.
      if not FileSystems.exists(path):
        return None, f'image missing: {path}'
      return None, f'image unreadable: {path}: {e}'
    try:
      Image.open(io.BytesIO(data)).verify()
    except Image.UnidentifiedImageError:
      # PIL's own message names the in-memory buffer, which tells a reader nothing.
      return None, f'image unreadable: {path}: not a known image format'
    except Exception as e:  # pylint: disable=broad-except
      # PIL raises many exception types on bad input; any of them rejects the row.
      return None, f'image unreadable: {path}: {e}'
    refusal = preprocessing.image_refusal(data)
    if refusal:
      return None, f'image too large: {path}: {refusal}'
    return data, None

  def _image(self, csv_path: str, cell: str) -> Tuple[Optional[bytes], Optional[str]]:
    """The image a CSV file's cell names; cached by (file, cell), which spares the path
    arithmetic of a hit (it costs as much as parsing the row)."""
    key = (csv_path, cell)
    if key not in self._image_cache:
      if len(self._image_cache) >= _IMAGE_CACHE_SIZE:
        del self._image_cache[next(iter(self._image_cache))]  # oldest first
      self._image_cache[key] = self._load_image(
          FileSystems.join(FileSystems.split(csv_path)[0], cell))
    return self._image_cache[key]

  def _reject(self, csv_path: str, cells: List[str], reason: str, line: str):
    self._rows_rejected.inc()
    key = '/'.join(cells[i] for i in self._key_indexes if i < len(cells))
    return beam.pvalue.TaggedOutput(
        _REJECTED_TAG, format_csv_row([csv_path, key, reason, line]))

  def process(self, element: Tuple[int, Tuple[str, str]]) -> Iterator[Any]:
    span, (csv_path, line) = element
    cells = next(csv.reader([line]), [])
    if not cells:  # blank line
      return
    self._rows_read.inc()
    if len(cells) != self._num_columns:
      yield self._reject(csv_path, cells, f'expected {self._num_columns} columns, '
                         f'got {len(cells)}', line)
      return

    example = tf.train.Example()
    feature_map = example.features.feature
    errors = []
    for feature, index in self._fields:
      value, error = parse_value(feature, cells[index])
      if error:
        errors.append(error)
      else:
        _set_value(feature_map[feature.name], feature.dtype, value)
    image_cell = cells[self._image_index] if self._image_feature else None
    if self._image_feature and not image_cell:
      errors.append(f'{features.IMAGE_PATH_COLUMN}: required value is empty')
    if errors:
      yield self._reject(csv_path, cells, '; '.join(errors), line)
      return

    if self._image_feature:
      image, error = self._image(csv_path, image_cell)
      if error:
        yield self._reject(csv_path, cells, error, line)
        return
      _set_value(feature_map[self._image_feature.name], self._image_feature.dtype, image)
    yield span, example


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def ReadRows(pipeline: beam.Pipeline,  # pylint: disable=invalid-name
             inputs: Sequence[Tuple[int, str]], header: Sequence[str], report_dir: str,
             input_name: str) -> beam.pvalue.PCollection:
  """Parses the CSV files of (span, file pattern) pairs into (span, tf.Example).

  Rejected rows and the accepted count go to `report_dir` as `rejected-<input_name>-*.csv`
  and `accepted-<input_name>.txt` (read back by read_rejected_rows / read_accepted_count
  from the output whose rejected_rows_dir it is). Batch scoring (batch/score.py) reads its
  input here too.
  """
  lines = [pipeline
           | f'ReadLines[{span}]' >> beam.io.textio.ReadFromTextWithFilename(
               pattern, skip_header_lines=1)
           | f'TagSpan[{span}]' >> beam.Map(lambda line, s=span: (s, line))
           for span, pattern in inputs]
  parsed = (
      lines
      | 'FlattenLines' >> beam.Flatten()
      | 'ParseRows' >> beam.ParDo(_ParseRow(header)).with_outputs(
          _REJECTED_TAG, main='examples'))
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
  csv_paths = []
  for pattern in patterns:
    matched = _matched_paths(pattern)
    if not matched:
      raise ValueError(f'Split pattern {pattern} does not match any files.')
    csv_paths += matched
  header = check_headers(csv_paths)
  logging.info('Reading %d CSV file(s) for %s.', len(csv_paths), ', '.join(patterns))
  # One report per input pattern, so several input splits do not overwrite each other.
  return pipeline | ReadRows(list(zip(spans, patterns)), header,
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


def _split_config(exec_properties: Dict[str, Any]) -> splits.SplitConfig:
  return splits.SplitConfig(eval_fraction=exec_properties[EVAL_FRACTION_KEY],
                            validation_fraction=exec_properties[VALIDATION_FRACTION_KEY])


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
  """Turns ads.csv rows and their creative images into tf.Examples, split out of time."""

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    return _ImageCsvToExample

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]) -> Dict[str, beam.PCollection]:
    """Replaces the base class's hash split with the out-of-time split of splits.py."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    keyed = pipeline | 'InputToRecord' >> _ImageCsvToExample(
        exec_properties, input_config.splits[0].pattern)
    latest_span = max(exec_properties[_SPANS_KEY] or [0])
    return keyed | 'SplitData' >> splits.SplitExamples(latest_span,
                                                       _split_config(exec_properties))

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
    super().Do(input_dict, output_dict, exec_properties)
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
                 ', '.join(r['key'] for r in first) or 'none')
    max_fraction = exec_properties[MAX_REJECTED_FRACTION_KEY]
    if fraction > max_fraction:
      details = '; '.join(f"row {r['key'] or '?'}: {r['reason']}" for r in first)
      raise ValueError(
          f'ImageCsvExampleGen rejected {rejected} of {total} rows ({fraction:.1%}), '
          f'more than max_rejected_fraction={max_fraction:g}. First rejected: '
          f'{details}. Full list: {rejected_rows_dir(examples.uri)}/rejected-*.csv')
