"""Replays a month of the log as served traffic: the served model scores its rows and a Capture
records them, as the client does in production (for demos, the README's screenshot and the
check's benchmark; the labels are not sent).

    python -m monitoring.replay --data-root data --span 3 [--capture-root outputs/capture]
        [--serving-root outputs/serving] [--sample-rate 1.0] [--version V]
"""
import argparse
from typing import Dict, List, Sequence

import tensorflow as tf

from models import features
from models import serving_layout
from models import storage
from monitoring import quality
from serving import capture as capture_lib

_REQUEST_ROWS = 64  # the client's batch


def example_rows(examples: Sequence[bytes]) -> List[Dict[str, object]]:
  """Serialized tf.Examples as the raw field -> value rows a client sends (no label)."""
  image = features.image_feature()
  rows = []
  for serialized in examples:
    row = {}
    for name, feature in tf.train.Example.FromString(serialized).features.feature.items():
      kind = feature.WhichOneof('kind')
      value = getattr(feature, kind).value[0]
      if kind == 'bytes_list' and (image is None or name != image.name):
        value = value.decode()
      if name != features.LABEL_KEY:
        row[name] = value
    rows.append(row)
  return rows


def replay(data_root: str, span: int, capture_root: str, model_dir: str, version: str,
           sample_rate: float = 1.0) -> Dict[str, int]:
  """Scores the month's rows with model_dir and captures them; returns the capture's counts."""
  examples, _, _ = quality.labelled_examples(data_root, span)
  predictions = quality.score(model_dir, examples)
  rows = example_rows(examples)
  capture = capture_lib.Capture(capture_root, span, sample_rate=sample_rate)
  for start in range(0, len(rows), _REQUEST_ROWS):
    capture.record(rows[start:start + _REQUEST_ROWS],
                   predictions[start:start + _REQUEST_ROWS], version)
  return capture.close()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data-root', default='data')
  parser.add_argument('--span', type=int, required=True)
  parser.add_argument('--capture-root', default='outputs/capture')
  parser.add_argument('--serving-root', default='outputs/serving')
  parser.add_argument('--model-name', default=serving_layout.MODEL_NAME)
  parser.add_argument('--sample-rate', type=float, default=1.0)
  parser.add_argument('--version', type=int,
                      help='the version that answers (default: the one served now)')
  args = parser.parse_args(argv)
  model_root = serving_layout.model_root(args.serving_root, args.model_name)
  version = args.version or storage.latest_whole_version(model_root)
  if version is None:
    raise SystemExit(f'No complete model version under {model_root}: run the pipeline first.')
  counts = replay(args.data_root, args.span, args.capture_root,
                  serving_layout.version_dir(model_root, version), str(version),
                  args.sample_rate)
  print(f'Span {args.span} through version {version}: {counts}')


if __name__ == '__main__':
  main()
