"""Model benchmark: what the gate reports against what the next month shows, and what runs cost.

    make bench    # or: python -m benchmarks.model_bench [--rows 20000 100000] [--seed 7 ...]
                  #                                      [--months 3] [--out bench_out]
    python -m benchmarks.model_bench --rows 100000 --candidate-only
    python -m benchmarks.model_bench --rows 1000000 --months 2 --timing-only

For each size and seed, with N = --months:
1. generates months 1..N+1 under <out>/data-<rows>-seed<seed> (kept: a later call reuses them);
2. runs the pipeline (local_runner.py, the default config, one subprocess per run: its console
   output in <run root>/span-<N>.log, the full log in <run root>/logs/) on month N-1 and then on
   month N in one fresh output root, so the month-N candidate is gated against the served
   month-(N-1) model; and once more on month N with hparams.use_image=false (the tabular-only
   variant) in its own root;
3. scores month N+1, which no run has seen, with each run's model through its serving_default
   signature, next to a tuned logistic regression and a gradient-boosted tree
   (benchmarks/peers.py) trained on the rows the
   month-N model trained on (its ExampleGen's train and validation splits) and the generator's
   true probabilities (the oracle), overall and for new ads (whose cohort_key value is absent
   from those training rows) and established ones;
4. prints one quality table and one wall-time table (per component from MLMD, the whole run,
   its peak RSS) and writes them to <out>/model_bench.md.
--candidate-only runs only the month-N pipeline (so no gate gain and no tabular-only variant).
--timing-only generates months 1..N and runs the pipeline once, on month N (no peers, no
scoring), for the wall-time table alone, written to <out>/model_bench_timing.md.
--scale runs the pipeline once for each of --sizes rows read (the default window of W months,
so size / W rows a month, under <out>/data-<rows a month>-seed<seed>) and writes one cost
table to <out>/model_bench_scale.md: per component its seconds, ms a row, and the bytes on
disk it wrote and was given a row (benchmarks/component_io.py); the run's wall time and peak
RSS; and, for the largest size, month W+1 scored by the model, the peers and the oracle.
"""
import argparse
import collections
import dataclasses
import datetime
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx.utils import path_utils

import local_runner
from benchmarks import auc_interval
from benchmarks import component_io
from benchmarks.peers import figures, input_columns, peers, read_examples, tabular_features
from components import data_gate
from components import evaluation_results
from components.evaluation_results import Estimate
from components.image_csv_example_gen import splits
from datagen.generate import generate_span
from models import data_layout
from models import features
from models import signatures
from pipeline import config as config_lib
from pipeline import memory
from pipeline import run_result
from pipeline import summary

OUT = 'bench_out'
ALL = 'all'  # the cohort of every row
TABULAR_ONLY = 'hparams.use_image=false'
BATCH = 2048  # rows per serving_default call
ORACLE = 'oracle'  # read_month's column of true click probabilities
# The peers are fitted on at most this many of the candidate's training rows (a uniform
# sample): scikit-learn holds them all in memory, and the 3,000,000-row run trains on 2.8M.
PEER_ROWS = 500_000
SCALE_SIZES = (300_000, 1_000_000, 3_000_000)  # rows read by one run (--scale)
EVALUATOR = 'Evaluator'  # its cost is per eval row


@dataclasses.dataclass
class Run:
  """One pipeline run: its result (MLMD), wall time and peak RSS of its process."""
  label: str
  result: run_result.RunResult
  wall_s: float
  peak_rss_gib: float
  load_before: float  # the machine's 1-min load average when it started: what shared it

  def model_dir(self) -> str:
    """The Trainer's SavedModel (what the Pusher copies when the model is blessed)."""
    return path_utils.serving_model_path(self.result.training.model_uri)

  def pushed(self) -> bool:
    return bool(self.result.push and self.result.push.pushed)


@dataclasses.dataclass
class Row:
  """One line of the quality table."""
  size: str
  model: str
  cohort: str
  gate_auc: Optional[Estimate] = None  # the Evaluator's, on its run's eval split
  gate_gain: Optional[Estimate] = None  # paired AUC change vs the served model, same rows
  next_month: Optional[Dict[str, float]] = None  # figures() on month N+1
  next_gain: Optional[float] = None  # AUC change vs the served model on month N+1
  oracle_gap: Optional[Estimate] = None  # AUC minus the oracle's on month N+1, 95 % interval


# ---------------------------------------------------------------- data and pipeline runs

def generate(data_root: str, spans: Sequence[int], rows: int, seed: int) -> None:
  for span in spans:
    # The ground truth is written last: when it exists, the span is complete.
    if not os.path.exists(data_layout.ground_truth_csv(data_root, span)):
      generate_span(data_root, span, rows, seed=seed)


def run_pipeline(label: str, data_root: str, output_root: str, span: int,
                 *settings: str) -> Run:
  """Runs local_runner.py on `span` in its own process. Its peak RSS is the largest the run
  recorded after a component (pipeline/memory.py: VmHWM, the process's own; wait4's
  ru_maxrss would include this process's resident set at the fork)."""
  os.makedirs(output_root, exist_ok=True)
  log_path = os.path.join(output_root, f'span-{span}.log')
  command = [sys.executable, 'local_runner.py', '--data-root', data_root,
             '--output-root', output_root, '--span', str(span)]
  command += [arg for setting in settings for arg in ('--set', setting)]
  print(f'[{label}] running the pipeline (log: {log_path}) ...', flush=True)
  load_before = os.getloadavg()[0]
  start = time.time()
  with open(log_path, 'w') as log:
    process = subprocess.Popen(command, cwd=config_lib.REPO_ROOT, stdout=log,
                               stderr=subprocess.STDOUT)
    process.wait()
  wall_s = time.time() - start
  if process.returncode != 0:
    raise RuntimeError(f'[{label}] the pipeline failed (exit {process.returncode}); see '
                       f'{log_path} and {output_root}/last_run_summary.md')
  print(f'[{label}] {wall_s:.0f} s', flush=True)
  result = run_result.read(local_runner.metadata_config(output_root))
  return Run(label, result, wall_s, max(c.peak_memory_gib or 0 for c in result.components),
             load_before)


def gate_figures(run: Run, cohort: str) -> Dict[str, Optional[Estimate]]:
  """The Evaluator's AUC of the new model and its paired AUC change vs the served model."""
  cohort_feature = features.cohort_feature()
  slice_name = (evaluation_results.OVERALL if cohort == ALL
                else f'{cohort_feature.name}={cohort}')
  results = evaluation_results.Results(run.result.evaluation.uri)
  return {'gate_auc': results.new(slice_name, evaluation_results.AUC),
          'gate_gain': results.change(slice_name, evaluation_results.AUC)}


# ---------------------------------------------------------------- next month's rows

def read_month(data_root: str, span: int) -> pd.DataFrame:
  """A span's ads.csv with the oracle's probability (column ORACLE) joined by row id."""
  strings = {f.name: str for f in features.FEATURES if f.dtype == 'string'}
  frame = pd.read_csv(data_layout.ads_csv(data_root, span), dtype=strings,
                      keep_default_na=False)
  row_id = features.row_id_feature().name
  truth = pd.read_csv(data_layout.ground_truth_csv(data_root, span), dtype={row_id: str})
  frame[ORACLE] = frame[row_id].map(truth.set_index(row_id).squeeze('columns'))
  return frame


def serving_inputs(frame: pd.DataFrame, span_dir: str) -> Dict[str, np.ndarray]:
  """One array per serving feature; the image column holds the creative's bytes."""
  images = {}

  def image(path):
    if path not in images:  # each ad's creative is read once
      with open(os.path.join(span_dir, path), 'rb') as f:
        images[path] = f.read()
    return images[path]

  inputs = {}
  for feature in features.serving_features():
    if feature.role == features.IMAGE:
      inputs[feature.name] = np.array(
          [image(path) for path in frame[features.IMAGE_PATH_COLUMN]], dtype=object)
    else:
      inputs[feature.name] = frame[feature.name].to_numpy()
  return inputs


def predict(model_dir: str, inputs: Dict[str, np.ndarray]) -> np.ndarray:
  """Click probabilities from the SavedModel's serving_default signature, in batches."""
  model = tf.saved_model.load(model_dir)
  serve = model.signatures[signatures.SERVING_SIGNATURE]
  specs = serve.structured_input_signature[1]  # name -> TensorSpec
  rows = len(next(iter(inputs.values())))
  out = []
  for start in range(0, rows, BATCH):
    batch = {name: tf.constant(inputs[name][start:start + BATCH], dtype=spec.dtype)
             for name, spec in specs.items()}
    out.append(serve(**batch)[signatures.PREDICTION_KEY].numpy())
  return np.concatenate(out)


def new_ads(frame: pd.DataFrame, training: pd.DataFrame) -> Optional[np.ndarray]:
  """Whether each row's ad (cohort_key) is absent from the training rows; None without a key."""
  key = features.cohort_key_feature()
  if key is None:
    return None
  return ~frame[key.name].isin(set(training[key.name])).to_numpy()


# ---------------------------------------------------------------- peers and metrics

def cohort_masks(rows: int, is_new: Optional[np.ndarray]) -> Dict[str, np.ndarray]:
  """Row masks: all rows, and new and established ads when the log can tell them apart."""
  groups = {ALL: np.ones(rows, bool)}
  if is_new is not None:
    groups.update({features.COHORT_NEW: is_new, features.COHORT_ESTABLISHED: ~is_new})
  return {name: mask for name, mask in groups.items() if mask.any()}


def by_cohort(labels: np.ndarray, probabilities: np.ndarray,
              is_new: Optional[np.ndarray]) -> Dict[str, Dict[str, float]]:
  """figures() for each of cohort_masks()."""
  return {name: figures(labels[mask], probabilities[mask])
          for name, mask in cohort_masks(len(labels), is_new).items()}


# ---------------------------------------------------------------- tables

def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  return '\n'.join(['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] +
                   ['| ' + ' | '.join(row) + ' |' for row in rows])


def _cell(value, fmt='{:.4f}') -> str:
  if value is None or (isinstance(value, float) and np.isnan(value)):
    return '-'
  return value.words(signed=fmt.startswith('{:+')) if isinstance(value, Estimate) \
      else fmt.format(value)


def quality_table(rows: Sequence[Row]) -> str:
  header = ['rows/month', 'model', 'ads', 'gate AUC (eval split)', 'gate gain vs served',
            'next-month AUC', 'next-month AUC - oracle', 'next-month gain',
            'next-month log-loss', 'calibration', 'next-month rows (clicks)']
  lines = []
  for row in rows:
    month = row.next_month or {}
    lines.append([row.size, row.model, row.cohort, _cell(row.gate_auc),
                  _cell(row.gate_gain, '{:+.4f}'), _cell(month.get('auc')),
                  _cell(row.oracle_gap, '{:+.4f}'), _cell(row.next_gain, '{:+.4f}'),
                  _cell(month.get('logloss')),
                  _cell(month.get('calibration'), '{:.3f}'),
                  f"{month['rows']} ({month['clicks']})" if month else '-'])
  return markdown(header, lines)


def timing_table(runs: Sequence[Run]) -> str:
  total = collections.Counter()
  for run in runs:
    total.update(run.result.seconds)
  components = [name for name, _ in total.most_common()]  # the slowest first
  header = (['run', 'rows read'] + [f'{name} s' for name in components] +
            ['components s', 'whole run s', 'peak RSS GiB', 'pushed'])
  lines = []
  for run in runs:
    seconds = run.result.seconds
    lines.append([run.label, str(run.result.data.rows_accepted)] +
                 [_cell(seconds.get(name), '{:.0f}') for name in components] +
                 [f'{sum(seconds.values()):.0f}', f'{run.wall_s:.0f}',
                  f'{run.peak_rss_gib:.2f}', 'yes' if run.pushed() else 'no'])
  return markdown(header, lines)


# ---------------------------------------------------------------- the benchmark

def model_names(months: int):
  """The quality table's names of the month-N candidate and the served month-(N-1) model."""
  return f'model, month {months}', f'model, month {months - 1} (served)'


def bench_quality(out: str, rows: int, seed: int, months: int, candidate_only: bool = False,
                  tabular_variant: bool = True, settings: Sequence[str] = ()):
  """Three pipeline runs (one with candidate_only, two without the tabular variant) and
  next month's scores for one size; (table rows, runs). `settings`: --set for every run."""
  size = f'{rows}, seed {seed}'
  data_root = os.path.abspath(os.path.join(out, f'data-{rows}-seed{seed}'))
  generate(data_root, range(1, months + 2), rows, seed)
  root = os.path.abspath(os.path.join(out, f'run-{rows}-seed{seed}'))
  tabular_root = root + '-tabular'
  for path in (root, tabular_root):
    shutil.rmtree(path, ignore_errors=True)  # a served model from an earlier call must not gate
  model_n, model_served = model_names(months)
  served = tabular = None
  if not candidate_only:
    served = run_pipeline(f'{size}: model, month {months - 1}', data_root, root, months - 1,
                          *settings)
  new = run_pipeline(f'{size}: model, month {months}', data_root, root, months, *settings)
  if not candidate_only and tabular_variant:
    tabular = run_pipeline(f'{size}: tabular-only, month {months}', data_root, tabular_root,
                           months, *settings, TABULAR_ONLY)
  if served and served.pushed() and gate_figures(new, ALL)['gate_gain'] is None:
    print(f'[{size}] WARNING: the month-{months - 1} model was pushed, but the month-{months} '
          'run did not compare with it (no gate gain).', flush=True)
  gated = {name: run for name, run in ((model_n, new), (model_served, served),
                                       ('tabular-only model', tabular)) if run}
  table = next_month_rows(size, data_root, months, gated)
  return table, [run for run in (served, new, tabular) if run]


def next_month_rows(size: str, data_root: str, months: int,
                    gated: Dict[str, Run]) -> List[Row]:
  """The quality table's rows for one size: month N+1 scored by each run's model, the peers
  (trained on the rows the month-N candidate trained on) and the oracle."""
  model_n, model_served = model_names(months)
  new = gated[model_n]
  print(f'[{size}] scoring month {months + 1} and training the peers ...', flush=True)
  month = read_month(data_root, months + 1)
  labels = month[features.LABEL_KEY].to_numpy()
  training = read_examples(new.result.data.examples_uri,
                           (splits.TRAIN, splits.VALIDATION))
  is_new = new_ads(month, training)
  inputs = serving_inputs(month, data_layout.span_dir(data_root, months + 1))
  scores = {name: predict(run.model_dir(), inputs) for name, run in gated.items()}
  names = input_columns()
  fit_rows = (training.sample(PEER_ROWS, random_state=0) if len(training) > PEER_ROWS
              else training)
  for name, peer in peers().items():
    peer.fit(fit_rows[names], fit_rows[features.LABEL_KEY])
    scores[name] = peer.predict_proba(month[names])[:, 1]
  scores[ORACLE] = month[ORACLE].to_numpy()

  results = {name: by_cohort(labels, p, is_new) for name, p in scores.items()}
  key = features.cohort_key_feature()
  clusters = month[key.name].to_numpy() if key else np.arange(len(month))
  masks = cohort_masks(len(month), is_new)
  gate_oracle = summary.oracle(new.result, data_root) or {}
  table = []
  for name, by_name in results.items():
    for cohort, values in by_name.items():
      row = Row(size, name, cohort, next_month=values)
      if name in gated:
        row = dataclasses.replace(row, **gate_figures(gated[name], cohort))
      if name != ORACLE:
        mask = masks[cohort]
        row.oracle_gap = auc_interval.auc_gap(labels[mask], scores[name][mask],
                                              scores[ORACLE][mask], clusters[mask])
      if name == ORACLE:
        oracle = gate_oracle.get('' if cohort == ALL else cohort)
        row.gate_auc = Estimate(oracle[evaluation_results.AUC]) if oracle else None
      if name == model_n and model_served in results:
        row.next_gain = values['auc'] - results[model_served][cohort]['auc']
      table.append(row)
  return table


NOTES = """\
Gate figures: each run's Evaluator on its out-of-time eval split (the last {eval:.0%} of the
month it trained on: month {n} for the month-{n} and tabular-only models, month {p} for the
served one; for the oracle, the true probabilities on month {n}'s eval split), cohorts as
ExampleGen assigns them (new: the ad was first seen in the eval period). Gate gain: the
month-{n} candidate's AUC minus the served month-{p} model's, paired on the same rows, with
TFMA's 95 % interval. Next-month figures: month {m}, which no run has seen, scored through
each model's serving_default signature; next-month gain: AUC(month-{n} model) minus
AUC(month-{p} model) there. Next-month AUC - oracle: paired on the same rows, with a 95 %
interval that resamples ads ({resamples} Poisson bootstrap draws; rows of one ad are not
independent), so a target such as "oracle - 0.03" can be told apart from the month's noise.
New ads there: ads (the cohort_key field) absent from the rows the
month-{n} model trained on (its ExampleGen's train and validation splits). The tuned logistic
regression and the gradient-boosted tree (benchmarks/peers.py: the LR's C chosen on the
latest tenth of those rows by time) were trained on those same rows
(a uniform sample of {peer_rows:,} where there are more).
Calibration: mean prediction / mean label. Oracle: the
generator's true click probabilities."""


# ---------------------------------------------------------------- cost at scale (--scale)

def rows_read(run: Run) -> int:
  """Rows ExampleGen read: those it accepted and those it rejected."""
  return run.result.data.rows_read


def eval_rows(run: Run) -> int:
  """Rows of the eval split (what the Evaluator scores), as StatisticsGen counted them."""
  statistics = run.result.component('StatisticsGen').output('ExampleStatistics')
  return tfdv.load_stats_binary(os.path.join(
      statistics.uri, f'Split-{splits.EVAL}', data_gate.STATISTICS_FILE)).datasets[0].num_examples


def _bytes_cell(total: int, rows: int) -> str:
  per_row = total / rows
  return f'{per_row:,.0f}' if per_row >= 10 else f'{per_row:.2f}'


def scale_lines(run: Run, data_root: str) -> List[List[str]]:
  """The cost table's lines of one run: one per component in the order they ran, then the
  whole run. Per row read, except the Evaluator's figures, per eval row."""
  read, evaluated = rows_read(run), eval_rows(run)
  examples_uri = run.result.data.examples_uri
  data = component_io.window_bytes([data_layout.span_dir(data_root, span)
                                    for span in run.result.data.spans])
  size = f'{read:,}'
  lines, written = [], 0
  for component in run.result.components:
    per_eval_row = component.name == EVALUATOR
    rows = evaluated if per_eval_row else read
    seconds = component.seconds
    given = component_io.bytes_read(component)
    if examples_uri in {a.uri for a in component.outputs}:  # ExampleGen reads the data root
      given += data
    written += component_io.bytes_written(component)
    lines.append([size, component.name, f'{seconds:.0f}', f'{1000 * seconds / rows:.3f}',
                  f'{rows:,} ' + ('eval' if per_eval_row else 'read'),
                  _bytes_cell(component_io.bytes_written(component), rows),
                  _bytes_cell(given, rows), ''])
  lines.append([size, f'whole run (1-min load {run.load_before:.1f} before)',
                f'{run.wall_s:.0f}', f'{1000 * run.wall_s / read:.3f}', f'{read:,} read',
                _bytes_cell(written, read), _bytes_cell(data, read), f'{run.peak_rss_gib:.2f}'])
  return lines


SCALE_HEADER = ['rows read', 'component', 's', 'ms a row', 'rows (the "a row" of its line)',
                'B written a row', 'B given a row', 'peak RSS GiB']
SCALE_NOTES = """One pipeline run per size (local_runner.py in its own process, the default
config{settings}, a fresh output root, so nothing cached) on month {n} with the default window
of {window} months: a size of R rows read is R / {window} rows a month. s: the component's
wall time (MLMD). ms a
row and B a row: per row read, except the Evaluator's, per row of the eval split it scores
(StatisticsGen's count). B written: bytes on disk of the component's output artifacts; B given:
of its input artifacts, counting only the splits its properties name
(benchmarks/component_io.py), plus, for ExampleGen, the window's CSVs and creatives (DataGate
is given the Examples but opens only their rejected rows, and reads two months' CSVs, not
counted); a split read more than once (the Trainer's epochs) counts once. Whole run: the
process, imports included, its peak RSS, the bytes all components wrote and the data read.
{cores} cores; the 1-min load average just before each run says what else was running."""


def bench_scale(out: str, sizes: Sequence[int], seed: int, settings: Sequence[str] = (),
                heading: str = '') -> str:
  """One run per size of rows read; the cost table and next month's quality at each size (the
  candidate next to the peers and the oracle), as markdown under `heading`, also written to
  <out>/model_bench_scale.md after each size (a long series keeps what it measured)."""
  window = config_lib.PipelineConfig().window_spans
  lines, quality = [], []
  for size in sizes:
    per_month = -(-size // window)
    data_root = os.path.abspath(os.path.join(out, f'data-{per_month}-seed{seed}'))
    generate(data_root, range(1, window + 2), per_month, seed)  # month N+1 is scored
    root = os.path.abspath(os.path.join(out, f'scale-{size}-seed{seed}'))
    shutil.rmtree(root, ignore_errors=True)
    label = f'{size:,} rows read, seed {seed}'
    run = run_pipeline(label, data_root, root, window, *settings)
    lines += scale_lines(run, data_root)
    quality += next_month_rows(label, data_root, window, {model_names(window)[0]: run})
    parts = [heading, markdown(SCALE_HEADER, lines), '',
             SCALE_NOTES.format(settings=''.join(f', {s}' for s in settings), n=window,
                                window=window, cores=os.cpu_count()),
             '', quality_table(quality), '',
             NOTES.format(eval=config_lib.PipelineConfig().split.eval_fraction, n=window,
                          p=window - 1, m=window + 1, resamples=auc_interval.RESAMPLES,
                          peer_rows=PEER_ROWS)]
    text = '\n'.join(parts)
    with open(os.path.join(out, 'model_bench_scale.md'), 'w') as f:
      f.write(text + '\n')
  return text


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--rows', type=int, nargs='+', default=[20000, 100000],
                      help='rows a month')
  parser.add_argument('--seed', type=int, nargs='+', default=[7])
  parser.add_argument('--months', type=int, default=3,
                      help='N: the pipeline trains through month N; month N+1 is scored')
  parser.add_argument('--out', default=OUT)
  parser.add_argument('--candidate-only', action='store_true',
                      help='only the month-N run (no served model, no tabular-only variant): '
                           'next-month quality where three runs cost too much')
  parser.add_argument('--no-tabular', action='store_true',
                      help='skip the tabular-only variant\'s run (the served model and the '
                           'gain are still measured)')
  parser.add_argument('--timing-only', action='store_true',
                      help='one pipeline run on month N per size: wall times and memory only')
  parser.add_argument('--scale', action='store_true',
                      help='one run per --sizes rows read (the default window): cost per '
                           'component and row, bytes a row, peak RSS; next-month quality at '
                           'the largest; ignores --rows and --months, uses the first --seed')
  parser.add_argument('--sizes', type=int, nargs='+', default=list(SCALE_SIZES),
                      help='with --scale: rows read by one run')
  parser.add_argument('--set', dest='settings', action='append', default=[],
                      metavar='NAME=VALUE', help='passed to every pipeline run (repeatable)')
  args = parser.parse_args(argv)
  if args.months < (1 if args.timing_only else 2):
    parser.error('--months must be at least 2 (1 with --timing-only)')
  if args.scale:
    command = ' '.join(['python -m benchmarks.model_bench'] +
                       (sys.argv[1:] if argv is None else list(argv)))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    print(bench_scale(args.out, args.sizes, args.seed[0], args.settings,
                      heading=f'`{command}` (started {stamp}).\n'))
    return

  quality, runs = [], []
  for rows in args.rows:
    for seed in args.seed:
      if args.timing_only:
        data_root = os.path.abspath(os.path.join(args.out, f'data-{rows}-seed{seed}'))
        generate(data_root, range(1, args.months + 1), rows, seed)
        root = os.path.abspath(os.path.join(args.out, f'timing-{rows}-seed{seed}'))
        shutil.rmtree(root, ignore_errors=True)
        runs.append(run_pipeline(f'{rows}, seed {seed}: model, month {args.months}',
                                 data_root, root, args.months, *args.settings))
      else:
        table, size_runs = bench_quality(args.out, rows, seed, args.months,
                                         args.candidate_only, not args.no_tabular,
                                         args.settings)
        quality += table
        runs += size_runs

  parts = []
  if quality:
    n = args.months
    parts += [quality_table(quality), '',
              NOTES.format(eval=config_lib.PipelineConfig().split.eval_fraction,
                           n=n, p=n - 1, m=n + 1, resamples=auc_interval.RESAMPLES,
                           peer_rows=PEER_ROWS), '']
  window = config_lib.PipelineConfig().window_spans
  parts += [timing_table(runs), '',
            f'Wall time per component from MLMD (the default config: a window of {window} '
            'months, so "rows read" covers the months of the window); whole run: the '
            'local_runner.py process, imports included; peak RSS: that process. This process '
            f'(scoring, peers) peaked at '
            f'{memory.peak_rss_gib():.2f} GiB.']
  text = '\n'.join(parts)
  print(text)
  name = 'model_bench_timing.md' if args.timing_only else 'model_bench.md'
  with open(os.path.join(args.out, name), 'w') as f:
    f.write(text + '\n')


if __name__ == '__main__':
  main()
