"""Test data builder: a generated month with one line of every bad kind of issue 20, point 2.

`write_dirty_span` writes a sample span with datagen, then puts one bad line of each kind
(and one valid row holding a quoted newline) among the good lines, with the creatives the bad
lines name. It returns what a reader must make of the file: how many rows are good and which
line (1-based, the header is line 1) is bad for which reason, so a test can check that every
line is accounted for.
"""
import dataclasses
import io
import os
import struct
from typing import Dict, List
import zlib

from PIL import Image

from datagen import generate
from models import data_layout
from models import features

BOMB_SIDE = 20_000  # what the bomb's header claims; never decoded


def _chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def _png(width: int, height: int, idat: bytes) -> bytes:
  header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
  return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', header) + _chunk(b'IDAT', idat) +
          _chunk(b'IEND', b''))


def _webp() -> bytes:
  buffer = io.BytesIO()
  Image.new('RGB', (16, 16), (200, 30, 30)).save(buffer, format='WEBP')
  return buffer.getvalue()


# Creatives the bad lines name (None: the file is not written). Each passes PIL's structural
# check except the empty file; none is something the model graph can decode within limits.
CREATIVES = {
    'webp': ('images/bad_format.webp', _webp()),  # PIL reads it, the graph does not
    # Valid chunk checksums around pixel data that is not a deflate stream.
    'corrupt_png': ('images/bad_pixels.png', _png(8, 8, b'\x00garbage, not deflate')),
    'missing_creative': ('images/not_there.png', None),
    'empty_creative': ('images/empty.png', b''),
    'image_bomb': ('images/bomb.png',
                   _png(BOMB_SIDE, BOMB_SIDE, zlib.compress(bytes(BOMB_SIDE + 1)))),
}
# Bad lines whose cells are bad: kind -> (column, the cell's new value as bytes).
CELLS = {
    'nul': ('campaign_id', b'cmp\x000001'),
    'invalid_utf8': ('advertiser', b'adv_\xff\xfe'),
    'unparsable_number': ('hour', b'n/a'),
    'non_finite_number': ('bid_price', b'inf'),
    'empty_label': ('clicked', b''),
    'label_out_of_range': ('clicked', b'2'),
}
# Words the rejection reason of each kind must contain (a field, a file or the fault).
REASON_WORDS = {
    'wrong_column_count': 'column', 'tab_separated': 'column', 'nul': 'NUL',
    'invalid_utf8': 'UTF-8',
    **{kind: column for kind, (column, _) in CELLS.items() if kind not in ('nul', 'invalid_utf8')},
    **{kind: os.path.basename(path) for kind, (path, _) in CREATIVES.items()},
}
KINDS = ('wrong_column_count', 'tab_separated', *CELLS, *CREATIVES)


@dataclasses.dataclass
class DirtySpan:
  csv_path: str
  good_rows: int  # rows that must be accepted (the generated ones plus the quoted newline)
  bad_lines: Dict[int, str]  # 1-based line number -> kind
  rows_read: int  # rows in the file: good_rows + len(bad_lines)


def _bad_line(kind: str, cells: List[bytes]) -> bytes:
  columns = features.csv_columns()
  cells = list(cells)
  cells[columns.index(features.row_id_feature().name)] = f'bad-{kind}'.encode()
  if kind == 'wrong_column_count':
    return b','.join(cells[:-1])
  if kind == 'tab_separated':
    return b'\t'.join(cells)
  if kind in CELLS:
    column, value = CELLS[kind]
    cells[columns.index(column)] = value
  else:
    cells[columns.index(features.IMAGE_PATH_COLUMN)] = CREATIVES[kind][0].encode()
  return b','.join(cells)


def _quoted_newline(cells: List[bytes]) -> bytes:
  """A valid row whose free-text key cell holds a quoted line break: one row, two lines."""
  cells = list(cells)
  cells[features.csv_columns().index('campaign_id')] = b'"cmp_0001\nsecond line"'
  return b','.join(cells)


def write_dirty_span(root: str, span: int, rows: int, seed: int = 7) -> DirtySpan:
  """A generated span of `rows` good rows, plus one bad line of every kind and one valid row
  with a quoted newline, spread through the file."""
  generate.generate_span(root, span, rows, seed=seed)
  csv_path = data_layout.ads_csv(root, span)
  span_dir = data_layout.span_dir(root, span)
  for path, data in CREATIVES.values():
    if data is not None:
      with open(os.path.join(span_dir, path), 'wb') as f:
        f.write(data)
  with open(csv_path, 'rb') as f:
    header, *good = f.read().splitlines()
  extra = [_bad_line(kind, good[0].split(b',')) for kind in KINDS]
  extra.append(_quoted_newline(good[1].split(b',')))
  step = max(1, len(good) // (len(extra) + 1))
  lines, bad_lines, taken = [header], {}, 0
  for i, line in enumerate(extra):
    lines += good[taken:taken + step]
    taken += step
    if i < len(KINDS):
      bad_lines[len(lines) + 1] = KINDS[i]
    lines.append(line)
  lines += good[taken:]
  with open(csv_path, 'wb') as f:
    f.write(b'\n'.join(lines) + b'\n')
  return DirtySpan(csv_path=csv_path, good_rows=len(good) + 1, bad_lines=bad_lines,
                   rows_read=len(good) + 1 + len(bad_lines))
