"""Runs the pipeline on this machine: local files, SQLite MLMD, Beam DirectRunner.

    python local_runner.py [--data-root data] [--output-root outputs] [--span N]
                           [--window-spans K] [--tune] [--set NAME=VALUE ...] [--config F]
Pipeline artifacts and metadata go to <output-root>/pipeline and <output-root>/metadata.db,
pushed models to <output-root>/serving/<model_name>/<version>/ (the newest complete version
there is also the baseline the new model must beat), and the run summary, with the
Evaluator's report, is printed and saved as <output-root>/last_run_summary.md.
"""
import argparse
import dataclasses
import os
import sys

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from absl import logging
from tfx import v1 as tfx

from pipeline import config as config_lib
from pipeline import options
from pipeline import summary
from pipeline.pipeline import create_pipeline


def parse_args(argv):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--data-root', default='data')
  parser.add_argument('--output-root', default='outputs')
  options.add_run_options(parser)
  return parser.parse_args(argv)


def tuned_hparams_uri(output_root: str) -> str:
  """Where a --tune run keeps the best hyperparameters for later runs."""
  return os.path.join(os.path.abspath(output_root), 'tuned_hparams.json')


def metadata_config(output_root: str):
  return tfx.orchestration.metadata.sqlite_metadata_connection_config(
      os.path.join(output_root, 'metadata.db'))


def run(data_root: str, output_root: str, config: config_lib.PipelineConfig) -> bool:
  """Runs the pipeline once, prints and saves the summary; True if it completed."""
  data_root, output_root = os.path.abspath(data_root), os.path.abspath(output_root)
  metadata = metadata_config(output_root)
  error = None
  try:
    tfx.orchestration.LocalDagRunner().run(create_pipeline(
        pipeline_root=os.path.join(output_root, 'pipeline'), data_root=data_root,
        serving_root=os.path.join(output_root, 'serving'), config=config,
        metadata_connection_config=metadata))
  except Exception as e:  # pylint: disable=broad-except
    error = e  # reported in the summary in plain words, with the run's other results
  text = summary.summarize(summary.run_artifacts(metadata), data_root, error)
  print(text)
  with open(os.path.join(output_root, 'last_run_summary.md'), 'w') as f:
    f.write(text + '\n')
  return error is None


def main(argv=None):
  args = parse_args(argv)
  logging.set_verbosity(logging.INFO)
  config = options.config_from_args(args)
  if config.tuned_hparams_uri is None:
    config = dataclasses.replace(config, tuned_hparams_uri=tuned_hparams_uri(args.output_root))
  sys.exit(0 if run(args.data_root, args.output_root, config) else 1)


if __name__ == '__main__':
  main()
