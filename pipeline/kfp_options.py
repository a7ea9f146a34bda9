"""The command-line flags every KFP spec compiler takes, and the Beam flags they lead to.

Used by kubeflow_runner.py (training), batch/kfp_batch.py (batch scoring) and
monitoring/kfp_monitor.py (the monitoring check), so the three agree on the image, the GCS
layout, Dataflow and the schedule:

    --gcs-root gs://BUCKET/adclick   the roots below it, each settable on its own (--data-root ...)
    --image IMAGE  --output SPEC.yaml
    [--dataflow --project P --region R]   Dataflow's sizes, network and service account: the
                                          config's `dataflow` (pipeline/resources.py)
    [--schedule --host https://KFP_ENDPOINT [--experiment NAME] [--cron '...']]
Plain Python (no TensorFlow), so that a compiler that needs no model loads fast.
"""
import argparse
from typing import Iterable, List, Optional

from pipeline.resources import DataflowConfig

DEFAULT_IMAGE = 'adclick-pipeline:latest'
DEFAULT_GCS_ROOT = 'gs://adclick-pipelines'
# Where each root lies below --gcs-root unless its own flag (--<name>-root) sets it.
ROOTS = {'pipeline': 'pipeline-root', 'data': 'data', 'serving': 'serving', 'scores': 'scores'}


def add_kfp_flags(parser: argparse.ArgumentParser, *, output: str, experiment: str,
                  roots: Iterable[str] = (), dataflow: bool = True,
                  cron: Optional[str] = None) -> None:
  """Adds the flags; `roots` names the keys of ROOTS the compiler has a flag for, `cron` the
  default of a --cron flag (none: the compiler's schedule is fixed)."""
  parser.add_argument('--gcs-root', default=DEFAULT_GCS_ROOT)
  for name in roots:
    parser.add_argument(f'--{name}-root', help=f'default: <gcs-root>/{ROOTS[name]}')
  parser.add_argument('--image', default=DEFAULT_IMAGE, help='the pipeline image')
  parser.add_argument('--output', default=output, help='the spec to write (.yaml)')
  if dataflow:
    parser.add_argument('--dataflow', action='store_true', help='run Beam steps on Dataflow')
    parser.add_argument('--project', help='GCP project (Dataflow, Vertex AI)')
    parser.add_argument('--region', default='us-central1', help='GCP region (Dataflow, Vertex AI)')
  parser.add_argument('--schedule', action='store_true',
                      help='upload the spec and create the recurring run')
  parser.add_argument('--host', help='KFP API endpoint (with --schedule)')
  parser.add_argument('--experiment', default=experiment)
  if cron is not None:
    parser.add_argument('--cron', default=cron, help='six fields, seconds first')


def gcs_path(gcs_root: str, name: str) -> str:
  """The default of root `name` (a key of ROOTS) below --gcs-root."""
  return f'{gcs_root}/{ROOTS[name]}'


def finish_kfp_args(parser: argparse.ArgumentParser,
                    args: argparse.Namespace) -> argparse.Namespace:
  """Fills the roots left unset from --gcs-root; refuses --dataflow without --project and
  --schedule without --host (parser.error: usage, exit 2)."""
  for name in ROOTS:
    flag = f'{name}_root'
    if hasattr(args, flag) and not getattr(args, flag):  # this compiler's root, not given
      setattr(args, flag, gcs_path(args.gcs_root, name))
  if getattr(args, 'dataflow', False) and not args.project:
    parser.error('--dataflow needs --project')
  if args.schedule and not args.host:
    parser.error('--schedule needs --host')
  return args


def beam_pipeline_args(args: argparse.Namespace,
                       dataflow: DataflowConfig = DataflowConfig()) -> List[str]:
  """The Beam flags of every Beam step: DirectRunner in the step's container, or Dataflow
  (with the workers of `dataflow`, at its default machine type: a step that needs another
  appends its own --machine_type, which Beam takes over this one)."""
  if not args.dataflow:
    # The worker count comes per task from its pod's CPU request; 0 would start one worker
    # per core of the node.
    return ['--direct_running_mode=multi_processing']
  return [
      '--runner=DataflowRunner',
      f'--project={args.project}',
      f'--region={args.region}',
      f'--temp_location={args.gcs_root}/beam-tmp',
      # Workers run the pipeline image, so they have this repo's code and pinned packages.
      f'--sdk_container_image={args.image}',
      '--sdk_location=container',
      '--experiments=use_runner_v2',
      f'--machine_type={dataflow.machine_type}',
  ] + dataflow.beam_args()
