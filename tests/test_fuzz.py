"""A seeded, bounded fuzz of the local model server over loopback: nothing a client sends
gets a 5xx, every error is TF Serving's JSON {"error": ...}, and the server answers right
afterwards."""
import collections
from concurrent import futures
import json
import random

import pytest
import requests

from models import serving_layout
from models import signatures
from serving import model_config
from serving.emulator import model_server
from serving.emulator import rest_json
from serving.emulator import server_process
from tests import fake_serving

MODEL = serving_layout.MODEL_NAME
REQUESTS = 10_000
THREADS = 4


@pytest.fixture(scope='module')
def server(tmp_path_factory):
  root = tmp_path_factory.mktemp('fuzz')
  model_root = serving_layout.model_root(str(root))
  for version in (1, 2):
    fake_serving.save_version(model_root, version)
  config = model_config.single_model(MODEL, model_root)
  config.model_config_list.config[0].model_version_policy.all.SetInParent()
  config.model_config_list.config[0].version_labels[serving_layout.STABLE] = 1
  path = root / 'models.config'
  model_config.write(str(path), config)
  with server_process.model_server(
      str(root), MODEL, '--poll-seconds', '0.5', '--model_config_file', str(path),
      '--allow_version_labels_for_unavailable_models') as running:
    yield running.url


_PATHS = [
    f'/v1/models/{MODEL}', f'/v1/models/{MODEL}:predict', f'/v1/models/{MODEL}:classify',
    f'/v1/models/{MODEL}:regress', f'/v1/models/{MODEL}:PREDICT', f'/v1/models/{MODEL}/metadata',
    f'/v1/models/{MODEL}/versions/1:predict', f'/v1/models/{MODEL}/versions/3:predict',
    f'/v1/models/{MODEL}/versions/99999999999999999999999:predict',
    f'/v1/models/{MODEL}/labels/stable:predict', f'/v1/models/{MODEL}/labels/nope:predict',
    f'/v1/models/{MODEL}/labels/st%61ble/metadata', f'/v1/models/{MODEL}/labels/%ZZ',
    f'/v1/models/{MODEL}/versions/1/labels/stable:predict', '/v1/models', '/v1/models/',
    '/v1/models/nope:predict', '/v1/models/%00:predict', '/v1/', '/', '/metrics', '/v2/models',
    '/v1/models/' + 'x' * 3000, f'/v1/models/{MODEL}:predict?x=1', '/favicon.ico',
]
_METHODS = ['POST'] * 6 + ['GET'] * 3 + ['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']
_SIGNATURES = [None, '', signatures.SERVING_SIGNATURE, 'nope', '__saved_model_init_op', 7,
               None, [], {}]


def _value(rng: random.Random, depth: int = 0):
  """Any JSON value, sometimes odd: huge or tiny numbers, deep nesting, b64 objects."""
  kind = rng.randrange(12 if depth < 4 else 8)
  if kind == 0:
    return None
  if kind == 1:
    return rng.choice([True, False])
  if kind == 2:
    return rng.choice([0, -1, 1, 23, 2**31, 2**63, -2**63 - 1, 2**64, 10**30])
  if kind == 3:
    return rng.choice([0.5, -0.0, 1e-45, 3.5e38, 1e308, 16777217.0])
  if kind == 4:
    return rng.choice(['', 'food', 'x' * 500, '\u00e9\u4e2d', '\ud7ff', '[[[{'])
  if kind == 5:
    return {'b64': rng.choice(['', 'AA', '!!', 'iVBORw0KGgo=', 'A' * 7])}
  if kind == 6:
    return []
  if kind == 7:
    return {'b64': rng.randrange(3)} if rng.random() < 0.5 else {'b64': 'AA', 'x': 1}
  if kind in (8, 9):
    return [_value(rng, depth + 1) for _ in range(rng.randrange(1, 4))]
  return {rng.choice(['hour', 'bid_price', 'image', 'b64', 'x']): _value(rng, depth + 1)
          for _ in range(rng.randrange(1, 3))}


def _body(rng: random.Random, good: dict) -> bytes:
  kind = rng.randrange(10)
  if kind == 0:  # nesting far deeper than any tensor
    depth = rng.choice([65, 500, 1100, 5000, 100_000])
    opener, closer = rng.choice([('[', ']'), ('{"a":', '}')])
    inner = opener * depth + '1' + closer * depth
    return ('{"instances": ' + inner + '}' if rng.random() < 0.5 else inner).encode()
  if kind == 1:  # bytes changed, dropped or cut short
    data = bytearray(json.dumps({'instances': [good]}).encode())
    for _ in range(rng.randrange(1, 6)):
      position = rng.randrange(len(data))
      action = rng.randrange(3)
      if action == 0:
        data[position] = rng.randrange(256)
      elif action == 1:
        del data[position]
      else:
        data = data[:position]
        break
    return bytes(data)
  if kind == 2:
    return rng.choice([b'', b'null', b'[]', b'"x"', b'1e999999', b'-', b'{"instances": NaN}',
                       b'\xff\xfe', b'{"instances": [' + b'9' * 5000 + b']}'])
  doc = {}
  signature = rng.choice(_SIGNATURES)
  if signature is not None:
    doc['signature_name'] = signature
  if kind in (3, 4, 5):  # a good instance with one field changed, added or dropped
    instance = dict(good)
    field = rng.choice(list(good) + ['extra'])
    if rng.random() < 0.2:
      instance.pop(field, None)
    else:
      instance[field] = _value(rng)
    doc['instances'] = [instance] * rng.randrange(1, 4)
  elif kind == 6:  # columnar
    doc['inputs'] = {name: rng.choice([[value], value, [[value]], [], _value(rng)])
                     for name, value in good.items() if rng.random() < 0.95}
  elif kind == 7:
    doc[rng.choice(['instances', 'inputs', 'examples'])] = _value(rng)
  elif kind == 8:
    doc = {'instances': [good], 'inputs': {}} if rng.random() < 0.5 else _value(rng)
  else:
    doc['instances'] = [good] if rng.random() < 0.5 else [good, {**good, 'hour': 25}]
  return json.dumps(doc).encode()


def _request(rng: random.Random, good: dict):
  method = rng.choice(_METHODS)
  path = rng.choice(_PATHS)
  return method, path, _body(rng, good) if method in ('POST', 'PUT', 'PATCH') else None


def test_fuzz_gets_no_server_error_and_the_server_still_answers_right(server, raw_rows):
  good = fake_serving.instance(raw_rows[0])
  rng = random.Random(11)
  cases = [_request(rng, good) for _ in range(REQUESTS)]
  bad = []

  def send(chunk) -> collections.Counter:  # its own count: `+= 1` on a shared dict loses some
    statuses = collections.Counter()
    with requests.Session() as session:
      for method, path, body in chunk:
        response = session.request(method, server + path, data=body, timeout=30)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
          bad.append((method, path, (body or b'')[:200], response.text[:300]))
        elif response.status_code != 200 and method != 'HEAD':
          try:
            error = response.json()['error']
            assert isinstance(error, str) and error
          except (ValueError, KeyError, TypeError, AssertionError):
            bad.append((method, path, (body or b'')[:200], response.text[:300]))
    return statuses

  with futures.ThreadPoolExecutor(THREADS) as pool:
    statuses = sum(pool.map(send, [cases[i::THREADS] for i in range(THREADS)]),
                   collections.Counter())
  assert sum(statuses.values()) == REQUESTS
  assert not bad, bad[:5]
  # Every kind of answer came up: the fuzz reached the model, the checks and the routing.
  assert {200, 400, 404} <= set(statuses), statuses
  response = requests.post(f'{server}/v1/models/{MODEL}:predict', timeout=10,
                           json={'instances': [good]})
  assert response.status_code == 200
  (prediction,) = response.json()['predictions']
  assert prediction == pytest.approx(fake_serving.answer(2, raw_rows[0]), rel=1e-6)


def test_a_body_over_the_size_limit_is_refused_in_json(server):
  response = requests.post(f'{server}/v1/models/{MODEL}:predict', timeout=30,
                           data=b' ' * (model_server.MAX_REQUEST_BYTES + 1))
  assert response.status_code == 413
  assert response.json() == {
      'error': f'Maximum request body size {model_server.MAX_REQUEST_BYTES} exceeded.'}


@pytest.mark.parametrize('path,body,status,error', [
    (f'/v1/models/{MODEL}:predict', b'[' * 100 + b']' * 100, 400,
     f'JSON Parse error: Nesting deeper than {rest_json.MAX_DEPTH} levels. at offset: '
     f'{rest_json.MAX_DEPTH}'),
    (f'/v1/models/{MODEL}:predict', b'{"instances": [' + b'9' * 5000 + b']}', 400,
     'JSON Parse error: Number too big to be stored in double. at offset: 15'),
    (f'/v1/models/{MODEL}:classify', b'{"examples": []}', 400, 'Expected one input Tensor.'),
    (f'/v1/models/{MODEL}:regress', b'{"signature_name": "x", "examples": []}', 400,
     'No signature was found with the name: x'),
    (f'/v1/models/{MODEL}:PREDICT', b'{}', 400,
     f'Malformed request: POST /v1/models/{MODEL}:PREDICT'),
    (f'/v1/models/{MODEL}/labels/nope:predict', b'{"instances": [1]}', 400,
     'Unrecognized servable version label: nope'),
    ('/metrics', b'', 404, 'Not found: POST /metrics'),
])
def test_malformed_requests_get_tf_servings_answer(server, path, body, status, error):
  response = requests.post(server + path, data=body, timeout=10)
  assert response.status_code == status
  assert response.headers['Content-Type'] == 'application/json'
  assert response.json() == {'error': error}
