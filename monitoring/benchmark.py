"""Numbers for the README: capture's cost on the client, and the check's wall time.

    python -m monitoring.benchmark --span N [--output-root outputs] [--data-root data]
        [--requests 400] [--check-rows 100000] [--out bench_out/monitor]

1. Client.predict_many of 64 ads against a stub TF Serving REST server on 127.0.0.1 (so the
   figure is the client's own time, not a model's), p50 and p99 without and with capture (the
   Capture.record call the client makes), interleaved in the same run.
2. The check on --check-rows captured rows against a pipeline's outputs (`make demo`): labelled
   month N scored by the served model, its rows repeated up to that count; once without and
   once with decay on month N. The ads of 1. are month N's first 64 rows.
"""
import argparse
import csv
import json
import os
import shutil
import statistics
import time

import numpy as np

from models import data_layout
from models import features
from models import serving_layout
from models import storage
from monitoring import check
from monitoring import lineage as lineage_lib
from monitoring import quality
from monitoring import replay
from serving import capture as capture_lib
from serving import client as client_lib
from serving.emulator import http_stub


class _StubServing(http_stub.JsonHandler):
  """Answers status and :predict like TF Serving, instantly."""

  def do_GET(self):  # pylint: disable=invalid-name
    self.reply({'model_version_status': [{'version': '7', 'state': 'AVAILABLE'}]})

  def do_POST(self):  # pylint: disable=invalid-name
    body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
    self.reply({'predictions': [0.05] * len(body['instances'])})


def _ads(data_root: str, span: int, n: int = 64):
  """The first n rows of a month as the raw ads a caller passes to the client."""
  with open(data_layout.ads_csv(data_root, span)) as f:
    rows = [row for _, row in zip(range(n), csv.DictReader(f))]
  image = features.image_feature()
  for row in rows:
    del row[features.LABEL_KEY]
    if image is not None:
      path = row.pop(features.IMAGE_PATH_COLUMN)
      with open(os.path.join(data_layout.span_dir(data_root, span), path), 'rb') as f:
        row[image.name] = f.read()
  return rows


def client_cost(out: str, ads, requests: int) -> str:
  capture = capture_lib.Capture(os.path.join(out, 'client-capture'), span=1)
  # The instances predict_many sends: the wired client records those, validated once.
  instances = [client_lib.validate(ad)[0] for ad in ads]
  times = {False: [], True: []}
  with http_stub.serving(_StubServing) as (url, _):
    client = client_lib.Client(url)
    for _ in range(requests):
      for with_capture in (False, True):
        start = time.perf_counter()
        results = client.predict_many(ads)
        if with_capture:
          capture.record(instances, [r['prediction']['click_probability'] for r in results],
                         '7')
        times[with_capture].append(time.perf_counter() - start)
  counts = capture.close()
  lines = [f'{"with" if w else "without"} capture: p50 {1000 * statistics.median(t):.2f} ms, '
           f'p99 {1000 * np.quantile(t, 0.99):.2f} ms' for w, t in times.items()]
  return (f'Client, {len(ads)} ads a request, {requests} requests each, interleaved: ' +
          '; '.join(lines) + f'. Capture counts: {counts}.')


def check_time(out: str, rows: int, output_root: str, data_root: str, span: int) -> str:
  """The check against a pipeline's outputs (`make demo`), on `rows` captured rows: the
  month's rows scored by the served model, repeated."""
  model_root = serving_layout.model_root(os.path.join(output_root, 'serving'))
  version = storage.latest_whole_version(model_root)
  examples, _, _ = quality.labelled_examples(data_root, span)
  predictions = quality.score(serving_layout.version_dir(model_root, version), examples)
  month = replay.example_rows(examples)
  capture_root = os.path.join(out, 'capture')
  capture = capture_lib.Capture(capture_root, span, buffer_size=rows + 1, flush_rows=20000)
  for start in range(0, rows, 64):
    index = [i % len(month) for i in range(start, min(rows, start + 64))]
    capture.record([month[i] for i in index], predictions[index], str(version))
  counts = capture.close()
  lineage = lineage_lib.Lineage(
      lineage_lib.sqlite_config(os.path.join(output_root, 'metadata.db')))
  timings = []
  for labels in (None, data_root):
    start = time.perf_counter()
    record = check.run(capture_root, span, labels, lineage, os.path.join(output_root, 'serving'))
    timings.append(time.perf_counter() - start)
  return (f'Check of span {span} on {counts["written"]} captured rows (version {version}): '
          f'{timings[0]:.1f} s for skew and prediction drift; {timings[1]:.1f} s with decay on '
          f'the labelled month ({len(examples)} rows) as well; {len(record.measures)} measures '
          '(in-process, imports excluded).')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--requests', type=int, default=400)
  parser.add_argument('--check-rows', type=int, default=100000)
  parser.add_argument('--out', default=os.path.join('bench_out', 'monitor'))
  parser.add_argument('--output-root', default='outputs', help="a pipeline's outputs")
  parser.add_argument('--data-root', default='data')
  parser.add_argument('--span', type=int, required=True, help='a labelled month to replay')
  args = parser.parse_args(argv)
  shutil.rmtree(args.out, ignore_errors=True)
  os.makedirs(args.out)
  ads = _ads(args.data_root, args.span)
  print(client_cost(args.out, ads, args.requests), flush=True)
  print(check_time(args.out, args.check_rows, args.output_root, args.data_root, args.span),
        flush=True)


if __name__ == '__main__':
  main()
