"""Compiles the monitoring check for Kubeflow Pipelines; with --schedule, runs it daily.

    python -m monitoring.kfp_monitor [--gcs-root gs://BUCKET/adclick] [--image IMAGE]
        [--metadata-grpc metadata-grpc-service.kubeflow:8080]
        [--output outputs/kfp/adclick_monitor.yaml]
        [--schedule --host https://KFP_ENDPOINT [--experiment adclick] [--cron '0 0 6 * * *']]

One step runs `python -m monitoring.check` in the pipeline image (the Dockerfile's working
directory holds the repository) on the roots of kubeflow_runner.py: output root <gcs-root>
(history and report under <gcs-root>/monitoring), capture under <gcs-root>/capture, labelled
months under <gcs-root>/data, the served model under <gcs-root>/serving, and the cluster's MLMD
(what the pipeline's runs recorded). A broken threshold makes the step exit 1, so the run
fails and KFP's alerting sees it. --schedule makes sure exactly one recurring run starts it,
daily at 06:00:00 by default, without catch-up and never two at once; running it again
changes nothing unless the spec changed (pipeline/kfp_schedule.py).
"""
import argparse
import os

from kfp import compiler
from kfp import dsl

from models import serving_layout
from pipeline import kfp_options

PIPELINE_NAME = 'adclick-monitor'
# The KFP backend parses cron with six fields, seconds first: 06:00:00 every day.
DAILY_CRON = '0 0 6 * * *'
DEFAULT_METADATA_GRPC = 'metadata-grpc-service.kubeflow:8080'
DEFAULT_OUTPUT = os.path.join('outputs', 'kfp', 'adclick_monitor.yaml')


def check_args(gcs_root: str, metadata_grpc: str) -> list:
  root = gcs_root.rstrip('/')
  return ['--output-root', root, '--capture-root', f'{root}/capture',
          '--data-root', kfp_options.gcs_path(root, 'data'),
          '--serving-root', kfp_options.gcs_path(root, 'serving'),
          '--metadata-grpc', metadata_grpc]


def build(image: str, gcs_root: str, metadata_grpc: str = DEFAULT_METADATA_GRPC):
  """The monitoring pipeline: one container step running the check."""

  @dsl.container_component
  def monitoring_check():
    return dsl.ContainerSpec(image=image, command=['python', '-m', 'monitoring.check'],
                             args=check_args(gcs_root, metadata_grpc))

  @dsl.pipeline(name=PIPELINE_NAME,
                description='Skew, drift and decay of the served adclick model')
  def monitor():
    monitoring_check().set_caching_options(False)  # every day is a new check

  return monitor


def compile_spec(output: str, image: str, gcs_root: str,
                 metadata_grpc: str = DEFAULT_METADATA_GRPC) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  compiler.Compiler().compile(build(image, gcs_root, metadata_grpc), output)
  return output


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  kfp_options.add_kfp_flags(parser, output=DEFAULT_OUTPUT, experiment=serving_layout.MODEL_NAME,
                            dataflow=False, cron=DAILY_CRON)
  parser.add_argument('--metadata-grpc', default=DEFAULT_METADATA_GRPC)
  return kfp_options.finish_kfp_args(parser, parser.parse_args(argv))


def main(argv=None):
  args = parse_args(argv)
  path = compile_spec(args.output, args.image, args.gcs_root, args.metadata_grpc)
  print(f'Wrote {path}')
  if args.schedule:
    import kfp  # pylint: disable=import-outside-toplevel
    from pipeline import kfp_schedule  # pylint: disable=import-outside-toplevel
    schedule = kfp_schedule.schedule(
        kfp.Client(host=args.host), path, PIPELINE_NAME, args.experiment,
        f'{PIPELINE_NAME}-daily', cron=args.cron)
    print(f"Recurring run {schedule.recurring_run_id} ({args.cron}): "
          f"{'created' if schedule.created else 'unchanged'}, version {schedule.version_name}")


if __name__ == '__main__':
  main()
