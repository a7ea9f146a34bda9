"""Version policies and labels in the local server, as TF Serving documents and does them
(serving_config.md; server_core.cc for the rules and words), and the canary flow of
serving/labels.py driving it through the model config file while requests are served."""
import json
import os
import threading
import time

import pytest
import requests

from models import serving_layout
from models import signatures
from models import storage
from serving import client as client_lib
from serving import labels
from serving import model_config
from serving.emulator import server_process
from serving.emulator import versions
from tests import fake_serving

MODEL = serving_layout.MODEL_NAME
STABLE, CANARY = serving_layout.STABLE, serving_layout.CANARY


def _write_config(path, model_root, served, **version_labels):
  config = model_config.single_model(MODEL, model_root)
  entry = config.model_config_list.config[0]
  entry.model_version_policy.specific.versions.extend(served)
  entry.version_labels.update(version_labels)
  model_config.write(str(path), config)


def _label_version(url, label):
  response = requests.get(f'{url}/v1/models/{MODEL}/labels/{label}/metadata', timeout=10)
  return int(response.json()['model_spec']['version']) if response.status_code == 200 else None


@pytest.fixture(scope='module')
def served(tmp_path_factory):
  """A server polling its model config every 0.3 s: versions 1, 2, 3 on disk, only 1 served,
  labelled stable. Yields (server, config path)."""
  root = tmp_path_factory.mktemp('labels')
  model_root = serving_layout.model_root(str(root))
  for version in (1, 2, 3):
    fake_serving.save_version(model_root, version)
  path = root / 'models.config'
  _write_config(path, model_root, [1], stable=1)
  with server_process.model_server(
      str(root), MODEL, '--poll-seconds', '0.2', '--model_config_file', str(path),
      '--model_config_file_poll_wait_seconds', '0.3',
      '--allow_version_labels_for_unavailable_models') as server:
    fake_serving.wait_for(lambda: fake_serving.version_states(server.url) == {1: 'AVAILABLE'})
    yield server, str(path)


def _predict(url, row, route=''):
  return requests.post(f'{url}/v1/models/{MODEL}{route}:predict', timeout=10,
                       json={'instances': [fake_serving.instance(row)]})


def _answered(response, row):
  assert response.status_code == 200, response.text
  return fake_serving.answered_version(response.json()['predictions'][0], row)


def test_status_metadata_and_predict_by_label(served, raw_rows):
  url = served[0].url
  row = raw_rows[3]
  # GetModelStatus reads the version only: by label it lists every version, as TF Serving does.
  by_label = requests.get(f'{url}/v1/models/{MODEL}/labels/{STABLE}', timeout=10)
  assert by_label.status_code == 200
  assert by_label.text == requests.get(f'{url}/v1/models/{MODEL}', timeout=10).text
  metadata = requests.get(f'{url}/v1/models/{MODEL}/labels/{STABLE}/metadata', timeout=10)
  assert metadata.json()['model_spec'] == {'name': MODEL, 'signature_name': '', 'version': '1'}
  assert _answered(_predict(url, row, f'/labels/{STABLE}'), row) == 1
  assert _answered(_predict(url, row, '/versions/1'), row) == 1
  # Versions on disk that the specific policy does not name are not served.
  assert _predict(url, row, '/versions/2').json() == {
      'error': f'Servable not found for request: Specific({MODEL}, 2)'}


@pytest.mark.parametrize('route', ['/labels/nope:predict', '/labels/nope/metadata'])
def test_unknown_label_is_tf_servings_invalid_argument(served, route):
  url = served[0].url
  method = 'POST' if route.endswith(':predict') else 'GET'
  response = requests.request(method, f'{url}/v1/models/{MODEL}{route}', timeout=10,
                              data=json.dumps({'instances': [1]}))
  assert response.status_code == 400
  assert response.json() == {'error': 'Unrecognized servable version label: nope'}


def test_canary_flow_moves_labels_while_serving(served, raw_rows):
  server, config = served
  url = server.url
  row = raw_rows[5]
  assert labels.main(['set', CANARY, '2', '--config', config]) == 0
  fake_serving.wait_for(lambda: _label_version(url, CANARY) == 2
                        and fake_serving.version_states(url).get(2) == 'AVAILABLE')
  assert _answered(_predict(url, row, f'/labels/{CANARY}'), row) == 2
  assert _answered(_predict(url, row, f'/labels/{STABLE}'), row) == 1
  # Without a label a request gets the newest loaded version: the canary.
  assert _answered(_predict(url, row), row) == 2

  client = client_lib.Client(url, canary_share=0.3, seed=4)
  ad = {k: v for k, v in row.items() if k != 'clicked'}
  chunk = client.predict_many([ad] * 12)  # one request: one route for all
  singles = [client.predict(ad) for _ in range(20)]
  assert all(o['success'] for o in chunk + singles), chunk + singles
  assert len({o['prediction'][client_lib.VERSION_KEY] for o in chunk}) == 1
  reported = [o['prediction'][client_lib.VERSION_KEY] for o in singles]
  assert 1 <= reported.count('2') <= 12 and reported.count('1') == 20 - reported.count('2')

  # Promote under load on the stable label: not one request fails while it moves.
  body = json.dumps({'instances': [fake_serving.instance(row)]})
  answered = [[], [], []]  # per thread, in order: the version that gave each answer
  failed = []
  stop = threading.Event()

  def load(mine):  # bounded: stops on the event, after 20,000 answers, or at a failure
    with requests.Session() as session:
      while not stop.is_set() and sum(map(len, answered)) < 20000 and not failed:
        response = session.post(f'{url}/v1/models/{MODEL}/labels/{STABLE}:predict', data=body,
                                timeout=30)
        if response.status_code == 200:
          mine.append(_answered(response, row))
        else:
          failed.append(response.text)

  def all_answer(version):
    return failed or all(mine and mine[-1] == version for mine in answered)

  threads = [threading.Thread(target=load, args=(mine,)) for mine in answered]
  for thread in threads:
    thread.start()
  try:
    fake_serving.wait_for(lambda: all_answer(1))
    assert labels.main(['promote', '--config', config]) == 0
    fake_serving.wait_for(lambda: all_answer(2))
    fake_serving.wait_for(lambda: fake_serving.version_states(url).get(1) == 'END' or failed)
  finally:
    stop.set()
    for thread in threads:
      thread.join()
  assert not failed, failed[:3]
  for mine in answered:  # on each connection: stable's old version, then its new one
    assert mine[0] == 1 and mine[-1] == 2 and mine == sorted(mine)
  assert requests.get(f'{url}/v1/models/{MODEL}/labels/{CANARY}/metadata', timeout=10).json() == {
      'error': f'Unrecognized servable version label: {CANARY}'}
  # With no canary any more, the client's canary share falls back to stable.
  outcomes = [client.predict(ad) for _ in range(6)]
  assert [o['prediction'][client_lib.VERSION_KEY] for o in outcomes] == ['2'] * 6


def test_a_label_moves_only_to_a_loaded_version(served, raw_rows):
  server, config = served
  url = server.url
  row = raw_rows[6]
  with open(config) as f:
    before = f.read()
  assert labels.main(['set', STABLE, '3', '--config', config]) == 1  # refused, and why
  with open(config) as f:
    assert f.read() == before
  # Written by hand anyway: the server refuses the whole config (3 is not even loaded).
  model_root = model_config.read(config).model_config_list.config[0].base_path
  _write_config(config, model_root, [2, 3], stable=3)
  message = (f'PollFilesystemAndReloadConfig failed to ReloadConfig: Request to assign label '
             f'to version 3 of model {MODEL}, which is not currently available for inference')
  fake_serving.wait_for(lambda: message in ''.join(server.output))
  time.sleep(0.5)
  assert 3 not in fake_serving.version_states(url)
  assert _answered(_predict(url, row, f'/labels/{STABLE}'), row) == 2
  # Loaded first, then labelled: accepted.
  _write_config(config, model_root, [2, 3], stable=2)
  fake_serving.wait_for(lambda: fake_serving.version_states(url).get(3) == 'AVAILABLE')
  _write_config(config, model_root, [2, 3], stable=3)
  fake_serving.wait_for(lambda: _label_version(url, STABLE) == 3)
  assert _answered(_predict(url, row, f'/labels/{STABLE}'), row) == 3


def test_client_takes_a_label_or_a_version(served, raw_rows):
  url = served[0].url
  ad = {k: v for k, v in raw_rows[7].items() if k != 'clicked'}
  stable = _label_version(url, STABLE)
  by_label = client_lib.Client(url, label=STABLE).predict(ad)
  assert by_label['success'] and by_label['prediction'][client_lib.VERSION_KEY] == str(stable)
  assert by_label['message'].endswith(f'version {stable} (label {STABLE})')
  assert fake_serving.answered_version(
      by_label['prediction'][signatures.PREDICTION_KEY], raw_rows[7]) == stable
  loaded = min(v for v, state in fake_serving.version_states(url).items() if state == 'AVAILABLE')
  by_version = client_lib.Client(url, version=loaded).predict(ad)
  assert by_version['prediction'][client_lib.VERSION_KEY] == str(loaded)
  assert fake_serving.answered_version(
      by_version['prediction'][signatures.PREDICTION_KEY], raw_rows[7]) == loaded
  unknown = client_lib.Client(url, label='nope').predict(ad)
  assert not unknown['success'] and "has no version label 'nope'" in unknown['message']
  missing = client_lib.Client(url, version=999).predict(ad)
  assert not missing['success']
  assert f'Servable not found for request: Specific({MODEL}, 999)' in missing['message']
  with pytest.raises(ValueError, match='at most one of'):
    client_lib.Client(url, label=STABLE, version=1)


def test_without_the_flag_a_label_on_a_version_not_loaded_stops_the_start(tmp_path):
  model_root = serving_layout.model_root(str(tmp_path))
  fake_serving.save_version(model_root, 1)
  _write_config(tmp_path / 'models.config', model_root, [1], stable=1)
  with pytest.raises(RuntimeError, match=(
      f'Cannot serve the model config: FAILED_PRECONDITION: Request to assign label to '
      f'version 1 of model {MODEL}, which is not currently available for inference')):
    with server_process.model_server(str(tmp_path), MODEL, '--model_config_file',
                                     str(tmp_path / 'models.config')):
      pass


@pytest.mark.parametrize('policy,served', [
    ('', [7]), ('latest { num_versions: 2 }', [5, 7]), ('all {}', [1, 5, 7]),
    ('specific { versions: 1 versions: 6 }', [1]),
])
def test_version_policies(policy, served):
  config = model_config.parse(f'model_config_list {{ config {{ name: "m" base_path: "/m" '
                              f'model_version_policy {{ {policy} }} }} }}')
  entry = model_config.model(config, 'm')
  assert sorted(versions.aspired(entry.model_version_policy, [1, 5, 7])) == served


def _config_file(tmp_path, text=''):
  path = tmp_path / 'models.config'
  model_root = serving_layout.model_root(str(tmp_path))
  path.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{model_root}" '
                  f'{text} }} }}')
  return str(path), model_root


def _entry(path):
  return model_config.model(model_config.read(path))


def test_labels_pin_the_served_version_first(tmp_path):
  path, model_root = _config_file(tmp_path)
  for version in (4, 6, 7):  # published, with their manifests
    os.makedirs(os.path.join(model_root, str(version), 'variables'))
    for name in (serving_layout.SAVED_MODEL, serving_layout.VARIABLES_INDEX,
                 'variables/variables.data-00000-of-00001'):
      with open(os.path.join(model_root, str(version), name), 'w') as f:
        f.write('' if name == serving_layout.SAVED_MODEL else 'x')  # (a SavedModel: no assets)
    storage.write_manifest(os.path.join(model_root, str(version)))
  with open(os.path.join(model_root, '7', serving_layout.VARIABLES_INDEX), 'w') as f:
    f.write('y')  # rewritten since it was published: not whole, so never pinned
  assert labels.main(['set', CANARY, '9', '--config', path]) == 0
  entry = _entry(path)
  assert list(entry.model_version_policy.specific.versions) == [6, 9]
  assert dict(entry.version_labels) == {STABLE: 6, CANARY: 9}
  assert labels.main(['remove', CANARY, '--config', path]) == 0  # the canary rolled back
  entry = _entry(path)
  assert (list(entry.model_version_policy.specific.versions), dict(entry.version_labels)) == (
      [6], {STABLE: 6})
  assert labels.main(['remove', STABLE, '--config', path]) == 1  # would serve nothing
  assert labels.main(['latest', '--config', path]) == 0
  entry = _entry(path)
  assert entry.model_version_policy.WhichOneof('policy_choice') == 'latest'
  assert not entry.version_labels


def test_promote_needs_a_canary(tmp_path, capsys):
  path, _ = _config_file(tmp_path, 'model_version_policy { specific { versions: 3 } } '
                                   'version_labels { key: "stable" value: 3 }')
  assert labels.main(['promote', '--config', path]) == 1
  assert 'there is no canary to promote' in capsys.readouterr().err
