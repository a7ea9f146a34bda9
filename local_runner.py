"""Runs the pipeline on this machine: local files, SQLite MLMD, Beam DirectRunner.

    python local_runner.py [--data-root data] [--output-root outputs] [--verbose] [--span N]
                           [--window-spans K] [--tune] [--set NAME=VALUE ...] [--config F]
                           [--beam-workers N]
Prints a line when each component ends (with its key figure), then the run
summary; everything TFX, Beam and TensorFlow print goes to <output-root>/logs/run-<time>.log
(--verbose shows it on the console instead). --beam-workers N runs every Beam step in N
worker processes, as Dataflow runs it (pipeline/options.py). A repeated run over unchanged inputs reuses the
components that finished (TFX caching, see pipeline/cache_keys.py); the served model is
re-read every run.

Pipeline artifacts and metadata go to <output-root>/pipeline and <output-root>/metadata.db,
pushed models to <output-root>/serving/<model_name>/<version>/ (the newest complete version
there is also the baseline the new model must beat), and the run summary, with the
Evaluator's report, is printed and saved as <output-root>/last_run_summary.md.
"""
import sys

from pipeline import console

if __name__ == '__main__':
  console.hold_output()  # TensorFlow, Beam and TFX print while they load: that is for the log

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import dataclasses
import datetime
import os
import traceback
from typing import Optional, Sequence

from tfx import v1 as tfx

from pipeline import cache_keys
from pipeline import config as config_lib
from pipeline import options
from pipeline import progress
from pipeline import run_result
from pipeline import summary
from pipeline.pipeline import create_pipeline
# pylint: enable=g-import-not-at-top,wrong-import-position


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data-root', default='data')
  parser.add_argument('--output-root', default='outputs')
  parser.add_argument('--verbose', action='store_true',
                      help='show the TFX, Beam and TensorFlow output on the console '
                      'instead of writing it to the run\'s log')
  options.add_run_options(parser)
  options.add_beam_workers_option(parser)
  return parser.parse_args(argv)


def tuned_hparams_uri(output_root: str) -> str:
  """Where a --tune run keeps the best hyperparameters for later runs."""
  return os.path.join(os.path.abspath(output_root), 'tuned_hparams.json')


def metadata_config(output_root: str):
  return tfx.orchestration.metadata.sqlite_metadata_connection_config(
      os.path.join(output_root, 'metadata.db'))


def _summary(metadata, data_root: str, error: Optional[BaseException]) -> str:
  """The run summary; if building it fails, says so (the traceback goes to the log)."""
  try:
    return summary.summarize(run_result.read(metadata), data_root, error, metadata)
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()  # to the log
    lines = ['', 'The run summary could not be built:'] + [
        f'  {line}' for line in progress.error_paragraph(e)]
    if error is not None:
      lines += ['The run STOPPED:'] + [f'  {line}' for line in progress.error_paragraph(error)]
    return '\n'.join(lines)


def run(data_root: str, output_root: str, config: config_lib.PipelineConfig,
        verbose: bool = False, preamble: bytes = b'',
        beam_pipeline_args: Sequence[str] = (), ends_process: bool = False) -> bool:
  """Runs the pipeline once, prints and saves the summary; True if it completed.

  Without `verbose`, what TFX, Beam and TensorFlow print goes to the run's log (after
  `preamble`, what they printed while loading), and the console gets the component lines;
  with `ends_process` (main) also what they print while the process shuts down.
  """
  data_root, output_root = os.path.abspath(data_root), os.path.abspath(output_root)
  metadata = metadata_config(output_root)
  started = datetime.datetime.now()
  log = None if verbose else console.log_path(output_root, started)
  error = None
  with console.to_log(log, preamble) as screen:
    watcher = progress.Progress(screen, metadata, config.pipeline_name)
    watcher.line(f'Run of {data_root}' + (f'; the full log is {log}' if log else ''))
    try:
      with progress.watching(watcher):
        fingerprints = cache_keys.compute(data_root, config_lib.SCHEMA_FILE,
                                          config.tuned_hparams_uri)
        tfx.orchestration.LocalDagRunner().run(create_pipeline(
            pipeline_root=os.path.join(output_root, 'pipeline'), data_root=data_root,
            serving_root=os.path.join(output_root, 'serving'), config=config,
            metadata_connection_config=metadata, fingerprints=fingerprints,
            beam_pipeline_args=list(beam_pipeline_args)))
    except BaseException as e:  # pylint: disable=broad-except
      traceback.print_exc()  # to the log
      watcher.failed(e, log)
      if not isinstance(e, Exception):
        raise  # Ctrl-C: stop here (main exits quietly)
      error = e  # the summary reports it with the run's other results
    text = _summary(metadata, data_root, error)
  print(text)
  if log:
    print(f'\nFull log of this run: {log}')
  with open(os.path.join(output_root, 'last_run_summary.md'), 'w') as f:
    f.write(text + '\n')
  if log and ends_process:
    console.stderr_to_log(log)
  return error is None


def main(argv=None):
  preamble = console.release_held()
  args = parse_args(argv)
  config = options.config_from_args(args)
  if config.tuned_hparams_uri is None:
    config = dataclasses.replace(config, tuned_hparams_uri=tuned_hparams_uri(args.output_root))
  try:
    ok = run(args.data_root, args.output_root, config, args.verbose, preamble,
             options.beam_workers_args(args.beam_workers), ends_process=True)
  except KeyboardInterrupt:
    sys.exit(130)  # the component lines said where; the traceback is in the log
  sys.exit(0 if ok else 1)


if __name__ == '__main__':
  main()
