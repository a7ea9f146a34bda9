"""Pipeline benchmark: wall time, rows/s and model quality vs the oracle and a tabular-only model.

    make bench            # or: python -m benchmarks.pipeline_bench --rows 10000 100000
For each size it generates two spans, runs the whole local pipeline on the latest one, and
then, on the same data, the tabular-only variant of the same model. Prints a Markdown table
(also saved to bench_out/pipeline_bench.md) for the README.
"""
import argparse
import contextlib
import dataclasses
import io
import os
import time

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import local_runner
from datagen.generate import generate_span
from pipeline import config as config_lib
from pipeline import summary

OUT = 'bench_out'


def _run(data_root, output_root, config):
  """Runs the pipeline quietly; returns (seconds, new model metrics, oracle metrics)."""
  start = time.time()
  with contextlib.redirect_stdout(io.StringIO()):
    ok = local_runner.run(data_root, output_root, config)
  seconds = time.time() - start
  if not ok:
    raise RuntimeError(f'pipeline failed; see {output_root}/last_run_summary.md')
  metadata = summary.run_artifacts(local_runner.metadata_config(output_root))
  return seconds, summary.model_metrics(metadata, data_root)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--rows', type=int, nargs='+', default=[10000, 100000])
  args = parser.parse_args()
  lines = ['| rows/span | generate s | pipeline s | rows/s | AUC | log-loss | '
           'tabular-only AUC | tabular-only log-loss | oracle AUC | oracle log-loss |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for rows in args.rows:
    data_root = os.path.abspath(os.path.join(OUT, f'data-{rows}'))
    start = time.time()
    for span in (1, 2):
      generate_span(data_root, span, rows)
    generate_s = time.time() - start
    print(f'[{rows} rows] generated in {generate_s:.0f} s; running the pipeline ...', flush=True)
    config = config_lib.PipelineConfig()
    seconds, full = _run(data_root, os.path.join(OUT, f'run-{rows}'), config)
    print(f'[{rows} rows] pipeline {seconds:.0f} s; tabular-only variant ...', flush=True)
    _, tabular = _run(data_root, os.path.join(OUT, f'run-{rows}-tabular'),
                      dataclasses.replace(config, use_image=False))
    lines.append(
        f"| {rows} | {generate_s:.0f} | {seconds:.0f} | {rows / seconds:.0f} | "
        f"{full['candidate']['auc']:.4f} | {full['candidate']['logloss']:.4f} | "
        f"{tabular['candidate']['auc']:.4f} | {tabular['candidate']['logloss']:.4f} | "
        f"{full['oracle']['auc']:.4f} | {full['oracle']['logloss']:.4f} |")
  table = '\n'.join(lines)
  print(table)
  with open(os.path.join(OUT, 'pipeline_bench.md'), 'w') as f:
    f.write(table + '\n')


if __name__ == '__main__':
  main()
