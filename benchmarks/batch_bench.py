"""Batch and edge benchmark: batch.score's throughput against the SavedModel's own, and the
TFLite model's size and per-row latency.

    python -m benchmarks.batch_bench [--rows 100000] [--out bench_out/batch]
        [--model-base-path outputs/serving/adclick --transform-graph DIR] [Beam flags ...]

1. generates one month of --rows rows (kept under <out>/data-<rows>: a later call reuses it);
2. takes the model: by default the adclick model as the Trainer exports it but untrained,
   on a Transform graph analysed from the month's first 2,000 rows (throughput and latency do
   not depend on the weights), pushed as version 1 under <out>/serving; or the newest
   complete version under --model-base-path with its --transform-graph (e.g. a `make demo`
   run's, for the edge model);
3. scores the month with batch.score (Beam DirectRunner unless Beam flags say otherwise):
   wall time from start to the output in place, Beam start, CSV and image reads, model load
   and writes included;
4. scores the same rows in this process through the SavedModel's serving_default signature
   in batches of model_bench.BATCH, inputs prepared beforehand and the model loaded: the
   model's own throughput, the ceiling for batch scoring;
5. exports the edge model and measures its size and the latency of one row (batch of one,
   tf.lite.Interpreter from the pinned tensorflow, single-threaded), over 1,000 rows;
and prints the tables, also written to <out>/batch_bench.md.
"""
import argparse
import os
import sys
import time
from typing import Dict, List

# First: the batch package sets TF_USE_LEGACY_KERAS before TensorFlow loads.
from batch import score  # pylint: disable=g-bad-import-order

import numpy as np
import tensorflow as tf

from benchmarks import model_bench
from components import edge_export
from components import safe_pusher
from datagen.generate import generate_span
from models import data_layout
from models import edge_model
from models import features
from models import serving_layout
from models import signatures
from models import storage

SPAN = 1
ANALYSED_ROWS = 2000
LATENCY_ROWS = 1000


def month(out: str, rows: int) -> str:
  root = os.path.join(out, f'data-{rows}')
  if not os.path.exists(data_layout.ads_csv(root, SPAN)):
    generate_span(root, SPAN, rows)
  return root


def _raw_rows(inputs: Dict[str, np.ndarray], count: int) -> List[dict]:
  return [{name: values[i].item() if isinstance(values[i], np.generic) else values[i]
           for name, values in inputs.items()} for i in range(count)]


def untrained_model(out: str, inputs: Dict[str, np.ndarray]):
  """(model base path, transform graph): the adclick model untrained, pushed as version 1."""
  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft
  import tensorflow_transform.beam as tft_beam
  from tensorflow_transform.tf_metadata import dataset_metadata
  from tensorflow_transform.tf_metadata import metadata_io
  from models import model as model_lib
  from models import preprocessing
  from schema import generate as schema_generate
  # pylint: enable=g-import-not-at-top
  graph = os.path.join(out, 'transform_graph')
  base = serving_layout.model_root(os.path.join(out, 'serving'))
  if served_version_dir(base):
    return base, graph
  metadata = dataset_metadata.DatasetMetadata(schema_generate.build_schema())
  derived = {f.name: [f.domain[-1]] for f in features.example_features()
             if f.role == features.DERIVED}
  label = {features.LABEL_KEY: [0]}
  rows = [dict({k: [v] for k, v in row.items()}, **derived, **label)
          for row in _raw_rows(inputs, ANALYSED_ROWS)]
  with tft_beam.Context(temp_dir=os.path.join(out, 'tft_tmp'), force_tf_compat_v1=False):
    transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(preprocessing.preprocessing_fn)
    _ = transform_fn | tft_beam.WriteTransformFn(graph)
  metadata_io.write_metadata(metadata, os.path.join(graph, 'metadata'))
  output = tft.TFTransformOutput(graph)
  model = model_lib.build_model(output, model_lib.HParams())
  saved = os.path.join(out, 'untrained_model')
  model.save(saved, save_format='tf', signatures=signatures.build(model, output))
  safe_pusher.push(saved, base, '1')
  return base, graph


def served_version_dir(base: str):
  version = storage.latest_whole_version(base) if os.path.isdir(base) else None
  return None if version is None else serving_layout.version_dir(base, version)


def in_process_rows_per_s(model_dir: str, inputs: Dict[str, np.ndarray]) -> float:
  serve = tf.saved_model.load(model_dir).signatures[signatures.SERVING_SIGNATURE]
  specs = serve.structured_input_signature[1]
  rows = len(next(iter(inputs.values())))
  batches = [{name: tf.constant(inputs[name][start:start + model_bench.BATCH], spec.dtype)
              for name, spec in specs.items()}
             for start in range(0, rows, model_bench.BATCH)]
  serve(**batches[0])  # the first call traces
  started = time.perf_counter()
  for batch in batches:
    serve(**batch)[signatures.PREDICTION_KEY].numpy()
  return rows / (time.perf_counter() - started)


def edge_figures(out: str, model_dir: str, graph: str, inputs: Dict[str, np.ndarray]):
  """(size in bytes, median and p99 per-row latency in ms) of the exported edge model."""
  bundle = edge_export.export(model_dir, graph, os.path.join(out, 'edge'), 'bench')
  path = os.path.join(bundle, edge_model.TFLITE_FILE)
  vocabularies = edge_model.read_vocabularies(bundle)
  encoded = edge_model.encode(_raw_rows(inputs, LATENCY_ROWS), vocabularies)
  interpreter = tf.lite.Interpreter(model_path=path, num_threads=1)
  edge_model.predict(interpreter, {k: v[:1] for k, v in encoded.items()})  # allocate
  times = []
  for i in range(LATENCY_ROWS):
    row = {k: v[i:i + 1] for k, v in encoded.items()}
    started = time.perf_counter()
    edge_model.predict(interpreter, row)
    times.append(1000 * (time.perf_counter() - started))
  return os.path.getsize(path), float(np.median(times)), float(np.percentile(times, 99))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--rows', type=int, default=100000)
  parser.add_argument('--out', default=os.path.join('bench_out', 'batch'))
  parser.add_argument('--model-base-path', help='default: an untrained model (see above)')
  parser.add_argument('--transform-graph', help='the Transform graph of that model')
  args, beam_args = parser.parse_known_args(argv)
  if bool(args.model_base_path) != bool(args.transform_graph):
    parser.error('--model-base-path and --transform-graph go together')
  out = os.path.abspath(args.out)
  root = month(out, args.rows)
  span_dir = data_layout.span_dir(root, SPAN)
  inputs = model_bench.serving_inputs(model_bench.read_month(root, SPAN), span_dir)
  base, graph = ((args.model_base_path, args.transform_graph) if args.model_base_path
                 else untrained_model(out, inputs))
  model_dir = served_version_dir(base)

  started = time.perf_counter()
  manifest = score.score(span_dir, os.path.join(out, 'scores'), base, beam_args=beam_args)
  batch_s = time.perf_counter() - started
  batch_rate = manifest['rows_scored'] / batch_s
  model_rate = in_process_rows_per_s(model_dir, inputs)
  size, median_ms, p99_ms = edge_figures(out, model_dir, graph, inputs)

  cores = len(os.sched_getaffinity(0))
  text = '\n'.join([
      f'Batch scoring of {manifest["rows_scored"]:,} rows ({manifest["rows_rejected"]} '
      f'rejected) on {cores} cores, Beam flags: {" ".join(beam_args) or "none (DirectRunner)"}',
      '',
      model_bench.markdown(['', 'rows/s', 'wall s'], [
          ['batch.score (Beam, RunInference, end to end)', f'{batch_rate:,.0f}',
           f'{batch_s:.1f}'],
          [f'SavedModel in process (serving_default, batches of {model_bench.BATCH})',
           f'{model_rate:,.0f}', f'{manifest["rows_scored"] / model_rate:.1f}'],
          ['batch / in process', f'{batch_rate / model_rate:.2f}', '']]),
      '',
      f'Edge model ({edge_model.TFLITE_FILE}, one row per call, 1 thread, {LATENCY_ROWS:,} rows)',
      '',
      model_bench.markdown(['size KiB', 'median ms/row', 'p99 ms/row'], [
          [f'{size / 1024:,.0f}', f'{median_ms:.2f}', f'{p99_ms:.2f}']]),
  ])
  print(text)
  with open(os.path.join(out, 'batch_bench.md'), 'w') as f:
    f.write(text + '\n')


if __name__ == '__main__':
  sys.exit(main())
