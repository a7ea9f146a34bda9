"""Click probability of one ad, or of a CSV of ads, from the model server.

    python -m serving.predict --ad ad.json --image creative.png   # --image: with an image field
    python -m serving.predict --csv ads.csv --out probs.csv
    ... [--label stable | --version 1795273561 | --canary-share 0.05]   # default: the newest

Everything follows models/features.py. ad.json holds the ad's fields, without the image.
ads.csv has the columns of the monthly ads.csv (the label column is ignored), the image path
relative to the CSV; the output has the key fields, the click probability, model_version and
error per row. One ad prints the client's JSON result. The exit status is 0 when every ad got
a probability.
"""
import argparse
import csv
import json
import os
import sys
from typing import Any, Dict, List, Optional

from models import features
from models import serving_layout
from models import signatures
from serving import capture as capture_lib
from serving import client as client_lib

ERROR_COLUMN = 'error'


def _keys() -> List[str]:
  return [f.name for f in features.with_role(features.KEY)]


def output_columns() -> List[str]:
  """The key fields, then the prediction, its model version and the row's error."""
  return _keys() + [signatures.PREDICTION_KEY, client_lib.VERSION_KEY, ERROR_COLUMN]


def predict_ad(client: client_lib.Client, ad_path: str,
               image_path: Optional[str]) -> Dict[str, Any]:
  """One ad from a JSON file; its creative from image_path when features.py has an image."""
  try:
    with open(ad_path) as f:
      ad = json.load(f)
  except (OSError, ValueError) as e:
    return client_lib.result(False, f'cannot read the ad from {ad_path}: {e}')
  image = features.image_feature()
  if image is None:
    return client.predict(ad)
  if isinstance(ad, dict) and image.name in ad:
    return client_lib.result(False, f'{ad_path} has an "{image.name}" field; pass the '
                             'creative with --image instead')
  try:
    with open(image_path, 'rb') as f:
      creative = f.read()
  except OSError as e:
    return client_lib.result(False, f'cannot read the creative image: {e}')
  if isinstance(ad, dict):
    ad = dict(ad, **{image.name: creative})
  return client.predict(ad)


def predict_csv(client: client_lib.Client, csv_path: str, out_path: str) -> Dict[str, Any]:
  """Scores every row; a bad row gets its error in the output and does not stop the rest."""
  try:
    with open(csv_path, newline='') as f:
      rows = list(csv.DictReader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    return client_lib.result(False, f'cannot read {csv_path}: {e}')
  labels = {f.name for f in features.with_role(features.LABEL)}
  expected = [c for c in features.csv_columns() if c not in labels]
  missing = [c for c in expected if rows and c not in rows[0]]
  if not rows or missing:
    return client_lib.result(False, f'{csv_path} has no rows' if not rows else
                             f'{csv_path} lacks the column(s) {", ".join(missing)}')
  image = features.image_feature()
  ads, problems = [], []
  for row in rows:
    ad = {k: v for k, v in row.items() if k in expected and k != features.IMAGE_PATH_COLUMN}
    problem = None
    if image is not None:
      image_path = os.path.join(os.path.dirname(os.path.abspath(csv_path)),
                                row[features.IMAGE_PATH_COLUMN] or '')
      try:
        with open(image_path, 'rb') as f:
          ad[image.name] = f.read()
      except OSError:
        problem = f'image {row[features.IMAGE_PATH_COLUMN]!r} not found next to the CSV'
    ads.append(ad)
    problems.append(problem)
  results = client.predict_many(ads)
  scored = _write(out_path, rows, results, problems)
  failed = len(rows) - scored
  message = (f'scored {scored} of {len(rows)} ads -> {out_path}' +
             (f'; {failed} failed, see the error column' if failed else ''))
  return client_lib.result(failed == 0, message)


def _write(out_path: str, rows: List[dict], results: List[dict], problems: List[str]) -> int:
  scored = 0
  with open(out_path, 'w', newline='') as f:
    writer = csv.DictWriter(f, output_columns())
    writer.writeheader()
    for line, (row, outcome, problem) in enumerate(zip(rows, results, problems), start=2):
      prediction = outcome['prediction'] if outcome['success'] and not problem else None
      scored += prediction is not None
      out = {name: row.get(name, '') for name in _keys()}
      out.update(prediction or {})
      out[ERROR_COLUMN] = '' if prediction else f'line {line}: {problem or outcome["message"]}'
      writer.writerow(out)
  return scored


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--ad', help='JSON file with one ad (without its image)')
  parser.add_argument('--image', help="the ad's creative (JPEG, PNG, GIF or BMP), where "
                      'features.py has an image field')
  parser.add_argument('--csv', help='CSV of ads, image paths relative to the CSV')
  parser.add_argument('--out', help='where the CSV of probabilities goes')
  parser.add_argument('--url', default=client_lib.DEFAULT_URL)
  parser.add_argument('--model-name', default=serving_layout.MODEL_NAME)
  parser.add_argument('--timeout', type=float, default=5.0, help='seconds per request')
  which = parser.add_mutually_exclusive_group()
  which.add_argument('--label', help='ask the version this label names (e.g. stable, canary)')
  which.add_argument('--version', type=int, help='ask this version (default: the newest)')
  which.add_argument('--canary-share', type=float, default=0.0,
                     help='send this share of calls to the canary label, the rest to stable')
  capture_lib.add_flags(parser)
  args = parser.parse_args(argv)
  has_image = features.image_feature() is not None
  if bool(args.ad) == bool(args.csv) or (args.csv and not args.out) or (
      args.ad and bool(args.image) != has_image):
    one = ('--ad AD.json --image CREATIVE' if has_image else
           '--ad AD.json (no --image: features.py has no image field)')
    parser.error(f'give either {one}, or --csv ADS.csv --out OUT.csv')
  capture = capture_lib.from_flags(parser, args)
  client = client_lib.Client(args.url, args.model_name, timeout=args.timeout, label=args.label,
                             version=args.version, canary_share=args.canary_share,
                             capture=capture)
  try:
    outcome = (predict_ad(client, args.ad, args.image) if args.ad else
               predict_csv(client, args.csv, args.out))
  finally:
    if capture is not None:
      print(f'Capture: {capture.close()}', file=sys.stderr)
  print(json.dumps(outcome, indent=2))
  return 0 if outcome['success'] else 1


if __name__ == '__main__':
  sys.exit(main())
