"""Click probability of one ad, or of a CSV of ads, from the model server.

    python -m serving.predict --ad ad.json --image creative.png
    python -m serving.predict --csv ads.csv --out probs.csv

ad.json holds the ad's fields (models/features.py) without the image. ads.csv has the columns
of the monthly ads.csv (a `clicked` column is ignored), image_path relative to the CSV; the
output has impression_id, ad_id, click_probability, model_version and error per row. One ad
prints the client's JSON result. The exit status is 0 when every ad got a probability.
"""
import argparse
import csv
import json
import os
import sys
from typing import Any, Dict, List

from models import features
from models import signatures
from serving import client as client_lib

OUTPUT_COLUMNS = ('impression_id', 'ad_id', signatures.PREDICTION_KEY, 'model_version',
                  'error')


def predict_ad(client: client_lib.Client, ad_path: str, image_path: str) -> Dict[str, Any]:
  try:
    with open(ad_path) as f:
      ad = json.load(f)
  except (OSError, ValueError) as e:
    return client_lib.result(False, f'cannot read the ad from {ad_path}: {e}')
  if isinstance(ad, dict) and features.IMAGE_KEY in ad:
    return client_lib.result(False, f'{ad_path} has an "{features.IMAGE_KEY}" field; pass the '
                             'creative with --image instead')
  try:
    with open(image_path, 'rb') as f:
      image = f.read()
  except OSError as e:
    return client_lib.result(False, f'cannot read the creative image: {e}')
  if isinstance(ad, dict):
    ad = dict(ad, **{features.IMAGE_KEY: image})
  return client.predict(ad)


def predict_csv(client: client_lib.Client, csv_path: str, out_path: str) -> Dict[str, Any]:
  """Scores every row; a bad row gets its error in the output and does not stop the rest."""
  try:
    with open(csv_path, newline='') as f:
      rows = list(csv.DictReader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    return client_lib.result(False, f'cannot read {csv_path}: {e}')
  expected = [c for c in features.csv_columns() if c != features.LABEL_KEY]
  missing = [c for c in expected if rows and c not in rows[0]]
  if not rows or missing:
    return client_lib.result(False, f'{csv_path} has no rows' if not rows else
                             f'{csv_path} lacks the column(s) {", ".join(missing)}')
  ads, problems = [], []
  for row in rows:
    ad = {k: v for k, v in row.items() if k in expected and k != features.IMAGE_PATH_COLUMN}
    image_path = os.path.join(os.path.dirname(os.path.abspath(csv_path)),
                              row[features.IMAGE_PATH_COLUMN] or '')
    try:
      with open(image_path, 'rb') as f:
        ad[features.IMAGE_KEY] = f.read()
      problems.append(None)
    except OSError:
      problems.append(f'image {row[features.IMAGE_PATH_COLUMN]!r} not found next to the CSV')
    ads.append(ad)
  results = client.predict_many(ads)
  scored = _write(out_path, rows, results, problems)
  failed = len(rows) - scored
  message = (f'scored {scored} of {len(rows)} ads -> {out_path}' +
             (f'; {failed} failed, see the error column' if failed else ''))
  return client_lib.result(failed == 0, message)


def _write(out_path: str, rows: List[dict], results: List[dict], problems: List[str]) -> int:
  scored = 0
  with open(out_path, 'w', newline='') as f:
    writer = csv.DictWriter(f, OUTPUT_COLUMNS)
    writer.writeheader()
    for line, (row, outcome, problem) in enumerate(zip(rows, results, problems), start=2):
      prediction = outcome['prediction'] if outcome['success'] and not problem else None
      scored += prediction is not None
      writer.writerow({
          'impression_id': row.get('impression_id', ''), 'ad_id': row.get('ad_id', ''),
          signatures.PREDICTION_KEY: prediction[signatures.PREDICTION_KEY] if prediction else '',
          'model_version': prediction['model_version'] if prediction else '',
          'error': '' if prediction else f'line {line}: {problem or outcome["message"]}'})
  return scored


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--ad', help='JSON file with one ad (without its image)')
  parser.add_argument('--image', help="the ad's creative (PNG or JPEG)")
  parser.add_argument('--csv', help='CSV of ads, image_path relative to the CSV')
  parser.add_argument('--out', help='where the CSV of probabilities goes')
  parser.add_argument('--url', default=client_lib.DEFAULT_URL)
  parser.add_argument('--model-name', default=client_lib.MODEL_NAME)
  parser.add_argument('--timeout', type=float, default=5.0, help='seconds per request')
  args = parser.parse_args(argv)
  if bool(args.ad) == bool(args.csv) or (args.ad and not args.image) or (
      args.csv and not args.out):
    parser.error('give either --ad AD.json --image CREATIVE, or --csv ADS.csv --out OUT.csv')
  client = client_lib.Client(args.url, args.model_name, timeout=args.timeout)
  outcome = (predict_ad(client, args.ad, args.image) if args.ad else
             predict_csv(client, args.csv, args.out))
  print(json.dumps(outcome, indent=2))
  return 0 if outcome['success'] else 1


if __name__ == '__main__':
  sys.exit(main())
