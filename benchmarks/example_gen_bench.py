"""ExampleGen alone at volume: seconds, ms a row and peak RSS by rows read, and where it grows.

    python -m benchmarks.example_gen_bench [--sizes 300000 1000000] [--seed 7] [--out bench_out]
                                           [--data DIR] [--trace] [--tfx]

For each size of rows read (the default window of W months, so size / W rows a month; the
months are generated under <data>/data-<rows a month>-seed<seed> as model_bench --scale names
them, and reused), runs the pipeline's ImageCsvExampleGen (the component as pipeline.py builds
it with the default config; its executor's Beam pipeline on the DirectRunner in the process,
as local_runner.py runs it; --tfx: through TFX's LocalDagRunner and MLMD as local_runner.py
does) in a process of its own and prints one table: wall and CPU seconds (CPU time is the
steadier figure when other work shares the cores), each a row, the process's own peak RSS
(VmHWM) and its RSS once everything was imported (what the run adds is the difference).
--trace also prints, per Beam stage the runner executed (a fused chain of steps), its seconds
and the RSS when it started, at most while it ran (sampled every 0.1 s) and when it ended: a
stage whose RSS rises with the rows is a grower.
"""
import argparse
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List, Sequence

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

from absl import logging as absl_logging
from apache_beam.runners.portability.fn_api_runner import fn_runner
from tfx import v1 as tfx
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

import local_runner
from components.image_csv_example_gen import executor
from pipeline import config as config_lib
from pipeline import memory
from pipeline import pipeline as pipeline_lib
from pipeline import run_result

OUT = 'bench_out'
SIZES = (300_000, 1_000_000)  # rows read
SAMPLE_S = 0.1  # RSS sampling period of --trace
_PAGE = os.sysconf('SC_PAGE_SIZE')


def rss_bytes() -> int:
  """This process's resident set now."""
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * _PAGE


class StageTrace:
  """RSS per Beam stage, by wrapping the DirectRunner's (FnApiRunner's) bundle execution: a
  thread samples the RSS and charges it to the stage running."""

  def __init__(self):
    self.stages: List[Dict] = []
    self._current = None
    self._done = threading.Event()

  def install(self) -> None:
    execute = fn_runner.FnApiRunner._execute_bundle  # pylint: disable=protected-access
    trace = self

    def traced(runner, context, bundle_manager, bundle_input):
      stage = {'stage': stage_name(bundle_manager.stage), 'start_rss': rss_bytes(),
               'start': time.time()}
      stage['max_rss'] = stage['start_rss']
      trace.stages.append(stage)
      trace._current = stage
      try:
        return execute(runner, context, bundle_manager, bundle_input)
      finally:
        stage['end_rss'] = rss_bytes()
        stage['max_rss'] = max(stage['max_rss'], stage['end_rss'])
        stage['s'] = time.time() - stage['start']
        trace._current = None

    fn_runner.FnApiRunner._execute_bundle = traced  # pylint: disable=protected-access
    threading.Thread(target=self._sample, daemon=True).start()

  def _sample(self) -> None:
    while not self._done.wait(SAMPLE_S):
      stage = self._current
      if stage is not None:
        stage['max_rss'] = max(stage['max_rss'], rss_bytes())

  def stop(self) -> None:
    self._done.set()


def _cpu_seconds() -> float:
  """CPU seconds of this process so far: on shared cores, steadier than its wall time."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def stage_name(stage) -> str:
  """A fused stage in words: its steps' names three levels deep, without ReadRows' list of
  files, e.g. 'InputToRecord/ReadRows/ParseRows + WriteSplits/BucketRows'."""
  names = []
  for transform in stage.transforms:
    name = '/'.join(re.sub(r'\(\[.*?\]\)', '', transform.unique_name).split('/')[:3])
    if name and name not in names:
      names.append(name)
  return ' + '.join(names)


def run_one(data_root: str, output_root: str, trace: bool, tfx_run: bool) -> Dict:
  """Runs the pipeline's ImageCsvExampleGen, alone; returns its figures. With tfx_run, as
  local_runner.py runs it (TFX's LocalDagRunner, MLMD, absl logging at INFO); else its
  executor directly."""
  config = config_lib.PipelineConfig()
  example_gen = pipeline_lib.ImageCsvExampleGen(
      input_base=data_root, max_rejected_fraction=config.max_rejected_fraction,
      split_config=config.split, range_config=pipeline_lib.range_config(config))
  stages = StageTrace()
  if trace:
    stages.install()
  imported_rss = rss_bytes()
  start, cpu_start = time.time(), _cpu_seconds()
  if tfx_run:
    absl_logging.set_verbosity(absl_logging.INFO)
    metadata = local_runner.metadata_config(output_root)
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=os.path.join(output_root, 'pipeline'),
        components=[example_gen], metadata_connection_config=metadata))
    rows = run_result.read(metadata).data.rows_read
  else:
    examples = standard_artifacts.Examples()
    examples.uri = output_root
    executor.Executor().Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]},
                           dict(example_gen.exec_properties))
    rows = (examples.get_int_custom_property(executor.ROWS_ACCEPTED_PROPERTY) +
            examples.get_int_custom_property(executor.ROWS_REJECTED_PROPERTY))
  seconds, cpu_seconds = time.time() - start, _cpu_seconds() - cpu_start
  stages.stop()
  return {'rows': rows, 's': seconds, 'cpu_s': cpu_seconds, 'imported_rss': imported_rss,
          'peak_rss': memory.peak_rss_bytes(), 'stages': stages.stages}


def run_child(data_root: str, output_root: str, trace: bool, tfx_run: bool) -> Dict:
  """run_one in a fresh process, so that its peak RSS is ExampleGen's; its figures."""
  shutil.rmtree(output_root, ignore_errors=True)
  os.makedirs(output_root)
  result_path = os.path.join(output_root, 'example_gen_bench.json')
  command = [sys.executable, '-m', 'benchmarks.example_gen_bench', '--child', data_root,
             output_root, result_path] + (['--trace'] if trace else []) + (
                 ['--tfx'] if tfx_run else [])
  load_before = os.getloadavg()[0]
  with open(os.path.join(output_root, 'example_gen_bench.log'), 'w') as log:
    process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if process.returncode != 0:
    raise RuntimeError(f'ExampleGen failed on {data_root}; see {log.name}')
  with open(result_path) as f:
    result = json.load(f)
  result['load_before'] = load_before
  return result


def _gib(n: float) -> str:
  return f'{n / 2**30:.2f}'


def stage_table(stages: Sequence[Dict]) -> str:
  lines = ['| stage (fused steps) | s | RSS at start GiB | max GiB | at end GiB |',
           '|---|---|---|---|---|']
  for stage in stages:
    lines.append(f"| {stage['stage']} | {stage['s']:.1f} | {_gib(stage['start_rss'])} | "
                 f"{_gib(stage['max_rss'])} | {_gib(stage['end_rss'])} |")
  return '\n'.join(lines)


def bench(sizes: Sequence[int], seed: int, out: str, data: str, trace: bool,
          tfx_run: bool) -> str:
  # Only here: its scikit-learn and pandas would raise the RSS of the process measured.
  from benchmarks import model_bench  # pylint: disable=import-outside-toplevel
  window = config_lib.PipelineConfig().window_spans
  lines = ['| rows read | s | ms a row | CPU s | CPU ms a row | peak RSS GiB | '
           'RSS after imports GiB | 1-min load before |', '|---|---|---|---|---|---|---|---|']
  traces = []
  for size in sizes:
    per_month = -(-size // window)
    data_root = os.path.abspath(os.path.join(data, f'data-{per_month}-seed{seed}'))
    model_bench.generate(data_root, range(1, window + 1), per_month, seed)
    print(f'ExampleGen on {size:,} rows read ({data_root}) ...', flush=True)
    result = run_child(data_root, os.path.abspath(os.path.join(out, f'example_gen-{size}')),
                       trace, tfx_run)
    lines.append(f"| {result['rows']:,} | {result['s']:.0f} | "
                 f"{1000 * result['s'] / result['rows']:.3f} | {result['cpu_s']:.0f} | "
                 f"{1000 * result['cpu_s'] / result['rows']:.3f} | {_gib(result['peak_rss'])} | "
                 f"{_gib(result['imported_rss'])} | {result['load_before']:.1f} |")
    if trace:
      traces += ['', f"Stages at {result['rows']:,} rows read:", '',
                 stage_table(result['stages'])]
    print(lines[-1], flush=True)
  return '\n'.join(lines + traces)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--sizes', type=int, nargs='+', default=list(SIZES))
  parser.add_argument('--seed', type=int, default=7)
  parser.add_argument('--out', default=OUT, help='where the runs write')
  parser.add_argument('--data', help='holds the generated months (default: --out)')
  parser.add_argument('--trace', action='store_true', help='RSS and seconds per Beam stage')
  parser.add_argument('--tfx', action='store_true',
                      help="through TFX's LocalDagRunner as local_runner.py runs it (MLMD, "
                      'absl logging at INFO), not the executor alone')
  parser.add_argument('--child', nargs=3, metavar=('DATA_ROOT', 'OUTPUT_ROOT', 'RESULT'),
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    data_root, output_root, result_path = args.child
    result = run_one(data_root, output_root, args.trace, args.tfx)
    with open(result_path, 'w') as f:
      json.dump(result, f)
    return
  command = ' '.join(['python -m benchmarks.example_gen_bench'] +
                     (sys.argv[1:] if argv is None else list(argv)))
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
  text = bench(args.sizes, args.seed, args.out, args.data or args.out, args.trace, args.tfx)
  text = (f'`{command}` (started {stamp}; {os.cpu_count()} cores)\n\n{text}\n\n'
          'One process per size running ImageCsvExampleGen alone (the default config, the '
          'DirectRunner in the process). Peak RSS: that process (imports included), its '
          'VmHWM.')
  print(text)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'example_gen_bench.md'), 'w') as f:
    f.write(text + '\n')


if __name__ == '__main__':
  main()
