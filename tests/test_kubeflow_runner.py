"""kubeflow_runner.py: the compiled KFP spec, and the monthly schedule against a fake KFP API.

No Kubeflow cluster runs here. The schedule is exercised against a small HTTP server on
127.0.0.1 implementing the few KFP v2beta1 REST endpoints kfp.Client calls; the test
asserts on the requests it received.
"""
import argparse
import json
import shutil
import urllib.parse

from apache_beam.options.pipeline_options import GoogleCloudOptions
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.options.pipeline_options import WorkerOptions
import kfp
from kfp.pipeline_spec import pipeline_spec_pb2
from google.protobuf import json_format
import pytest
import yaml

import kubeflow_runner
import local_runner
from pipeline import kfp_schedule
from pipeline import options
from pipeline.pipeline import create_pipeline
from pipeline.resources import DataflowConfig, ResourcesConfig, VertexConfig
from serving.emulator import http_stub

GCS_ROOT = 'gs://adclick-test/prod'
IMAGE = 'europe-docker.pkg.dev/adclick/pipelines/adclick:test'


def _compile(tmp_path, *flags):
  path = tmp_path / 'adclick.yaml'
  kubeflow_runner.main(['--gcs-root', GCS_ROOT, '--image', IMAGE, '--output', str(path),
                        *flags])
  return path


@pytest.fixture(scope='module')
def spec_path(tmp_path_factory):
  return _compile(tmp_path_factory.mktemp('kfp'))


def _spec(path):
  with open(path) as f:
    return yaml.safe_load(f)


def _executor_args(spec):
  return {name: ' '.join(executor['container']['args'])
          for name, executor in spec['deploymentSpec']['executors'].items()}


def _workers(args):
  return [a for a in args.split() if a.startswith('--direct_num_workers')]


def test_spec_is_kfp_v2_schema_2_1_with_every_local_component(spec_path):
  spec = _spec(spec_path)
  json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # a valid PipelineSpec
  assert kfp.components.load_component_from_file(str(spec_path)).name == 'adclick'
  assert spec['schemaVersion'] == '2.1.0'

  local = create_pipeline('/tmp/root', '/tmp/data', '/tmp/serving')
  assert set(spec['root']['dag']['tasks']) == {c.id for c in local.components}
  executors = spec['deploymentSpec']['executors']
  assert not any('resolver' in executor for executor in executors.values())
  assert 'ServedModelBaseline' in spec['root']['dag']['tasks']
  assert 'baseline_model_resolver' not in json.dumps(spec)
  # Open-source KFP ignores TFX's pre-cache-check driver hook; the ExampleGen needs none.
  assert 'lifecycle' not in json.dumps(executors)
  assert {e['container']['image'] for e in executors.values()} == {IMAGE}


def test_spec_has_gcs_roots_and_beam_args(spec_path):
  spec = _spec(spec_path)
  text = json.dumps(spec)
  assert spec['defaultPipelineRoot'] == f'{GCS_ROOT}/pipeline-root'
  assert f'{GCS_ROOT}/data' in text  # ExampleGen's input_base, DataGate's data_root
  assert f'{GCS_ROOT}/serving/adclick' in text  # the baseline's model_root, Pusher's target
  assert f'{kubeflow_runner.IMAGE_REPO_ROOT}/schema/schema.pbtxt' in text
  args = _executor_args(spec)
  assert '--direct_running_mode=multi_processing' in args['Transform_executor']


def _beam_options(executor):
  """The Beam options a task's executor runs with, as Beam parses them (the last of a
  repeated flag wins): its arguments after the TFX launcher's own."""
  args = executor['container']['args']
  return PipelineOptions(args[args.index('--json_serialized_inputs_spec_args') + 2:])


BEAM_TASKS = ('ImageCsvExampleGen', 'StatisticsGen', 'DataGate', 'Transform', 'Evaluator')
DATAFLOW_SETTINGS = {'dataflow.max_num_workers': 40, 'dataflow.disk_size_gb': 120,
                     'dataflow.service_account_email': 'beam@adclick-prod.iam.gserviceaccount.com',
                     'dataflow.subnetwork': 'regions/europe-west4/subnetworks/pipelines',
                     'dataflow.use_public_ips': 'false',
                     'dataflow.evaluator_machine_type': 'n2-highmem-16'}


def test_dataflow_flags_reach_every_beam_step(tmp_path):
  settings = [arg for name, value in DATAFLOW_SETTINGS.items()
              for arg in ('--set', f'{name}={value}')]
  spec = _spec(_compile(tmp_path, '--dataflow', '--project', 'adclick-prod',
                        '--region', 'europe-west4', *settings))
  executors, args = spec['deploymentSpec']['executors'], _executor_args(spec)
  machine_types = {}
  for task in BEAM_TASKS:
    options = _beam_options(executors[f'{task}_executor'])
    google, worker = options.view_as(GoogleCloudOptions), options.view_as(WorkerOptions)
    assert options.view_as(StandardOptions).runner == 'DataflowRunner'
    assert (google.project, google.region, google.temp_location) == (
        'adclick-prod', 'europe-west4', f'{GCS_ROOT}/beam-tmp')
    assert google.service_account_email == DATAFLOW_SETTINGS['dataflow.service_account_email']
    assert (worker.sdk_container_image, worker.max_num_workers, worker.disk_size_gb) == (
        IMAGE, 40, 120)
    assert worker.subnetwork == DATAFLOW_SETTINGS['dataflow.subnetwork']
    assert worker.use_public_ips is False
    machine_types[task] = worker.machine_type
  default = DataflowConfig()
  assert machine_types == {'ImageCsvExampleGen': default.machine_type,
                           'StatisticsGen': default.machine_type,
                           'DataGate': default.machine_type,
                           'Transform': default.transform_machine_type,
                           'Evaluator': 'n2-highmem-16'}
  assert not any(_workers(a) for a in args.values())  # Dataflow sizes its own workers


def test_dataflow_defaults_keep_public_ips_and_the_default_service_account(tmp_path):
  spec = _spec(_compile(tmp_path, '--dataflow', '--project', 'adclick-prod'))
  options = _beam_options(spec['deploymentSpec']['executors']['Transform_executor'])
  worker = options.view_as(WorkerOptions)
  assert (worker.max_num_workers, worker.disk_size_gb, worker.machine_type) == (
      DataflowConfig().max_num_workers, DataflowConfig().disk_size_gb,
      DataflowConfig().transform_machine_type)
  assert worker.use_public_ips is None and worker.subnetwork is None
  assert options.view_as(GoogleCloudOptions).service_account_email is None


# Tasks whose kind is certain, by kind (pipeline/resources.py).
SIZED = {'trainer': ['Trainer'],
         'beam': ['ImageCsvExampleGen', 'StatisticsGen', 'DataGate', 'Transform', 'Evaluator'],
         'default': ['ImportSchemaGen', 'ExampleValidator', 'ServedModelBaseline', 'SafePusher']}


def _pod_sizes(spec):
  """{task: (cpu request, cpu limit, memory request GiB, memory limit GiB)} from the spec."""
  sizes = {}
  for name, executor in spec['deploymentSpec']['executors'].items():
    res = executor['container']['resources']
    sizes[name.removesuffix('_executor')] = (
        res['cpuRequest'], res['cpuLimit'], round(res['memoryRequest'] * 1e9 / 2**30, 6),
        round(res['memoryLimit'] * 1e9 / 2**30, 6))
  return sizes


def test_every_task_is_sized_by_its_kind_and_beam_workers_follow_the_cpu_request(spec_path):
  spec = _spec(spec_path)
  sizes, args, resources = _pod_sizes(spec), _executor_args(spec), ResourcesConfig()
  assert set(sizes) == set(spec['root']['dag']['tasks'])
  for kind, tasks in SIZED.items():
    pod = resources.pod(kind)
    for task in tasks:
      assert sizes[task] == (pod.cpu_request, pod.cpu_limit, pod.memory_request_gib,
                             pod.memory_limit_gib), task
  assert sizes['Trainer'] != sizes['Transform'] != sizes['ImportSchemaGen']
  for task in SIZED['beam']:
    assert _workers(args[f'{task}_executor']) == [
        f'--direct_num_workers={int(resources.beam_cpu_request)}']
  assert not any('--direct_num_workers=0' in a for a in args.values())


def test_a_pod_size_must_request_no_more_than_its_limit():
  with pytest.raises(ValueError, match='beam'):
    ResourcesConfig(beam_memory_request_gib=16, beam_memory_limit_gib=12)


RUN_OPTIONS = ['--span', '5', '--window-spans', '2', '--tune',
               '--set', 'gate.auc_floor=0.71', '--set', 'hparams.learning_rate=0.0042',
               '--set', 'preprocessing.oov_buckets=3', '--set', 'tuner.trial_epochs=2']


def _parser(runner, monkeypatch):
  """The ArgumentParser a runner's parse_args builds."""
  built = []
  parse = argparse.ArgumentParser.parse_args
  monkeypatch.setattr(argparse.ArgumentParser, 'parse_args',
                      lambda self, *a, **k: built.append(self) or parse(self, *a, **k))
  runner.parse_args([])
  return built[-1]


@pytest.mark.parametrize('runner', [local_runner, kubeflow_runner])
def test_both_runners_take_the_run_options_of_pipeline_options(runner, monkeypatch):
  reference = argparse.ArgumentParser()
  options.add_run_options(reference)
  parser = _parser(runner, monkeypatch)
  run_options = {a.dest: (a.option_strings, a.default, a.type)
                 for a in reference._actions if a.dest != 'help'}  # pylint: disable=protected-access
  assert {a.dest: (a.option_strings, a.default, a.type) for a in parser._actions  # pylint: disable=protected-access
          if a.dest in run_options} == run_options
  # No config field is set any other way (a runner's own --window-spans or --learning-rate).
  fields = {name.split('.')[-1] for name in options.field_names()}
  assert not ({a.dest for a in parser._actions} - set(run_options)) & fields  # pylint: disable=protected-access

  config = options.config_from_args(runner.parse_args(RUN_OPTIONS))
  assert config == options.config_from_args(reference.parse_args(RUN_OPTIONS))
  assert (config.span, config.window_spans, config.tune, config.gate.auc_floor,
          config.hparams.learning_rate) == (5, 2, True, 0.71, 0.0042)


def _task_parameter(spec, task, name):
  return spec['root']['dag']['tasks'][task]['inputs']['parameters'][name]['runtimeValue'][
      'constant']


def test_run_options_reach_the_compiled_spec(tmp_path):
  spec = _spec(_compile(tmp_path, *RUN_OPTIONS))
  assert json.loads(_task_parameter(spec, 'ImageCsvExampleGen', 'range_config')) == {
      'static_range': {'start_span_number': 4, 'end_span_number': 5}}
  assert json.loads(_task_parameter(spec, 'Evaluator', 'gate'))['auc_floor'] == 0.71
  for task in ('Tuner', 'Trainer'):
    custom = json.loads(_task_parameter(spec, task, 'custom_config'))
    assert custom['hparams']['learning_rate'] == 0.0042
    assert custom['tuned_hparams_uri'] == f'{GCS_ROOT}/tuned_hparams.json'
  assert json.loads(_task_parameter(spec, 'Tuner', 'custom_config'))['tuner'][
      'trial_epochs'] == 2
  assert json.loads(_task_parameter(spec, 'Transform', 'custom_config'))['oov_buckets'] == 3
  assert _pod_sizes(spec)['Tuner'] == _pod_sizes(spec)['Trainer']


def test_pod_sizes_set_in_the_config_reach_the_spec(tmp_path):
  spec = _spec(_compile(tmp_path, '--set', 'resources.beam_cpu_request=2',
                        '--set', 'resources.beam_cpu_limit=3',
                        '--set', 'resources.trainer_memory_limit_gib=24'))
  assert _pod_sizes(spec)['Transform'][:2] == (2, 3)
  assert _pod_sizes(spec)['Trainer'][3] == 24
  assert _workers(_executor_args(spec)['Transform_executor']) == ['--direct_num_workers=2']


VERTEX_FLAGS = ['--vertex', '--project', 'adclick-prod', '--region', 'europe-west4', '--tune',
                '--set', 'vertex.machine_type=n1-standard-16', '--set', 'vertex.workers=3',
                '--set', 'vertex.accelerator_type=NVIDIA_TESLA_T4',
                '--set', 'vertex.accelerator_count=2', '--set', 'hparams.learning_rate=0.0042']


def _executor_class(spec, task):
  args = spec['deploymentSpec']['executors'][f'{task}_executor']['container']['args']
  return args[args.index('--executor_class_path') + 1]


def test_vertex_runs_the_trainer_and_tuner_as_vertex_training_jobs(tmp_path):
  spec = _spec(_compile(tmp_path, *VERTEX_FLAGS))
  assert _executor_class(spec, 'Trainer') == (
      'tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor')
  assert _executor_class(spec, 'Tuner') == (
      'tfx.extensions.google_cloud_ai_platform.tuner.executor.Executor')
  machine = {'machine_type': 'n1-standard-16', 'accelerator_type': 'NVIDIA_TESLA_T4',
             'accelerator_count': 2}
  chief = {'machine_spec': machine, 'replica_count': 1, 'container_spec': {'image_uri': IMAGE}}
  trainer = json.loads(_task_parameter(spec, 'Trainer', 'custom_config'))
  assert trainer['ai_platform_enable_vertex'] is True
  assert trainer['ai_platform_vertex_region'] == 'europe-west4'
  assert trainer['ai_platform_training_args'] == {
      'project': 'adclick-prod',
      'job_spec': {'worker_pool_specs': [chief, dict(chief, replica_count=3)]}}
  tuner = json.loads(_task_parameter(spec, 'Tuner', 'custom_config'))
  assert (tuner['ai_platform_enable_vertex'], tuner['ai_platform_vertex_region']) == (
      True, 'europe-west4')
  assert tuner['ai_platform_tuning_args'] == {
      'project': 'adclick-prod', 'job_spec': {'worker_pool_specs': [chief]}}
  for custom in (trainer, tuner):  # what run_fn and tuner_fn read is still there
    assert custom['hparams']['learning_rate'] == 0.0042
    assert custom['tuned_hparams_uri'] == f'{GCS_ROOT}/tuned_hparams.json'
  # The tasks only start the job and wait: the smallest pod.
  sizes = _pod_sizes(spec)
  assert sizes['Trainer'] == sizes['Tuner'] == sizes['ImportSchemaGen']


def test_without_vertex_the_trainer_trains_in_its_own_task(spec_path):
  spec = _spec(spec_path)
  assert _executor_class(spec, 'Trainer') == 'tfx.components.trainer.executor.GenericExecutor'
  assert not [key for key in json.loads(_task_parameter(spec, 'Trainer', 'custom_config'))
              if key.startswith('ai_platform')]


def test_vertex_pools_without_workers_or_accelerator_are_the_chief_on_cpu():
  assert VertexConfig(machine_type='n1-highmem-8').worker_pool_specs('img') == [
      {'machine_spec': {'machine_type': 'n1-highmem-8'}, 'replica_count': 1,
       'container_spec': {'image_uri': 'img'}}]


def test_vertex_needs_project(capsys):
  with pytest.raises(SystemExit):
    kubeflow_runner.parse_args(['--vertex'])
  assert 'error: --vertex needs --project' in capsys.readouterr().err


@pytest.mark.parametrize('fields, message', [
    ({'workers': -1}, 'vertex.workers'),
    ({'accelerator_type': 'NVIDIA_TESLA_T4', 'accelerator_count': 0}, 'accelerator_count'),
])
def test_vertex_pools_are_checked(fields, message):
  with pytest.raises(ValueError, match=message):
    VertexConfig(**fields)


class _FakeKfp(http_stub.JsonHandler):
  """The KFP v2beta1 endpoints kfp.Client uses here, in memory; records every request."""

  def _handle(self, method):
    state = self.server.state
    url = urllib.parse.urlparse(self.path)
    query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
    raw = self.rfile.read(int(self.headers.get('Content-Length') or 0))
    body = json.loads(raw) if raw and 'json' in self.headers.get('Content-Type', '') else None
    state['requests'].append((method, url.path, query, body))

    def named(items):
      if 'filter' not in query:
        return items
      [predicate] = json.loads(query['filter'])['predicates']
      return [i for i in items if i['display_name'] == predicate['stringValue']]

    def new_id(kind):
      state['ids'] += 1
      return f"{kind}-{state['ids']}"

    path = url.path.removeprefix('/apis/v2beta1/')
    if (method, path) == ('GET', 'healthz'):
      return self.reply({'multi_user': False})
    if (method, path) == ('GET', 'pipelines'):
      return self.reply({'pipelines': named(state['pipelines'])})
    if (method, path) == ('POST', 'pipelines/upload'):
      assert b'uploadfile' in raw
      pipeline = {'pipeline_id': new_id('pipeline'), 'display_name': query['name']}
      state['pipelines'].append(pipeline)
      state['versions'].append({**pipeline, 'pipeline_version_id': new_id('version')})
      return self.reply(pipeline)
    if (method, path) == ('POST', 'pipelines/upload_version'):
      assert b'uploadfile' in raw
      version = {'pipeline_id': query['pipelineid'], 'pipeline_version_id': new_id('version'),
                 'display_name': query['name']}
      state['versions'].append(version)
      return self.reply(version)
    if method == 'GET' and path.startswith('pipelines/') and path.endswith('/versions'):
      pipeline_id = path.split('/')[1]
      return self.reply({'pipeline_versions': named(
          [v for v in state['versions'] if v['pipeline_id'] == pipeline_id])})
    if (method, path) == ('GET', 'experiments'):
      return self.reply({'experiments': named(state['experiments'])})
    if (method, path) == ('POST', 'experiments'):
      experiment = {**body, 'experiment_id': new_id('experiment')}
      state['experiments'].append(experiment)
      return self.reply(experiment)
    if (method, path) == ('GET', 'recurringruns'):
      return self.reply({'recurringRuns': named(
          [r for r in state['runs'] if r['experiment_id'] == query.get('experiment_id')])})
    if (method, path) == ('POST', 'recurringruns'):
      run = {**body, 'recurring_run_id': new_id('run')}
      state['runs'].append(run)
      return self.reply(run)
    if method == 'DELETE' and path.startswith('recurringruns/'):
      state['runs'] = [r for r in state['runs'] if r['recurring_run_id'] != path.split('/')[1]]
      return self.reply({})
    self.send_error(404, f'not implemented in the fake: {method} {url.path}')

  def do_GET(self):  # pylint: disable=invalid-name
    self._handle('GET')

  def do_POST(self):  # pylint: disable=invalid-name
    self._handle('POST')

  def do_DELETE(self):  # pylint: disable=invalid-name
    self._handle('DELETE')


@pytest.fixture
def fake_kfp():
  with http_stub.serving(_FakeKfp) as (url, server):
    server.state = {'requests': [], 'ids': 0, 'pipelines': [], 'versions': [],
                    'experiments': [], 'runs': []}
    yield url, server.state


def _posts(state, path):
  return [body for method, p, _, body in state['requests']
          if method == 'POST' and p == f'/apis/v2beta1/{path}']


def test_schedule_is_monthly_and_idempotent(spec_path, tmp_path, fake_kfp, capsys):
  host, state = fake_kfp
  local_spec = tmp_path / 'adclick.yaml'
  shutil.copy(spec_path, local_spec)
  schedule = lambda: kfp_schedule.schedule(  # pylint: disable=g-long-lambda
      kfp.Client(host=host), str(local_spec), pipeline_name='adclick',
      experiment_name='adclick', recurring_run_name='adclick-monthly')

  first = schedule()
  assert first.created
  [run] = _posts(state, 'recurringruns')
  assert run['display_name'] == 'adclick-monthly'
  assert run['trigger']['cron_schedule']['cron'] == '0 0 0 1 * *'  # six fields, seconds first
  assert run['no_catchup'] is True
  assert int(run['max_concurrency']) == 1
  assert run['mode'] == 'ENABLE'
  assert run['pipeline_version_reference'] == {'pipeline_id': first.pipeline_id,
                                               'pipeline_version_id': first.version_id}
  assert first.version_name == kfp_schedule.version_name('adclick', str(local_spec))
  assert len(state['pipelines']) == 1 and len(state['experiments']) == 1

  requests_before = len(state['requests'])
  second = schedule()  # the same spec again: looks everything up, creates nothing
  assert not second.created
  assert second.recurring_run_id == first.recurring_run_id
  assert not [r for r in state['requests'][requests_before:] if r[0] != 'GET']

  local_spec.write_text(local_spec.read_text() + '# changed\n')
  third = schedule()  # a new spec: a new version, and the schedule moves to it
  assert third.created and third.version_id != first.version_id
  assert [r['recurring_run_id'] for r in state['runs']] == [third.recurring_run_id]
  assert ('DELETE', f'/apis/v2beta1/recurringruns/{first.recurring_run_id}', {}, None) in (
      state['requests'])
  assert len(_posts(state, 'pipelines/upload')) == 1
  assert len(_posts(state, 'experiments')) == 1


def test_runner_flag_uploads_and_schedules(spec_path, tmp_path, fake_kfp, capsys):
  host, state = fake_kfp
  _compile(tmp_path, '--schedule', '--host', host)
  _compile(tmp_path, '--schedule', '--host', host)
  out = capsys.readouterr().out
  assert 'Created the monthly recurring run' in out and 'Kept the monthly recurring run' in out
  assert len(_posts(state, 'recurringruns')) == 1
  assert len(state['runs']) == 1
