"""Compiles the pipeline for Kubeflow Pipelines (KFP v2); with --schedule, runs it monthly.

    python kubeflow_runner.py [--gcs-root gs://BUCKET/adclick] [--image IMAGE]
        [--output outputs/kfp/adclick_pipeline.yaml]
        [--span N] [--window-spans K] [--tune] [--set NAME=VALUE ...] [--config FILE.json]
        [--dataflow --project P --region R] [--vertex --project P --region R]
        [--schedule --host https://KFP_ENDPOINT [--experiment adclick]]

Compiles the same create_pipeline(...) as local_runner.py to a KFP pipeline spec (YAML,
schema 2.1.0, the version the open-source KFP backend accepts) and prints its path. All
roots are on GCS (each can be set on its own; these flags, the image's, Dataflow's and the
schedule's are pipeline/kfp_options.py's, which the batch and monitoring specs take too):
  --pipeline-root  <gcs-root>/pipeline-root   artifacts (the KFP pipeline root)
  --data-root      <gcs-root>/data            monthly input: span-<N>/ads.csv, span-<N>/images/
  --serving-root   <gcs-root>/serving         TF Serving's base path: <model_name>/<version>/
The run options (span, window, tuning, any config field with --set) are local_runner.py's,
from pipeline/options.py; tuned hyperparameters are kept at <gcs-root>/tuned_hparams.json.
Every step runs in --image (Dockerfile: the repo on requirements.lock), in a pod sized by the
config's `resources` (pipeline/resources.py). Beam steps run in that container (DirectRunner,
one worker per requested CPU) by default, or on Dataflow with --dataflow, whose workers then
use the same image, sized by the config's `dataflow` (machine types per step, max workers,
disk, service account, subnetwork, public IPs: pipeline/resources.py).

--vertex compiles the Trainer (and the Tuner) as TFX's ai_platform components: their task
starts a Vertex AI Training custom job in --project/--region, whose replicas run the same
executor in --image, and waits for it. The job's worker pools (machine type, replicas beside
the chief, accelerator) are the config's `vertex`, e.g. `--set vertex.workers=3`.

--schedule uploads the spec and makes sure one recurring run starts it at 00:00 on the 1st
of every month, without catch-up and never two at once (pipeline/kfp_schedule.py).
"""
import argparse
import dataclasses
import os

import pipeline  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import kfp
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import base_beam_component
import yaml

from pipeline import config as config_lib
from pipeline import kfp_options
from pipeline import kfp_schedule
from pipeline import options
from pipeline.pipeline import VertexTraining, create_pipeline

# Where the Dockerfile puts the repository inside the image.
IMAGE_REPO_ROOT = '/pipeline'
DEFAULT_OUTPUT = os.path.join('outputs', 'kfp', 'adclick_pipeline.yaml')


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  kfp_options.add_kfp_flags(parser, output=DEFAULT_OUTPUT,
                            experiment=config_lib.PipelineConfig.pipeline_name,
                            roots=('pipeline', 'data', 'serving'))
  parser.add_argument('--vertex', action='store_true',
                      help='run the Trainer and Tuner on Vertex AI Training (needs --project)')
  options.add_run_options(parser)
  args = kfp_options.finish_kfp_args(parser, parser.parse_args(argv))
  if args.vertex and not args.project:
    parser.error('--vertex needs --project')
  return args


def _gb(gib: float) -> float:
  """The spec counts memory in GB (10^9 bytes), as kfp's own set_memory_limit() writes it."""
  return gib * 2**30 / 1e9


def task_kind(component, vertex: bool) -> str:
  """Which pod size of pipeline/resources.py a component's task gets; on Vertex the Trainer's
  and Tuner's tasks only start the training job and wait."""
  if isinstance(component, (tfx.components.Trainer, tfx.components.Tuner)):
    return 'default' if vertex else 'trainer'
  if isinstance(component, base_beam_component.BaseBeamComponent):
    return 'beam'
  return 'default'


def size_tasks(tfx_pipeline: tfx.dsl.Pipeline, config: config_lib.PipelineConfig,
               dataflow: bool, vertex: bool):
  """Sets each task's CPU and memory, and a Beam task's DirectRunner workers to its CPUs
  or, on Dataflow, its worker machine type where it is not the default."""
  resources = config.resources
  for component in tfx_pipeline.components:
    kind = task_kind(component, vertex)
    size = resources.pod(kind)
    component.with_platform_config(
        pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec(
            cpu_request=size.cpu_request, cpu_limit=size.cpu_limit,
            memory_request=_gb(size.memory_request_gib),
            memory_limit=_gb(size.memory_limit_gib)))
    if kind == 'beam' and not dataflow:
      component.with_beam_pipeline_args([f'--direct_num_workers={resources.beam_workers()}'])
    machine_type = config.dataflow.machine_type_of(component.id)
    if kind == 'beam' and dataflow and machine_type != config.dataflow.machine_type:
      component.with_beam_pipeline_args([f'--machine_type={machine_type}'])


def compile_pipeline(args, config: config_lib.PipelineConfig) -> str:
  """Writes the KFP pipeline spec; returns its path."""
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=args.image, use_pipeline_spec_2_1=True))
  tfx_pipeline = create_pipeline(
      pipeline_root=args.pipeline_root, data_root=args.data_root,
      serving_root=args.serving_root, config=config,
      beam_pipeline_args=kfp_options.beam_pipeline_args(args, config.dataflow),
      schema_file=os.path.join(IMAGE_REPO_ROOT, 'schema', 'schema.pbtxt'),
      vertex=VertexTraining(args.project, args.region, args.image) if args.vertex else None)
  size_tasks(tfx_pipeline, config, args.dataflow, args.vertex)
  job = runner.run(tfx_pipeline, write_out=False)
  spec = job['pipelineSpec']
  # TFX leaves the pipeline root to each run; naming it in the spec makes every run (the
  # schedule's, or one started in the KFP UI) write its artifacts to GCS.
  spec['defaultPipelineRoot'] = args.pipeline_root
  path = os.path.abspath(args.output)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    yaml.safe_dump(spec, f, sort_keys=True)
  return path


def main(argv=None):
  args = parse_args(argv)
  config = options.config_from_args(args)
  if config.tuned_hparams_uri is None:
    config = dataclasses.replace(config, tuned_hparams_uri=f'{args.gcs_root}/tuned_hparams.json')
  path = compile_pipeline(args, config)
  print(path)
  if args.schedule:
    schedule = kfp_schedule.schedule(
        kfp.Client(host=args.host), path, pipeline_name=config.pipeline_name,
        experiment_name=args.experiment, recurring_run_name=f'{config.pipeline_name}-monthly')
    print(f"{'Created' if schedule.created else 'Kept'} the monthly recurring run "
          f'{schedule.recurring_run_id} ({kfp_schedule.MONTHLY_CRON}) for pipeline version '
          f'{schedule.version_name}.')


if __name__ == '__main__':
  main()
