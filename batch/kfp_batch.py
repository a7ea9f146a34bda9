"""Batch scoring as its own Kubeflow pipeline: one task, retried, run monthly.

    python -m batch.kfp_batch [--gcs-root gs://BUCKET/adclick] [--image IMAGE]
        [--output outputs/kfp/adclick_batch_score.yaml] [--retries 3]
        [--dataflow --project P --region R] [--set dataflow.NAME=V] [--set resources.NAME=V]
        [--schedule --host https://KFP_ENDPOINT [--experiment adclick] [--cron '0 0 0 2 * *']]

Compiles a KFP pipeline spec (YAML) whose single task runs, in the training pipeline's image,
    python -m batch.score --data-root <gcs-root>/data --output <gcs-root>/scores
        --model-base-path <gcs-root>/serving/<model_name> <Beam flags>
i.e. scores the latest month with the served model into <gcs-root>/scores/span-<N>/ (a rerun
replaces that output). The roots, the image, the Beam flags (DirectRunner with one worker
per requested CPU, or Dataflow with --dataflow and the config's `dataflow` workers) and the
schedule flags are kubeflow_runner.py's (pipeline/kfp_options.py), and the pod is sized like its
Beam tasks (the config's `resources`, pipeline/resources.py); `--set`/`--config` set both.
The task is retried on failure with exponential backoff, never served from KFP's cache (the
same arguments score a new month each time), and needs no Resolver.

--schedule uploads the spec and keeps exactly one recurring run of it, as the training
schedule does (pipeline/kfp_schedule.py); by default on the 2nd of each month at 00:00, a day
after the training run, so the month is scored with the model that run pushed.
"""
import argparse
import os

import kfp
from kfp import compiler
from kfp import dsl

from models import serving_layout
from pipeline import kfp_options
from pipeline import kfp_schedule
from pipeline import options
from pipeline.config import PipelineConfig

PIPELINE_NAME = 'adclick-batch-score'
TASK_NAME = 'batch-score'
# Six fields, seconds first (pipeline/kfp_schedule.py): 00:00:00 on the 2nd of each month.
BATCH_CRON = '0 0 0 2 * *'
RETRIES = 3
BACKOFF = '300s'  # first retry after 5 minutes, then 10, 20 (backoff factor 2)
BACKOFF_FACTOR = 2.0
BACKOFF_MAX = '3600s'  # KFP's ceiling
DEFAULT_OUTPUT = os.path.join('outputs', 'kfp', f'{PIPELINE_NAME}.yaml')


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  kfp_options.add_kfp_flags(parser, output=DEFAULT_OUTPUT, experiment=serving_layout.MODEL_NAME,
                            roots=('data', 'scores', 'serving'), cron=BATCH_CRON)
  parser.add_argument('--model-name', default=serving_layout.MODEL_NAME)
  parser.add_argument('--retries', type=int, default=RETRIES)
  options.add_config_options(parser)
  return kfp_options.finish_kfp_args(parser, parser.parse_args(argv))


def score_command(args, config: PipelineConfig):
  """The task's command line: batch.score on the latest span, with the Beam flags."""
  beam_args = kfp_options.beam_pipeline_args(args, config.dataflow)
  if not args.dataflow:
    beam_args.append(f'--direct_num_workers={config.resources.beam_workers()}')
  return ['python', '-m', 'batch.score', '--data-root', args.data_root,
          '--output', args.scores_root, '--model-base-path',
          serving_layout.model_root(args.serving_root, args.model_name)] + beam_args


def compile_pipeline(args, config: PipelineConfig = PipelineConfig()) -> str:
  """Writes the batch scoring pipeline spec; returns its path."""
  command = score_command(args, config)
  size = config.resources.pod('beam')

  @dsl.container_component
  def batch_score():
    return dsl.ContainerSpec(image=args.image, command=command)

  @dsl.pipeline(name=PIPELINE_NAME, description='Scores the latest month of ads.')
  def batch_pipeline():
    task = batch_score().set_display_name(TASK_NAME)
    task.set_retry(num_retries=args.retries, backoff_duration=BACKOFF,
                   backoff_factor=BACKOFF_FACTOR, backoff_max_duration=BACKOFF_MAX)
    task.set_caching_options(False)  # each month must really run
    task.set_cpu_request(f'{size.cpu_request:g}').set_cpu_limit(f'{size.cpu_limit:g}')
    task.set_memory_request(f'{size.memory_request_gib:g}Gi')
    task.set_memory_limit(f'{size.memory_limit_gib:g}Gi')

  path = os.path.abspath(args.output)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  compiler.Compiler().compile(batch_pipeline, path)
  return path


def main(argv=None):
  args = parse_args(argv)
  path = compile_pipeline(args, options.config_from_args(args))
  print(path)
  if args.schedule:
    schedule = kfp_schedule.schedule(
        kfp.Client(host=args.host), path, pipeline_name=PIPELINE_NAME,
        experiment_name=args.experiment, recurring_run_name=f'{PIPELINE_NAME}-monthly',
        cron=args.cron)
    print(f"{'Created' if schedule.created else 'Kept'} the monthly recurring run "
          f'{schedule.recurring_run_id} ({args.cron}) for pipeline version '
          f'{schedule.version_name}.')


if __name__ == '__main__':
  main()
