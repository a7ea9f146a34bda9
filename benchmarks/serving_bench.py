"""Serving benchmark: the local model server against an in-process call and a naive Flask app.

    make bench    # or: python -m benchmarks.serving_bench [--serving-root outputs/serving]

Single-ad `:predict` requests on 127.0.0.1 at concurrency 1, 8 and 32, each level bounded by
--requests and --seconds; latency p50/p99 and throughput for
  in-process    the newest pushed SavedModel called directly in this process (the lower bound)
  model_server  serving/model_server.py, as `make serve` runs it
  Flask         benchmarks/flask_baseline.py: one model call per request, as tutorials show
The load generator (a minimal HTTP client in this process) shares the cores with the server.
Prints a Markdown table (also saved to bench_out/serving_bench.md) and the two targets:
throughput at concurrency 8 at least 10x Flask's, and p50 at concurrency 1 at most twice the
in-process call plus 1 ms.
"""
import argparse
import asyncio
import json
import math
import os
import time
from typing import Dict, List, Optional
import urllib.parse

import numpy as np

from models import features
from models import serving_layout
from models import signatures
from serving import client
from serving import rest_json
from serving import server_process
from serving import versions

OUT = 'bench_out'
CONCURRENCY = (1, 8, 32)
WARMUP_REQUESTS = 20


def bench_ad() -> dict:
  """An ad from features.py (versions.sample_ad), with a creative of the sample data's size
  where there is an image field."""
  ad = versions.sample_ad()
  image = features.image_feature()
  if image is not None:
    from datagen.generate import render_creative  # pylint: disable=g-import-not-at-top
    ad[image.name] = render_creative(seed=7, key=312, contrast=0.6, badge=True, clutter=3)
  return ad


def _stats(latencies: List[float], seconds: float) -> Dict[str, float]:
  return {'requests': len(latencies), 'p50': 1e3 * np.percentile(latencies, 50),
          'p99': 1e3 * np.percentile(latencies, 99), 'rps': len(latencies) / seconds}


def in_process(model_dir: str, doc: dict, requests: int, seconds: float) -> Dict[str, float]:
  model = versions.load(model_dir, 0)
  signature = signatures.SERVING_SIGNATURE
  _, inputs = rest_json.request_tensors(doc, model.inputs[signature])
  function = model.signatures[signature]
  for _ in range(WARMUP_REQUESTS):
    function(**inputs)
  latencies, start = [], time.perf_counter()
  while len(latencies) < requests and time.perf_counter() - start < seconds:
    began = time.perf_counter()
    function(**inputs)
    latencies.append(time.perf_counter() - began)
  return _stats(latencies, time.perf_counter() - start)


async def _connection(host: str, port: int, request: bytes, count: int, deadline: float,
                      latencies: Optional[List[float]]):
  """One client connection sending requests back to back; it reconnects when the server
  closes after a response, as Flask's development server does."""
  reader = writer = None
  for _ in range(count):
    if time.perf_counter() > deadline:
      break
    began = time.perf_counter()
    if writer is None:
      reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    status, *lines = (await reader.readuntil(b'\r\n\r\n')).decode('latin-1').split('\r\n')
    headers = {k.lower(): v for k, _, v in (line.partition(': ') for line in lines if line)}
    body = await reader.readexactly(int(headers['content-length']))
    if status.split()[1] != '200':
      raise RuntimeError(f'{status}: {body[:200]!r}')
    if headers.get('connection', '').lower() == 'close':
      writer.close()
      writer = None
    if latencies is not None:
      latencies.append(time.perf_counter() - began)
  if writer is not None:
    writer.close()


async def _load(url: str, path: str, body: bytes, concurrency: int, requests: int,
                seconds: float) -> Dict[str, float]:
  """A minimal keep-alive HTTP/1.1 load generator: cheap enough per request (~0.1 ms of CPU)
  that it leaves the 2 cores to the server under test."""
  parts = urllib.parse.urlsplit(url)
  host, port = parts.hostname, parts.port
  request = (f'POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n'
             f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n'
             ).encode() + body
  await asyncio.gather(*[_connection(host, port, request, WARMUP_REQUESTS, math.inf, None)
                         for _ in range(concurrency)])
  latencies: List[float] = []
  start = time.perf_counter()
  await asyncio.gather(*[_connection(host, port, request, -(-requests // concurrency),
                                     start + seconds, latencies)
                         for _ in range(concurrency)])
  return _stats(latencies, time.perf_counter() - start)


def over_http(module: str, args: List[str], path: str, body: bytes, requests: int,
              seconds: float) -> Dict[int, Dict[str, float]]:
  with server_process.running(module, args) as server:
    return {c: asyncio.run(_load(server.url, path, body, c, requests, seconds))
            for c in CONCURRENCY}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--serving-root', default='outputs/serving',
                      help='where the pipeline pushed the model (its newest version is used)')
  parser.add_argument('--requests', type=int, default=2000, help='per concurrency level')
  parser.add_argument('--seconds', type=float, default=20, help='per concurrency level')
  args = parser.parse_args()
  model_root = serving_layout.model_root(args.serving_root)
  found = versions.list_versions(model_root)
  if not found:
    raise SystemExit(f'No pushed model under {model_root}: run `make demo` first, or pass '
                     '--serving-root.')
  model_dir = serving_layout.version_dir(model_root, found[-1])
  instance, problems = client.validate(bench_ad())
  assert not problems, problems
  doc = {'instances': [instance]}
  body = json.dumps(doc).encode()
  path = f'/v1/models/{serving_layout.MODEL_NAME}:predict'

  print(f'Benchmarking {model_dir} on {os.cpu_count()} cores ...', flush=True)
  results = {('in-process call (lower bound)', 1): in_process(model_dir, doc, args.requests,
                                                              args.seconds)}
  for name, module, module_args in [
      ('model_server (make serve)', 'serving.model_server',
       ['--model-base-path', args.serving_root, '--model-name', serving_layout.MODEL_NAME,
        '--port', '0']),
      ('Flask, one model call per request', 'benchmarks.flask_baseline', [model_dir])]:
    print(f'{name} ...', flush=True)
    for concurrency, stats in over_http(module, module_args, path, body, args.requests,
                                        args.seconds).items():
      results[(name, concurrency)] = stats

  lines = ['| server | concurrency | requests | p50 ms | p99 ms | requests/s |',
           '|---|---|---|---|---|---|']
  for (name, concurrency), s in results.items():
    lines.append(f"| {name} | {concurrency} | {s['requests']} | {s['p50']:.2f} | "
                 f"{s['p99']:.2f} | {s['rps']:.0f} |")
  server = 'model_server (make serve)'
  speedup = results[(server, 8)]['rps'] / results[('Flask, one model call per request', 8)]['rps']
  bound = 2 * results[('in-process call (lower bound)', 1)]['p50'] + 1
  p50 = results[(server, 1)]['p50']
  lines += ['', f"Throughput at concurrency 8: {speedup:.1f}x Flask's (target >= 10x: "
            f"{'met' if speedup >= 10 else 'NOT met'}).",
            f"p50 at concurrency 1: {p50:.2f} ms against 2 x in-process + 1 ms = {bound:.2f} ms "
            f"({'met' if p50 <= bound else 'NOT met'})."]
  table = '\n'.join(lines)
  print(table)
  os.makedirs(OUT, exist_ok=True)
  with open(os.path.join(OUT, 'serving_bench.md'), 'w') as f:
    f.write(table + '\n')


if __name__ == '__main__':
  main()
