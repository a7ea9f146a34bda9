"""Serving benchmark: the local model server against an in-process call and a naive Flask app.

    make bench    # or: python -m benchmarks.serving_bench [--serving-root outputs/serving]

Single-ad `:predict` requests on 127.0.0.1 at concurrency 1, 8 and 32, each level bounded by
--requests and --seconds; latency p50/p99 and throughput for
  in-process    the newest pushed SavedModel called directly in this process (the lower bound)
  model_server  serving/emulator/model_server.py, as `make serve` runs it
  Flask         benchmarks/flask_baseline.py: one model call per request, as tutorials show
The load generator (a minimal HTTP client in this process) shares the cores with the server.
Prints a Markdown table (also saved to bench_out/serving_bench.md) and the two targets:
throughput at concurrency 8 at least 10x Flask's, and p50 at concurrency 1 at most twice the
in-process call plus 1 ms.

Then the starvation check: single-ad requests one after another while 1,000 idle connections
are open and one 30 MiB request (one field a list of millions of prices) is sent, decoded and
answered; the worst latency of those small requests (target <= 1 s), and the server's RSS
before, at its peak during, and 2 s after the large request.
"""
import argparse
import asyncio
import json
import math
import os
import resource
import time
from typing import Dict, List, Optional
import urllib.parse

import numpy as np

from models import features
from models import serving_layout
from models import signatures
from models import storage
from serving import client
from serving.emulator import rest_json
from serving.emulator import server_process
from serving.emulator import versions

OUT = 'bench_out'
CONCURRENCY = (1, 8, 32)
WARMUP_REQUESTS = 20
IDLE_CONNECTIONS = 1000
LARGE_BODY_MIB = 30
STALL_TARGET_SECONDS = 1.0


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


def large_body(instance: dict, mib: int = LARGE_BODY_MIB) -> bytes:
  """A predict request of about `mib` MiB: one instance whose price is a list of millions
  of prices (the shape of the request that stalled every client for 37 s)."""
  prices = b'12.5, ' * ((mib << 20) // 6)
  doc = json.dumps({'instances': [dict(instance, bid_price=0)]}).encode()
  head, tail = doc.split(b'"bid_price": 0', 1)
  return head + b'"bid_price": [' + prices + b'12.5]' + tail


def _rss_mib(pid: int) -> float:
  with open(f'/proc/{pid}/status') as f:
    return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:')) / 1024


async def _request(reader, writer, request: bytes) -> int:
  writer.write(request)
  status, *lines = (await reader.readuntil(b'\r\n\r\n')).decode('latin-1').split('\r\n')
  headers = {k.lower(): v for k, _, v in (line.partition(': ') for line in lines if line)}
  await reader.readexactly(int(headers['content-length']))
  return int(status.split()[1])


def _post(host: str, port: int, path: str, body: bytes) -> bytes:
  return (f'POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n'
          f'Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n'
          ).encode() + body


async def _starve(url: str, pid: int, path: str, small: bytes, large: bytes) -> Dict[str, float]:
  parts = urllib.parse.urlsplit(url)
  host, port = parts.hostname, parts.port
  idle = [await asyncio.open_connection(host, port) for _ in range(IDLE_CONNECTIONS)]
  reader, writer = await asyncio.open_connection(host, port)
  small_request = _post(host, port, path, small)
  for _ in range(WARMUP_REQUESTS):
    await _request(reader, writer, small_request)
  rss = {'before': _rss_mib(pid), 'peak': 0.0}
  big_reader, big_writer = await asyncio.open_connection(host, port)
  began = time.perf_counter()
  big = asyncio.ensure_future(_request(big_reader, big_writer, _post(host, port, path, large)))
  latencies = []
  while not big.done() or len(latencies) < 20:
    start = time.perf_counter()
    status = await _request(reader, writer, small_request)
    latencies.append(time.perf_counter() - start)
    if status != 200:
      raise RuntimeError(f'a small request got {status}')
    rss['peak'] = max(rss['peak'], _rss_mib(pid))
  large_status, large_seconds = await big, time.perf_counter() - began
  await asyncio.sleep(2)
  rss['after'] = _rss_mib(pid)
  still_open = sum(not r.at_eof() for r, _ in idle)
  for _, w in idle + [(None, writer), (None, big_writer)]:
    w.close()
  return {'small requests': len(latencies), 'worst s': max(latencies),
          'p50 ms': 1e3 * float(np.percentile(latencies, 50)), 'large status': large_status,
          'large s': large_seconds, 'idle still open': still_open,
          **{f'RSS {k} MiB': v for k, v in rss.items()}}


def starvation(serving_root: str, small: bytes, large: bytes, path: str) -> Dict[str, float]:
  soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # this process holds 1,000 sockets
  resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * IDLE_CONNECTIONS)), hard))
  with server_process.model_server(serving_root, serving_layout.MODEL_NAME) as server:
    return asyncio.run(_starve(server.url, server.pid, path, small, large))


def starvation_table(found: Dict[str, float]) -> str:
  worst = found['worst s']
  return '\n'.join([
      '| ' + ' | '.join(found) + ' |', '|' + '---|' * len(found),
      '| ' + ' | '.join(f'{v:.3g}' if isinstance(v, float) else str(v)
                        for v in found.values()) + ' |', '',
      f'Worst small-request latency: {worst:.2f} s (target <= {STALL_TARGET_SECONDS:g} s: '
      f"{'met' if worst <= STALL_TARGET_SECONDS else 'NOT met'})."])


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--serving-root', default='outputs/serving',
                      help='where the pipeline pushed the model (its newest version is used)')
  parser.add_argument('--requests', type=int, default=2000, help='per concurrency level')
  parser.add_argument('--seconds', type=float, default=20, help='per concurrency level')
  parser.add_argument('--part', choices=('all', 'throughput', 'starvation'), default='all')
  args = parser.parse_args()
  model_root = serving_layout.model_root(args.serving_root)
  found = storage.version_numbers(model_root)
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
  tables = []
  if args.part in ('all', 'throughput'):
    tables.append(throughput(args, model_dir, doc, body, path))
  if args.part in ('all', 'starvation'):
    print(f'Starvation: {IDLE_CONNECTIONS} idle connections and a {LARGE_BODY_MIB} MiB request '
          '...', flush=True)
    tables.append(starvation_table(starvation(args.serving_root, body, large_body(instance),
                                              path)))
  table = '\n\n'.join(tables)
  print(table)
  os.makedirs(OUT, exist_ok=True)
  with open(os.path.join(OUT, 'serving_bench.md'), 'w') as f:
    f.write(table + '\n')


def throughput(args: argparse.Namespace, model_dir: str, doc: dict, body: bytes,
               path: str) -> str:
  """The latency and throughput table, with its two targets."""
  results = {('in-process call (lower bound)', 1): in_process(model_dir, doc, args.requests,
                                                              args.seconds)}
  for name, module, module_args in [
      ('model_server (make serve)', 'serving.emulator.model_server',
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
  return '\n'.join(lines)


if __name__ == '__main__':
  main()
