"""Which monthly spans an ImageCsvExampleGen run reads.

A split pattern names one span with `{SPAN}` (e.g. `span-{SPAN}/ads.csv`). The range config
means what it means to TFX's SpanRangeStrategy:

  none                              the latest span
  static_range [a, b]               spans a..b; span b must exist (it is the span of the run)
  rolling_range num_spans=K         the latest span and the K-1 span numbers before it,
                                    none below start_span_number

Spans missing inside a range are skipped. Spans are listed through Beam FileSystems, so the
same code runs on local paths and gs:// (also against a GCS emulator). It runs inside the
executor because open-source Kubeflow Pipelines never runs FileBasedExampleGen's driver (a
Vertex-only pre-cache-check hook), and that driver knows no rolling ranges.
"""
import re
from typing import List, Optional

from apache_beam.io.filesystems import FileSystems
from tfx.proto import range_config_pb2

from models.data_layout import SPAN_SPEC


def pattern_for_span(pattern: str, span: int) -> str:
  return pattern.replace(SPAN_SPEC, str(span))


def available_spans(input_base: str, pattern: str) -> List[int]:
  """Sorted span numbers for which `<input_base>/<pattern>` matches a file."""
  glob = FileSystems.join(input_base, pattern.replace(SPAN_SPEC, '*'))
  span_regex = re.compile('(?:^|/)' + re.escape(pattern).replace(re.escape(SPAN_SPEC), r'(\d+)') +
                          '$')
  spans = set()
  for metadata in FileSystems.match([glob])[0].metadata_list:
    found = span_regex.search(metadata.path)
    if found:
      spans.add(int(found.group(1)))
  return sorted(spans)


def select_spans(input_base: str, pattern: str,
                 range_config: Optional[range_config_pb2.RangeConfig]) -> List[int]:
  """The spans to read, oldest first; raises ValueError when there is nothing to read."""
  found = available_spans(input_base, pattern)
  if not found:
    raise ValueError(f'No span found: nothing matches '
                     f'{FileSystems.join(input_base, pattern.replace(SPAN_SPEC, "*"))}.')
  kind = range_config.WhichOneof('range') if range_config else None
  if kind == 'static_range':
    first = range_config.static_range.start_span_number
    last = range_config.static_range.end_span_number
    if last not in found:
      raise ValueError(f'Span {last} not found under {input_base}; available spans: {found}.')
  elif kind == 'rolling_range':
    if range_config.rolling_range.num_spans <= 0:
      raise ValueError('rolling_range.num_spans must be positive.')
    last = found[-1]
    first = max(range_config.rolling_range.start_span_number,
                last - range_config.rolling_range.num_spans + 1)
  else:
    first = last = found[-1]
  return [span for span in found if first <= span <= last]
