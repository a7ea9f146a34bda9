"""deploy/ as far as it can be checked without a cluster: it parses, has what a zero-downtime
TF Serving deployment needs, points at the model name and REST port the client uses, mounts a
model config (name, base path, labels) that agrees with both, and is locked down (only the
internal API reaches it; the pods run unprivileged)."""
from importlib import metadata
import os

import pytest
import yaml

from models import serving_layout
from serving import client
from serving import model_config

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'deploy')


@pytest.fixture(scope='module')
def manifests():
  with open(os.path.join(DEPLOY, 'kustomization.yaml')) as f:
    files = yaml.safe_load(f)['resources']
  assert sorted(files) == sorted(name for name in os.listdir(DEPLOY)
                                 if name.endswith('.yaml') and name != 'kustomization.yaml')
  by_kind = {}
  for name in files:
    with open(os.path.join(DEPLOY, name)) as f:
      for doc in yaml.safe_load_all(f):
        assert doc['apiVersion'] and doc['metadata']['name']
        by_kind[doc['kind']] = doc
  return by_kind


@pytest.fixture(scope='module')
def container(manifests):
  (only,) = manifests['Deployment']['spec']['template']['spec']['containers']
  return only


def _port(container, port):
  """A probe's or Service's port, resolving a named port."""
  named = {p['name']: p['containerPort'] for p in container['ports']}
  return named.get(port, port)


def test_deployment_rolls_out_without_downtime(manifests):
  spec = manifests['Deployment']['spec']
  assert spec['replicas'] >= 2
  assert spec['strategy']['type'] == 'RollingUpdate'
  assert spec['strategy']['rollingUpdate']['maxUnavailable'] == 0
  assert spec['strategy']['rollingUpdate']['maxSurge'] >= 1
  labels = spec['template']['metadata']['labels']
  assert spec['selector']['matchLabels'].items() <= labels.items()
  assert manifests['PodDisruptionBudget']['spec']['selector']['matchLabels'].items() <= (
      labels.items())
  assert manifests['PodDisruptionBudget']['spec']['minAvailable'] >= 1


def test_tf_serving_serves_the_pushed_model_from_gcs(container):
  image, tag = container['image'].split(':')
  assert image == 'tensorflow/serving'
  assert tag.split('.')[:2] == metadata.version('tensorflow').split('.')[:2]
  env = {e['name']: e['value'] for e in container['env']}
  assert env['MODEL_NAME'] == serving_layout.MODEL_NAME
  assert env['MODEL_BASE_PATH'].startswith('gs://')
  flags = dict(arg.lstrip('-').split('=', 1) for arg in container['args'])
  assert int(flags['max_num_load_retries']) > 0  # what makes a mid-copy poll harmless
  assert _port(container, 'http') == serving_layout.REST_PORT
  assert _port(container, 'grpc') == serving_layout.GRPC_PORT


@pytest.mark.parametrize('probe', ['startupProbe', 'readinessProbe', 'livenessProbe'])
def test_probes_ask_the_rest_status_of_the_model(container, probe):
  check = container[probe]['httpGet']
  assert check['path'] == f'/v1/models/{serving_layout.MODEL_NAME}'
  assert _port(container, check['port']) == serving_layout.REST_PORT


def test_resources_are_requested(container):
  assert container['resources']['requests']['cpu']
  assert container['resources']['requests']['memory']


def test_batching_config_is_mounted_where_the_flag_points(manifests, container):
  flags = dict(arg.lstrip('-').split('=', 1) for arg in container['args'])
  mounts = {m['name']: m['mountPath'] for m in container['volumeMounts']}
  volumes = {v['name']: v['configMap']['name']
             for v in manifests['Deployment']['spec']['template']['spec']['volumes']
             if 'configMap' in v}
  config = manifests['ConfigMap']
  (key,) = config['data']
  assert flags['enable_batching'] == 'true'
  assert flags['batching_parameters_file'] == (
      mounts[next(n for n, c in volumes.items() if c == config['metadata']['name'])] + '/' + key)


def test_service_exposes_the_rest_port_to_the_pods(manifests, container):
  service = manifests['Service']
  labels = manifests['Deployment']['spec']['template']['metadata']['labels']
  assert service['spec']['selector'].items() <= labels.items()
  http = next(p for p in service['spec']['ports'] if p['name'] == 'http')
  assert http['port'] == serving_layout.REST_PORT
  assert _port(container, http['targetPort']) == serving_layout.REST_PORT
  assert client.DEFAULT_URL.endswith(f':{http["port"]}')


def test_pods_run_as_the_workload_identity_account(manifests):
  account = manifests['ServiceAccount']
  assert manifests['Deployment']['spec']['template']['spec']['serviceAccountName'] == (
      account['metadata']['name'])
  assert 'iam.gke.io/gcp-service-account' in account['metadata']['annotations']


def test_only_the_internal_api_reaches_the_serving_ports(manifests, container):
  policy = manifests['NetworkPolicy']['spec']
  labels = manifests['Deployment']['spec']['template']['metadata']['labels']
  assert policy['podSelector']['matchLabels'].items() <= labels.items()
  assert 'Ingress' in policy['policyTypes']
  (rule,) = policy['ingress']
  (source,) = rule['from']
  assert list(source) == ['podSelector']  # no namespaceSelector or ipBlock widening it
  ((key, value),) = source['podSelector']['matchLabels'].items()
  with open(os.path.join(DEPLOY, 'README.md')) as f:
    assert f'`{key}: {value}`' in f.read()  # the label the internal API's pods must carry
  served = {_port(container, p['targetPort']) for p in manifests['Service']['spec']['ports']}
  assert {p['port'] for p in rule['ports']} == served == {serving_layout.REST_PORT,
                                                          serving_layout.GRPC_PORT}


def test_serving_pods_run_unprivileged(manifests, container):
  pod = manifests['Deployment']['spec']['template']['spec']
  assert pod['securityContext']['runAsNonRoot'] is True
  assert pod['securityContext']['runAsUser'] > 0
  context = container['securityContext']
  assert context['readOnlyRootFilesystem'] is True
  assert context['allowPrivilegeEscalation'] is False
  assert context['capabilities'] == {'drop': ['ALL']}
  writable = {m['mountPath'] for m in container['volumeMounts'] if not m.get('readOnly')}
  empty_dirs = {v['name'] for v in pod['volumes'] if 'emptyDir' in v}
  assert writable == {m['mountPath'] for m in container['volumeMounts']
                      if m['name'] in empty_dirs} == {'/tmp'}


@pytest.fixture(scope='module')
def model_config_map():
  """(the generated ConfigMap's name, its file name, the parsed model config)."""
  with open(os.path.join(DEPLOY, 'kustomization.yaml')) as f:
    kustomization = yaml.safe_load(f)
  (generator,) = kustomization['configMapGenerator']
  (file_name,) = generator['files']
  # A fixed name: an edit updates the mounted file in place instead of renaming the ConfigMap
  # (which would restart every pod).
  assert kustomization['generatorOptions']['disableNameSuffixHash'] is True
  return generator['name'], file_name, model_config.read(os.path.join(DEPLOY, file_name))


def test_model_config_is_mounted_as_a_directory_where_the_flag_points(manifests, container,
                                                                      model_config_map):
  name, file_name, _ = model_config_map
  flags = dict(arg.lstrip('-').split('=', 1) for arg in container['args'])
  (volume,) = [v['name'] for v in manifests['Deployment']['spec']['template']['spec']['volumes']
               if v.get('configMap', {}).get('name') == name]
  (mount,) = [m for m in container['volumeMounts'] if m['name'] == volume]
  assert 'subPath' not in mount  # a subPath mount never sees the ConfigMap change
  assert flags['model_config_file'] == f"{mount['mountPath']}/{file_name}"
  assert float(flags['model_config_file_poll_wait_seconds']) > 0
  # Pods that start with labels in the config need it (labels are set before models load).
  assert flags['allow_version_labels_for_unavailable_models'] == 'true'


def test_model_config_agrees_with_the_deployment_and_the_client(container, model_config_map):
  _, _, config = model_config_map
  (model,) = config.model_config_list.config
  env = {e['name']: e['value'] for e in container['env']}
  assert model.name == env['MODEL_NAME'] == serving_layout.MODEL_NAME
  assert container['readinessProbe']['httpGet']['path'] == f'/v1/models/{model.name}'
  assert model.base_path == serving_layout.model_root(env['MODEL_BASE_PATH'], model.name)
  assert model.model_platform == 'tensorflow'
  policy = model.model_version_policy.WhichOneof('policy_choice')
  assert policy in ('latest', 'specific')
  # Labels are the ones the client's canary share uses, on versions the policy serves.
  assert set(model.version_labels) <= {serving_layout.STABLE, serving_layout.CANARY}
  if model.version_labels:
    assert policy == 'specific'
    assert set(model.version_labels.values()) <= set(model.model_version_policy.specific.versions)
  assert _port(container, 'http') == serving_layout.REST_PORT
  assert client.DEFAULT_URL.endswith(f':{serving_layout.REST_PORT}')
