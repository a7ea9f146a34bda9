"""Distributed training benchmark: the Trainer's run_fn on 1 and on 2 worker processes.

    python -m benchmarks.distributed_bench [--rows 100000] [--workers 1 2] [--seed 7]
                                           [--out bench_out] [--set hparams.NAME=VALUE ...]

1. generates one month of --rows rows under <out>/data-<rows>-seed<seed> (kept for later calls)
   and runs the pipeline on it once (local_runner.py, a window of one month, one training epoch:
   only its ExampleGen and Transform outputs are used), unless <out>/distrib-<rows>-seed<seed>
   holds that run already;
2. for each --workers N, runs trainer.run_fn as TFX's Trainer would on that run's train and
   validation splits, in N processes on 127.0.0.1 with a TF_CONFIG each (`local_cluster`: the
   stand-in for the replicas Vertex AI Training or a Kubeflow TFJob would start), N=1 without
   TF_CONFIG (the single-process path);
3. prints a table: workers, wall seconds, peak RSS of each worker process, epochs trained, and
   the exported model's AUC on the eval split (the out-of-time rows no run trained on) through
   its serving_examples signature; also written to <out>/distributed_bench.md.

On a machine with fewer cores than workers, the workers share the cores: expect no speed-up.
"""
import argparse
import dataclasses
import glob
import json
import os
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

WORKER_FLAG = '--worker-fn-args'  # the entry point of one replica (run by local_cluster)
FN_ARGS_FIELDS = ('train_files', 'eval_files', 'transform_output', 'serving_model_dir',
                  'custom_config')
OUT = 'bench_out'
EVAL_BATCH = 1024


# ---------------------------------------------------------------- the local cluster

@dataclasses.dataclass
class Replica:
  """One worker process of a local_cluster run."""
  index: int
  returncode: Optional[int]  # None: killed at the deadline
  log: str  # its stdout and stderr
  tmpdir: str  # its TMPDIR (a non-chief's temporary export goes there)
  peak_rss_gib: float


def free_ports(count: int) -> List[int]:
  """Ports free on 127.0.0.1 now (the sockets stay open until all are picked: no repeats)."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def tf_configs(workers: int) -> List[Optional[str]]:
  """TF_CONFIG for each of `workers` processes (worker 0 is the chief); None for one."""
  if workers == 1:
    return [None]
  addresses = [f'127.0.0.1:{port}' for port in free_ports(workers)]
  return [json.dumps({'cluster': {'worker': addresses}, 'task': {'type': 'worker', 'index': i}})
          for i in range(workers)]


def local_cluster(fn_args: Sequence[Dict], work_dir: str, timeout_s: float) -> List[Replica]:
  """Runs trainer.run_fn in one process per `fn_args` (the FnArgs fields of FN_ARGS_FIELDS),
  as a cluster of that many workers on 127.0.0.1; waits for all (killing all at the deadline:
  a replica that died leaves the others waiting in their collectives)."""
  processes = []
  for index, (args, tf_config) in enumerate(zip(fn_args, tf_configs(len(fn_args)))):
    env = {k: v for k, v in os.environ.items() if k != 'TF_CONFIG'}
    if tf_config:
      env['TF_CONFIG'] = tf_config
    tmpdir = os.path.join(work_dir, f'tmp-{index}')
    os.makedirs(tmpdir, exist_ok=True)
    env['TMPDIR'] = tmpdir
    log = os.path.join(work_dir, f'worker-{index}.log')
    with open(log, 'w') as out:
      process = subprocess.Popen(
          [sys.executable, '-m', 'benchmarks.distributed_bench', WORKER_FLAG, json.dumps(args)],
          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
          stdout=out, stderr=subprocess.STDOUT)
    processes.append((process, Replica(index, None, log, tmpdir, 0.0)))
  deadline = time.time() + timeout_s
  waiting = dict(processes)
  while waiting and time.time() < deadline:
    for process, replica in list(waiting.items()):
      pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # its own rusage, once it ends
      if pid:
        process.returncode = replica.returncode = os.waitstatus_to_exitcode(status)
        replica.peak_rss_gib = usage.ru_maxrss / 2**20  # KiB on Linux
        del waiting[process]
    time.sleep(0.2)
  for process in waiting:
    process.kill()
    process.wait()
  return [replica for _, replica in processes]


def tfx_fn_args(fields: Dict):
  """The FnArgs that TFX's Trainer would pass run_fn, from its FN_ARGS_FIELDS."""
  from tfx import v1 as tfx  # pylint: disable=import-outside-toplevel
  return tfx.components.FnArgs(**fields)


def run_worker(fn_args_json: str) -> None:
  """One replica: trainer.run_fn on the FnArgs that local_cluster passed, logging at INFO as
  TFX's executors do (the run_fn's epochs-trained line is how the test sees each replica)."""
  from absl import logging  # pylint: disable=import-outside-toplevel
  from models import trainer  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.INFO)
  trainer.run_fn(tfx_fn_args(json.loads(fn_args_json)))


# ---------------------------------------------------------------- the exported model

def eval_auc(model_dir: str, file_pattern: str) -> float:
  """The AUC of an exported model on ExampleGen's files, scored through serving_examples."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from components import evaluation_results  # pylint: disable=import-outside-toplevel
  from models import features  # pylint: disable=import-outside-toplevel
  from models import signatures  # pylint: disable=import-outside-toplevel
  serve = tf.saved_model.load(model_dir).signatures[signatures.EXAMPLES_SIGNATURE]
  label_spec = {features.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
  scores, labels = [], []
  files = sorted(glob.glob(file_pattern))
  for batch in tf.data.TFRecordDataset(files, compression_type='GZIP').batch(EVAL_BATCH):
    scores.append(serve(examples=batch)[signatures.PREDICTION_KEY].numpy())
    labels.append(tf.io.parse_example(batch, label_spec)[features.LABEL_KEY].numpy())
  return evaluation_results.auc(np.concatenate(labels), np.concatenate(scores))


# ---------------------------------------------------------------- the benchmark

def prepare(out: str, rows: int, seed: int):
  """(Examples URI, TransformGraph URI) of one pipeline run on one month of `rows` rows."""
  from benchmarks import model_bench  # pylint: disable=import-outside-toplevel
  import local_runner  # pylint: disable=import-outside-toplevel
  from pipeline import run_result  # pylint: disable=import-outside-toplevel
  data_root = os.path.abspath(os.path.join(out, f'data-{rows}-seed{seed}'))
  root = os.path.abspath(os.path.join(out, f'distrib-{rows}-seed{seed}'))

  def outputs(result):
    found = {a.type_name: a.uri for c in result.components for a in c.outputs}
    return found.get('Examples'), found.get('TransformGraph')

  done = os.path.exists(os.path.join(root, 'metadata.db')) and all(
      outputs(run_result.read(local_runner.metadata_config(root))))
  if not done:
    model_bench.generate(data_root, [1], rows, seed)
    model_bench.run_pipeline(f'{rows:,} rows', data_root, root, 1, 'window_spans=1',
                             'hparams.max_epochs=1')
  return outputs(run_result.read(local_runner.metadata_config(root)))


def bench(out: str, rows: int, seed: int, workers: Sequence[int], settings: Sequence[str],
          timeout_s: float) -> str:
  from components.image_csv_example_gen import splits  # pylint: disable=import-outside-toplevel
  from pipeline import config as config_lib  # pylint: disable=import-outside-toplevel
  from pipeline import options  # pylint: disable=import-outside-toplevel
  examples, transform = prepare(out, rows, seed)
  config = options.apply(config_lib.PipelineConfig(),
                         dict(setting.split('=', 1) for setting in settings))

  def files(split):
    return os.path.join(examples, f'Split-{split}', '*')

  lines = []
  for count in workers:
    run_dir = os.path.abspath(os.path.join(out, f'distrib-{rows}-seed{seed}', f'workers-{count}'))
    model_dir = os.path.join(run_dir, 'model', 'Format-Serving')
    fn_args = {'train_files': [files(splits.TRAIN)], 'eval_files': [files(splits.VALIDATION)],
               'transform_output': transform, 'serving_model_dir': model_dir,
               'custom_config': {'hparams': dataclasses.asdict(config.hparams)}}
    load = os.getloadavg()[0]
    print(f'[{count} worker(s)] training (logs: {run_dir}) ...', flush=True)
    start = time.time()
    replicas = local_cluster([fn_args] * count, run_dir, timeout_s)
    seconds = time.time() - start
    failed = [r for r in replicas if r.returncode != 0]
    if failed:
      raise RuntimeError(f'{count} worker(s): worker(s) {[r.index for r in failed]} failed or '
                         f'timed out; see {[r.log for r in failed]}')
    with open(os.path.join(run_dir, 'model', 'hparams.json')) as f:
      epochs = json.load(f)['epochs_trained']
    lines.append([str(count), f'{seconds:.0f}',
                  ', '.join(f'{r.peak_rss_gib:.2f}' for r in replicas), str(epochs),
                  f'{eval_auc(model_dir, files(splits.EVAL)):.4f}', f'{load:.1f}'])
    print(f'[{count} worker(s)] ' + ' | '.join(lines[-1]), flush=True)
  from benchmarks.model_bench import markdown  # pylint: disable=import-outside-toplevel
  return markdown(['workers', 'wall s', 'peak RSS GiB (each worker)', 'epochs',
                   'eval AUC (serving_examples)', '1-min load before'], lines) + (
      f'\n\n{rows:,} rows generated (seed {seed}), one month; ExampleGen\'s train split trains '
      'and its validation split validates (early stopping, calibration); eval AUC on its eval '
      f'split. {os.cpu_count()} cores. Wall s: from starting the worker processes to the last '
      'one ending (imports included).')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument(WORKER_FLAG, help=argparse.SUPPRESS)
  parser.add_argument('--rows', type=int, default=100_000)
  parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
  parser.add_argument('--seed', type=int, default=7)
  parser.add_argument('--out', default=OUT)
  parser.add_argument('--timeout-s', type=float, default=3600,
                      help='kill a training run\'s workers after this long')
  parser.add_argument('--set', dest='settings', action='append', default=[],
                      metavar='NAME=VALUE', help='a config field for training, e.g. '
                      'hparams.max_epochs=3 (repeatable)')
  args = parser.parse_args(argv)
  if args.worker_fn_args:
    run_worker(args.worker_fn_args)
    return
  text = bench(args.out, args.rows, args.seed, args.workers, args.settings, args.timeout_s)
  print(text)
  with open(os.path.join(args.out, 'distributed_bench.md'), 'w') as f:
    f.write(text + '\n')


if __name__ == '__main__':
  main()
