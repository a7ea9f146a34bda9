"""Real logs: does the model earn its place against plain peers on real CTR data (issue 22)?

    make bench    # or: python -m benchmarks.real_logs [--logs criteo,avazu,talkingdata]
                  #                                   [--out FILE] [--work DIR]

For each real log in ../shared/data (criteo-sample, avazu-sample, talkingdata-sample):
1. converts it (examples/<log>/convert.py) into a data root of spans and a held-out file that
   no run sees: Criteo's last third (no time), a seeded random third of the one-hour Avazu
   sample, TalkingData's last day (out of time by day);
2. copies the repository with examples/<log>/features.py swapped into models/features.py
   (examples/swap.py) and runs `python -m schema.generate` there, as a user adopting the
   pipeline would;
3. runs `local_runner.py --data-root ... --output-root ...` in the copy with the product's
   defaults (its console output in <work>/<log>/run.log);
4. in the copy (so that features.py is the log's), scores the held-out rows, read and refused
   by the pipeline's row rules (models/rows.py) as batch scoring reads them, with the run's
   model (the pushed one; the candidate where the gate refused it, which the table says) and
   its challenger (<model artifact>/Challenger-Serving, models/challenger.py) through their
   serving_examples signature, and with the peers of benchmarks/peers.py (a tuned LR and a
   GBDT) fitted on the rows the run was given (every accepted row of its spans), and the
   base rate (the training rows' label rate, a constant);
5. prints one table, also written to --out as markdown: per log and scorer the held-out AUC
   with its 95 % interval, log-loss and calibration (evaluation_results: mean prediction /
   label rate), the paired 95 % interval of AUC minus the best peer (the better of the tuned
   LR and the GBDT by held-out AUC; intervals resample rows: these logs have no ad key), and
   for the model whether issue 22's criteria hold.
"""
import argparse
import dataclasses
import datetime
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

import numpy as np

from benchmarks import peers as peers_lib
from components import evaluation_results
from components.evaluation_results import Estimate
from examples import layout
from examples import swap

LOGS = ('criteo', 'avazu', 'talkingdata')
WORK = os.path.join('bench_out', 'real_logs')
MODEL = 'model'
CHALLENGER = 'challenger (pipeline LR)'
BASE_RATE = 'base rate'
PEERS = (peers_lib.LOGISTIC, peers_lib.GBDT)
SCORES_FILE = 'heldout_scores.npz'  # labels and each scorer's probabilities, from the copy
META_FILE = 'heldout_run.json'  # what the run did: pushed, the gate's reasons, ...
LABELS = 'labels'
# Issue 22's criteria for the model on each log.
CALIBRATION_TOLERANCE = 0.1  # calibration within 1 +- this


# ------------------------------------------------------------------ in the copy (the log's fields)

def score_heldout(heldout: str, output_root: str, out_dir: str) -> None:
  """Step 4, run inside the copy: SCORES_FILE and META_FILE under out_dir."""
  from tfx.utils import path_utils  # pylint: disable=import-outside-toplevel
  import local_runner  # pylint: disable=import-outside-toplevel
  from models import challenger  # pylint: disable=import-outside-toplevel
  from models import features  # pylint: disable=import-outside-toplevel
  from monitoring import quality  # pylint: disable=import-outside-toplevel
  from pipeline import run_result  # pylint: disable=import-outside-toplevel
  from components.image_csv_example_gen import splits  # pylint: disable=import-outside-toplevel
  result = run_result.read(local_runner.metadata_config(output_root))
  if result.training is None:
    raise RuntimeError(f'the run under {output_root} trained no model (failed: '
                       f'{result.failed}); see its run.log')
  model_uri = result.training.model_uri
  # The peers learn from the rows the model learnt from: the run's train split, and its
  # validation split (the model's early stopping and calibration; the LR's choice of C).
  training = peers_lib.read_examples(result.data.examples_uri,
                                     (splits.TRAIN, splits.VALIDATION))
  serialized, labels, heldout_refused = quality.accepted_examples(heldout)
  rows = peers_lib.examples_frame(serialized)
  scores = {MODEL: quality.score(path_utils.serving_model_path(model_uri), serialized)}
  if os.path.isdir(challenger.challenger_dir(model_uri)):
    scores[CHALLENGER] = quality.score(challenger.challenger_dir(model_uri), serialized)
  fitted_c = None
  for name, peer in peers_lib.peers().items():
    started = time.time()
    peer.fit(training, training[features.LABEL_KEY])
    scores[name] = peer.predict_proba(rows)[:, 1]
    print(f'{name}: fitted in {time.time() - started:.0f} s', flush=True)
    fitted_c = getattr(peer, 'c', fitted_c)
  scores[BASE_RATE] = np.full(len(rows), training[features.LABEL_KEY].mean())
  np.savez(os.path.join(out_dir, SCORES_FILE), **{LABELS: labels}, **scores)
  evaluation = result.evaluation
  meta = {
      'pushed': bool(result.push and result.push.pushed),
      'reasons': evaluation.reasons if evaluation else [],
      'eval_split_auc': (evaluation.new or {}).get(evaluation_results.AUC) if evaluation
                        else None,
      'challenger_margin': (evaluation.challenger.margin_words()
                            if evaluation and evaluation.challenger else None),
      'split_kind': result.data.split_kind, 'spans': result.data.spans,
      'training_rows': len(training),
      'heldout_refused': heldout_refused, 'lr_c': fitted_c}
  with open(os.path.join(out_dir, META_FILE), 'w') as f:
    json.dump(meta, f, indent=2)


# ------------------------------------------------------------------ figures and verdicts

@dataclasses.dataclass
class Scorer:
  name: str
  auc: Estimate
  logloss: float
  calibration: float
  gap: Optional[Estimate] = None  # AUC minus the best peer's, paired, 95 %


def auc_estimate(labels: np.ndarray, scores: np.ndarray) -> Estimate:
  """AUC with a 95 % interval over resampled rows: the paired interval of its change from a
  constant scorer (whose AUC is 0.5 on every resample), shifted back by 0.5."""
  gap = evaluation_results.auc_gap(labels, scores, np.zeros(len(labels)),
                                   np.arange(len(labels)))
  return Estimate(gap.value + 0.5, gap.lower + 0.5, gap.upper + 0.5)


def best_peer(scorers: Dict[str, Scorer]) -> str:
  """The peer (tuned LR or GBDT) with the higher held-out AUC."""
  return max(PEERS, key=lambda name: scorers[name].auc.value)


def measure(labels: np.ndarray, scores: Dict[str, np.ndarray]) -> Dict[str, Scorer]:
  """Each scorer's figures; the model's and the challenger's paired gap to the best peer."""
  rows = np.arange(len(labels))
  scorers = {}
  for name, probabilities in scores.items():
    values = peers_lib.figures(labels, probabilities)
    scorers[name] = Scorer(name, auc_estimate(labels, probabilities), values['logloss'],
                           values['calibration'])
  best = best_peer(scorers)
  for name in (MODEL, CHALLENGER):
    if name in scorers:
      scorers[name].gap = evaluation_results.auc_gap(labels, scores[name], scores[best], rows)
  return scorers


def verdict(model: Scorer, logistic: Scorer) -> List[str]:
  """Issue 22's criteria the model misses on a log ([] when all hold): the paired interval
  of AUC minus the best peer reaches 0 or above; log-loss at most the tuned LR's;
  calibration within 1 +- CALIBRATION_TOLERANCE."""
  missed = []
  if model.gap.upper < 0:
    missed.append(f'AUC below the best peer ({model.gap.words(signed=True)})')
  if model.logloss > logistic.logloss:
    missed.append(f'log-loss {model.logloss:.4f} > LR {logistic.logloss:.4f}')
  if not 1 - CALIBRATION_TOLERANCE <= model.calibration <= 1 + CALIBRATION_TOLERANCE:
    missed.append(f'calibration {model.calibration:.3f} outside 1 +- '
                  f'{CALIBRATION_TOLERANCE}')
  return missed


# ------------------------------------------------------------------ the table

HEADER = ('log (held-out rows, clicks)', 'scorer', 'held-out AUC [95 %]', 'log-loss',
          'calibration', 'AUC - best peer [95 %, paired]', 'issue 22 criteria')


def table_lines(log: str, labels: np.ndarray, scorers: Dict[str, Scorer],
                meta: dict) -> List[List[str]]:
  best = best_peer(scorers)
  missed = verdict(scorers[MODEL], scorers[peers_lib.LOGISTIC])
  where = f'{log} ({len(labels):,}, {int(labels.sum()):,})'
  notes = {name: [] for name in scorers}
  notes[peers_lib.LOGISTIC].append(f"tuned: C = {meta['lr_c']}")
  notes[best].append('best peer')
  if not meta['pushed']:
    notes[MODEL].append('NOT pushed: the gate refused it; the candidate')
  lines = []
  for name, scorer in scorers.items():
    named = f"{name} ({', '.join(notes[name])})" if notes[name] else name
    lines.append([where, named, scorer.auc.words(), f'{scorer.logloss:.4f}',
                  f'{scorer.calibration:.3f}',
                  scorer.gap.words(signed=True) if scorer.gap else '',
                  ('met' if not missed else 'NOT met: ' + '; '.join(missed))
                  if name == MODEL else ''])
  return lines


def markdown(lines: Sequence[Sequence[str]]) -> str:
  return '\n'.join(['| ' + ' | '.join(HEADER) + ' |', '|' + '---|' * len(HEADER)] +
                   ['| ' + ' | '.join(line) + ' |' for line in lines])


# ------------------------------------------------------------------ one log, end to end

def _in_copy(repo: str, *argv: str, log_path: Optional[str] = None) -> None:
  env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL='1')
  with open(log_path or os.devnull, 'a') as log:
    done = subprocess.run([sys.executable, *argv], cwd=repo, env=env, stdout=log,
                          stderr=subprocess.STDOUT)
  if done.returncode:
    raise RuntimeError(f'{" ".join(argv)} failed in {repo} (exit {done.returncode}); '
                       f'see {log_path}')


def run_log(log: str, work: str, settings: Sequence[str] = ()) -> dict:
  """Steps 1-4 for one log under <work>/<log>; its labels, scores and meta."""
  root = os.path.abspath(os.path.join(work, log))
  shutil.rmtree(root, ignore_errors=True)  # a rerun starts afresh: no served model, no cache
  converter = importlib.import_module(f'examples.{log}.convert')
  converted = converter.convert(os.path.join(layout.SHARED_DATA, f'{log}-sample'), root)
  repo = os.path.join(root, 'repo')
  swap.copy_with_fields(repo, os.path.join(swap.REPO, 'examples', log, 'features.py'))
  log_path = os.path.join(root, 'run.log')
  _in_copy(repo, '-m', 'schema.generate', log_path=log_path)
  output_root = os.path.join(root, 'outputs')
  print(f'[{log}] running the pipeline (log: {log_path}) ...', flush=True)
  started = time.time()
  try:
    _in_copy(repo, 'local_runner.py', '--data-root', converted.data_root,
             '--output-root', output_root,
             *[arg for setting in settings for arg in ('--set', setting)], log_path=log_path)
  except RuntimeError as e:  # a run the gate refused still trained a model to score
    print(f'[{log}] {e}', flush=True)
  seconds = time.time() - started
  print(f'[{log}] pipeline {seconds:.0f} s; scoring the held-out rows and fitting the '
        'peers ...', flush=True)
  _in_copy(repo, '-m', 'benchmarks.real_logs', '--score', converted.heldout, output_root, root,
           log_path=log_path)
  with np.load(os.path.join(root, SCORES_FILE)) as saved:
    scores = {name: saved[name] for name in saved.files}
  with open(os.path.join(root, META_FILE)) as f:
    meta = json.load(f)
  meta['pipeline_seconds'] = seconds
  return {'labels': scores.pop(LABELS), 'scores': scores, 'meta': meta}


def revision() -> str:
  """The checkout the copies were made from (git describe; -dirty: with uncommitted edits)."""
  return subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=swap.REPO,
                        capture_output=True, text=True).stdout.strip()


def notes(metas: Dict[str, dict], command: str, stamp: str, seconds: float) -> str:
  lines = [f'`{command}` ({stamp}, at {revision()}; {seconds / 60:.0f} min on '
           f'{os.cpu_count()} cores).', '']
  for log, meta in metas.items():
    lines.append(
        f"- {log}: spans {meta['spans']} ({meta['training_rows']:,} rows in the train and "
        f"validation splits; {meta['heldout_refused']} held-out rows refused), "
        f"{meta['split_kind']} eval split; pipeline {meta['pipeline_seconds']:.0f} s; "
        f"the run's own eval-split AUC {meta['eval_split_auc'] or float('nan'):.4f}, margin "
        f"over its challenger {meta['challenger_margin']}; "
        + ('pushed.' if meta['pushed'] else f"NOT pushed: {'; '.join(meta['reasons'])}."))
  lines += ['', 'Peers (benchmarks/peers.py) fitted on the rows the model learnt from (the '
            "run's train and validation splits); base rate: their label rate. Calibration: "
            'mean prediction / label rate. Intervals: 400 paired bootstrap resamples of rows '
            '(components/evaluation_results.py).']
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--logs', default=','.join(LOGS),
                      help=f'comma-separated, of {", ".join(LOGS)}')
  parser.add_argument('--out', help='also write the markdown table and notes here')
  parser.add_argument('--work', default=WORK, help='where each log is converted and run')
  parser.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                      help="passed to every run's local_runner.py (pipeline/options.py), e.g. "
                           'hparams.wide=true; the product\'s defaults without it')
  parser.add_argument('--score', nargs=3, metavar=('HELDOUT', 'OUTPUT_ROOT', 'DIR'),
                      help=argparse.SUPPRESS)  # step 4, inside a log's copy
  args = parser.parse_args(argv)
  if args.score:
    score_heldout(*args.score)
    return
  logs = [log for log in args.logs.split(',') if log]
  unknown = sorted(set(logs) - set(LOGS))
  if unknown:
    parser.error(f'unknown logs {unknown}; known: {", ".join(LOGS)}')
  command = ' '.join(['python -m benchmarks.real_logs'] +
                     (sys.argv[1:] if argv is None else list(argv)))
  stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
  started = time.time()
  lines, metas = [], {}
  for log in logs:
    try:
      done = run_log(log, args.work, args.set)
    except RuntimeError as e:  # the other logs' figures still count
      lines.append([log, f'FAILED: {e}'] + [''] * (len(HEADER) - 2))
      continue
    metas[log] = done['meta']
    lines += table_lines(log, done['labels'], measure(done['labels'], done['scores']),
                         done['meta'])
  text = markdown(lines) + '\n\n' + notes(metas, command, stamp, time.time() - started)
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  main()
