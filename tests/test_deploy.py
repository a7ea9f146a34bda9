"""deploy/ as far as it can be checked without a cluster: every manifest is valid against the
Kubernetes API types (no unknown field), has what a zero-downtime TF Serving deployment needs,
points at the model name and REST port the client uses, mounts a model config (name, base path,
labels) that agrees with both, and is locked down (only the internal API reaches it, it reaches
only DNS, the metadata server and HTTPS; no API token; the pods run unprivileged; the image is
pinned by digest). The readiness probe's command runs here against a stand-in for TF Serving's
status answer: ready only with a version AVAILABLE."""
import contextlib
import http.server
from importlib import metadata
import ipaddress
import os
import re
import subprocess
import threading

import kubernetes.client.models
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


def _strict(value, type_name: str, where: str) -> None:
  """`value` is a `type_name` of the Kubernetes API (the client's models), with no field the
  API does not have, at any depth."""
  if type_name.startswith('list['):
    assert isinstance(value, list), where
    for i, item in enumerate(value):
      _strict(item, type_name[5:-1], f'{where}[{i}]')
  elif type_name.startswith('dict('):
    assert isinstance(value, dict), where
    for key, item in value.items():
      _strict(item, type_name[type_name.index(',') + 1:-1].strip(), f'{where}.{key}')
  elif hasattr(kubernetes.client.models, type_name):
    model = getattr(kubernetes.client.models, type_name)
    fields = {json: model.openapi_types[attr] for attr, json in model.attribute_map.items()}
    assert isinstance(value, dict), where
    unknown = set(value) - set(fields)
    assert not unknown, f'{where}: {type_name} has no field {sorted(unknown)}'
    for key, item in value.items():
      _strict(item, fields[key], f'{where}.{key}')
  else:
    assert isinstance(value, {'str': str, 'int': int, 'bool': bool, 'float': (int, float),
                              'object': (str, int, dict)}[type_name]), f'{where}: {value!r}'


def test_every_manifest_is_valid_against_the_kubernetes_api_types(manifests):
  for kind, doc in manifests.items():
    version = doc['apiVersion'].split('/')[-1]
    _strict(doc, f'{version.capitalize()}{kind}', kind)


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


_IMAGE = re.compile(r'(?P<name>[^:@]+):(?P<tag>[^:@]+)@sha256:(?P<digest>[0-9a-f]{64})')


def test_tf_serving_serves_the_pushed_model_from_gcs(container):
  # Pinned by digest (a tag can be moved); the tag says which release that digest is.
  image = _IMAGE.fullmatch(container['image'])
  assert image, f'{container["image"]} is not tensorflow/serving:<tag>@sha256:<digest>'
  assert image['name'] == 'tensorflow/serving'
  assert image['tag'].split('.')[:2] == metadata.version('tensorflow').split('.')[:2]
  with open(os.path.join(DEPLOY, 'README.md')) as f:
    assert f'crane digest tensorflow/serving:{image["tag"]}' in f.read()  # how to fill it
  env = {e['name']: e['value'] for e in container['env']}
  assert env['MODEL_NAME'] == serving_layout.MODEL_NAME
  assert env['MODEL_BASE_PATH'].startswith('gs://')
  flags = dict(arg.lstrip('-').split('=', 1) for arg in container['args'])
  assert int(flags['max_num_load_retries']) > 0  # what makes a mid-copy poll harmless
  assert _port(container, 'http') == serving_layout.REST_PORT
  assert _port(container, 'grpc') == serving_layout.GRPC_PORT


@pytest.mark.parametrize('probe', ['startupProbe', 'livenessProbe'])
def test_liveness_asks_whether_the_process_answers_not_whether_a_model_is_loaded(container,
                                                                                  probe):
  """The standard gRPC health check, which TF Serving answers once the flag turns it on."""
  flags = dict(arg.lstrip('-').split('=', 1) for arg in container['args'])
  assert flags['enable_grpc_healthcheck_service'] == 'true'
  assert container[probe].keys() & {'grpc', 'httpGet', 'exec', 'tcpSocket'} == {'grpc'}
  assert container[probe]['grpc']['port'] == serving_layout.GRPC_PORT
  assert container[probe] != container['readinessProbe']


def _readiness_command(container, port: int):
  """The readiness probe's command, asking `port` instead of the container's REST port."""
  command = list(container['readinessProbe']['exec']['command'])
  target = f'/dev/tcp/127.0.0.1/{serving_layout.REST_PORT}'
  assert target in command[-1]
  command[-1] = command[-1].replace(target, f'/dev/tcp/127.0.0.1/{port}')
  return command


def _tf_serving_status(states) -> bytes:
  """GET /v1/models/<name> as TF Serving 2.16 answers it (the bytes test_model_server checks
  the local server for): 200 whatever the states are."""
  entries = ',\n'.join(
      '  {\n   "version": "%s",\n   "state": "%s",\n   "status": {\n    "error_code": "OK",\n'
      '    "error_message": ""\n   }\n  }' % (version, state) for version, state in states)
  return ('{\n "model_version_status": [\n%s\n ]\n}\n' % entries).encode()


@contextlib.contextmanager
def _status_stand_in(status: int, body: bytes):
  """A test stand-in for TF Serving's REST port on 127.0.0.1: every GET gets `status`, `body`."""

  class Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):  # pylint: disable=invalid-name
      self.paths.append(self.path)
      self.send_response(status)
      self.send_header('Content-Type', 'application/json')
      self.send_header('Content-Length', str(len(body)))
      self.end_headers()
      self.wfile.write(body)

    def log_message(self, *args):
      pass

  Handler.paths = []
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield server.server_address[1], Handler.paths
  finally:
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize('status, states, ready', [
    (200, [('1795360000', 'AVAILABLE')], True),
    (200, [('1795360000', 'LOADING'), ('1795273561', 'AVAILABLE')], True),
    (200, [('1795360000', 'LOADING')], False),  # 200, and nothing can answer a prediction
    (200, [('1795273561', 'END')], False),
    (404, [], False),
])
def test_readiness_requires_an_available_version(container, status, states, ready):
  with _status_stand_in(status, _tf_serving_status(states)) as (port, paths):
    probe = subprocess.run(_readiness_command(container, port), timeout=30, check=False)
  assert (probe.returncode == 0) == ready
  assert paths == [f'/v1/models/{serving_layout.MODEL_NAME}']


def test_readiness_fails_when_nothing_answers(container):
  with _status_stand_in(200, b'') as (port, _):
    pass  # closed again: nothing listens on the port any more
  assert subprocess.run(_readiness_command(container, port), timeout=30,
                        stderr=subprocess.DEVNULL, check=False).returncode != 0


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


def test_pods_run_as_the_workload_identity_account_without_an_api_token(manifests):
  account = manifests['ServiceAccount']
  pod = manifests['Deployment']['spec']['template']['spec']
  assert pod['serviceAccountName'] == account['metadata']['name']
  assert 'iam.gke.io/gcp-service-account' in account['metadata']['annotations']
  # TF Serving never calls the Kubernetes API: no token in the pod (the pod's own setting
  # wins over the account's; both say no).
  assert pod['automountServiceAccountToken'] is False
  assert account['automountServiceAccountToken'] is False


def test_replicas_are_spread_across_nodes(manifests):
  template = manifests['Deployment']['spec']['template']
  spread = {c['topologyKey']: c for c in template['spec']['topologySpreadConstraints']}
  by_node = spread['kubernetes.io/hostname']
  assert by_node['whenUnsatisfiable'] == 'DoNotSchedule' and by_node['maxSkew'] == 1
  assert by_node['labelSelector']['matchLabels'].items() <= (
      template['metadata']['labels'].items())


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


_PRIVATE = [ipaddress.ip_network(n) for n in (
    '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16')]


def test_the_serving_pods_reach_only_dns_the_metadata_server_and_https(manifests):
  """Egress is restricted, to what reading the model from GCS needs: DNS, the GKE metadata
  server (Workload Identity) and HTTPS to public addresses, none private."""
  policy = manifests['NetworkPolicy']['spec']
  assert set(policy['policyTypes']) == {'Ingress', 'Egress'}
  allowed = {}
  for rule in policy['egress']:
    assert rule['to'] and rule['ports']  # never "anywhere" nor "any port"
    for port in rule['ports']:
      allowed.setdefault((port['protocol'], port['port']), []).extend(rule['to'])
  assert set(allowed) == {('UDP', 53), ('TCP', 53), ('TCP', 80), ('TCP', 988), ('TCP', 443)}
  for peer in allowed[('UDP', 53)]:
    assert peer.get('podSelector') == {'matchLabels': {'k8s-app': 'kube-dns'}} or (
        peer['ipBlock'] == {'cidr': '169.254.20.10/32'})  # NodeLocal DNSCache
  assert allowed[('TCP', 80)] == [{'ipBlock': {'cidr': '169.254.169.254/32'}}]
  assert allowed[('TCP', 988)] == [{'ipBlock': {'cidr': '169.254.169.252/32'}}]
  (https,) = allowed[('TCP', 443)]
  excepted = [ipaddress.ip_network(n) for n in https['ipBlock']['except']]
  assert all(any(private.subnet_of(e) for e in excepted) for private in _PRIVATE)


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
  assert f'GET /v1/models/{model.name} ' in container['readinessProbe']['exec']['command'][-1]
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
