"""The batch scoring pipeline for Kubeflow: one retried task running batch.score, scheduled
monthly and idempotently, no Resolver."""
import json

import pytest
import yaml
from apache_beam.options.pipeline_options import GoogleCloudOptions
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import WorkerOptions

from batch import kfp_batch
from batch import score
from pipeline.resources import ResourcesConfig
from tests import test_kubeflow_runner

fake_kfp = test_kubeflow_runner.fake_kfp  # the in-memory KFP API (a fixture)
_posts = test_kubeflow_runner._posts  # pylint: disable=protected-access

IMAGE = 'europe-docker.pkg.dev/p/r/adclick:1'


def _compile(tmp_path, *flags):
  path = tmp_path / 'batch.yaml'
  kfp_batch.main(['--gcs-root', 'gs://b/adclick', '--image', IMAGE, '--output', str(path),
                  *flags])
  with open(path) as f:
    return yaml.safe_load(f)


def _container(spec):
  [executor] = spec['deploymentSpec']['executors'].values()
  return executor['container']


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
  return _compile(tmp_path_factory.mktemp('kfp'))


def test_one_retried_uncached_task_without_resolver(spec):
  assert spec['schemaVersion'] == '2.1.0'
  assert spec['pipelineInfo']['name'] == kfp_batch.PIPELINE_NAME
  [(name, task)] = spec['root']['dag']['tasks'].items()
  assert name == kfp_batch.TASK_NAME
  assert task['retryPolicy'] == {'maxRetryCount': kfp_batch.RETRIES,
                                 'backoffDuration': kfp_batch.BACKOFF,
                                 'backoffFactor': kfp_batch.BACKOFF_FACTOR,
                                 'backoffMaxDuration': kfp_batch.BACKOFF_MAX}
  assert not task['cachingOptions'].get('enableCache')  # next month's run must run
  assert 'resolver' not in json.dumps(spec).lower()
  container = _container(spec)
  assert container['image'] == IMAGE
  beam = ResourcesConfig().pod('beam')
  assert (container['resources']['cpuRequest'], container['resources']['cpuLimit']) == (
      beam.cpu_request, beam.cpu_limit)


def test_task_scores_the_latest_span_of_the_gcs_roots(spec):
  command = _container(spec)['command']
  assert command[:3] == ['python', '-m', 'batch.score']
  args, beam_args = score.parse_args(command[3:])
  assert (args.data_root, args.output, args.model_base_path, args.input) == (
      'gs://b/adclick/data', 'gs://b/adclick/scores', 'gs://b/adclick/serving/adclick', None)
  assert beam_args == ['--direct_running_mode=multi_processing',
                       f'--direct_num_workers={ResourcesConfig().beam_workers()}']


def test_dataflow_flags_reach_the_task(tmp_path):
  spec = _compile(tmp_path, '--dataflow', '--project', 'p',
                  '--set', 'dataflow.max_num_workers=7',
                  '--set', 'dataflow.service_account_email=beam@p.iam.gserviceaccount.com',
                  '--set', 'dataflow.subnetwork=regions/r/subnetworks/s',
                  '--set', 'dataflow.use_public_ips=false', '--set', 'resources.beam_cpu_request=3')
  command = _container(spec)['command']
  _, beam_args = score.parse_args(command[3:])
  assert '--runner=DataflowRunner' in beam_args and '--project=p' in beam_args
  assert f'--sdk_container_image={IMAGE}' in beam_args
  assert not [a for a in beam_args if a.startswith('--direct')]
  # The config's Dataflow workers and pod size, as for the training pipeline's Beam steps.
  options = PipelineOptions(beam_args)
  assert options.view_as(WorkerOptions).max_num_workers == 7
  assert options.view_as(GoogleCloudOptions).service_account_email == (
      'beam@p.iam.gserviceaccount.com')
  assert options.view_as(WorkerOptions).subnetwork == 'regions/r/subnetworks/s'
  assert options.view_as(WorkerOptions).use_public_ips is False
  assert _container(spec)['resources']['cpuRequest'] == 3


def test_schedule_is_monthly_after_training_and_idempotent(tmp_path, fake_kfp, capsys):
  host, state = fake_kfp
  _compile(tmp_path, '--schedule', '--host', host)
  _compile(tmp_path, '--schedule', '--host', host)
  out = capsys.readouterr().out
  assert 'Created the monthly recurring run' in out and 'Kept the monthly recurring run' in out
  [run] = _posts(state, 'recurringruns')
  assert run['display_name'] == f'{kfp_batch.PIPELINE_NAME}-monthly'
  assert run['trigger']['cron_schedule']['cron'] == '0 0 0 2 * *'  # six fields: the 2nd
  assert run['no_catchup'] is True and int(run['max_concurrency']) == 1
  assert len(state['runs']) == 1 and len(_posts(state, 'pipelines/upload')) == 1
