"""The client and the predict CLI: validation against features.py, errors in words, retries;
the same for a feature set without an image."""
import ast
import base64
import csv
import glob
import json
import os
import threading
import time

import numpy as np
import pytest

from models import features
from models import serving_layout
from models import signatures
from serving import client as client_lib
from serving import predict
from serving.emulator import http_stub
from serving.emulator import server_process
from tests import fake_models
from tests import fake_serving
from tests import test_rows
from tests.conftest import free_port
from tests.conftest import png_bytes

PREDICTION = signatures.PREDICTION_KEY
MODEL = serving_layout.MODEL_NAME


@pytest.fixture
def ad(raw_rows):
  return {k: v for k, v in raw_rows[0].items() if k != features.LABEL_KEY}


def _problems(ad):
  instance, problems = client_lib.validate(ad)
  assert instance is None
  return '; '.join(problems)


def test_valid_ad_becomes_a_tf_serving_instance_with_defaults(ad):
  del ad['hour'], ad['campaign_id']
  ad['day_of_week'] = ''  # an empty optional field takes its default, as in ExampleGen
  instance, problems = client_lib.validate(ad)
  assert not problems
  assert set(instance) == {f.name for f in features.serving_features()}
  assert instance['hour'] == features.BY_NAME['hour'].default
  assert instance['campaign_id'] == '' and instance['day_of_week'] == 0
  assert instance['image'] == {'b64': base64.b64encode(ad['image']).decode()}


def test_numbers_may_come_as_text_as_in_a_csv(ad):
  instance, problems = client_lib.validate(dict(ad, hour='7', bid_price='2.5'))
  assert not problems and instance['hour'] == 7 and instance['bid_price'] == 2.5


@pytest.mark.parametrize('image_format', ['JPEG', 'GIF', 'BMP'])
def test_every_format_the_model_decodes_is_accepted(ad, image_format):
  instance, problems = client_lib.validate(dict(ad, image=test_rows.image(image_format)))
  assert not problems and instance['image']


@pytest.mark.parametrize('change,problem', [
    ({'advertiser': None}, 'advertiser is missing'),
    ({'hour': 25}, 'hour: 25 is outside [0, 23]'),
    ({'hour': 3.5}, 'hour: 3.5 is not a whole number'),
    ({'hour': 'noon'}, "hour: 'noon' is not an integer"),
    ({'bid_price': 0}, 'bid_price: 0 is outside [0.01, 50]'),
    ({'bid_price': True}, 'bid_price: True is not a number'),
    ({'bid_price': float('nan')}, 'bid_price: nan is not a finite number'),
    ({'bid_price': 'Infinity'}, "bid_price: inf is not a finite number"),
    ({'bid_price': 1e400}, 'bid_price: inf is not a finite number'),
    ({'device': 'phone'}, "device: 'phone' is not one of mobile, desktop, tablet"),
    ({'category': 5}, 'category: 5 is not text'),
    ({'clicked': 1}, "unknown field 'clicked'"),
    ({'image': None}, 'image is missing'),
    ({'image': b'not an image'}, 'image: image is not a known image format; the accepted '
                                'formats are JPEG, PNG, GIF, BMP'),
    ({'image': b''}, 'image: image file is empty'),
    ({'image': test_rows.image('WEBP')}, 'image: image is WebP'),
    ({'image': test_rows.image('TIFF')}, 'image: image is TIFF'),
    ({'image': test_rows.corrupt_png()}, 'image: image does not decode: Invalid PNG data'),
    ({'image': png_bytes((0, 0, 0))[:60]}, 'image: image does not decode'),
        ({'image': 'creative.png'}, 'image: must be the bytes of an image file (JPEG, PNG, GIF, '
                                'BMP), got str'),
])
def test_each_invalid_field_is_named(ad, change, problem):
  ad.update(change)
  assert problem in _problems(ad)


def test_all_problems_are_reported_at_once(ad):
  problems = _problems(dict(ad, hour=99, device='tv'))
  assert 'hour: 99 is outside' in problems and "device: 'tv' is not one of" in problems


def test_not_an_object():
  assert _problems(['ad']) == 'an ad must be an object of field: value pairs, not list'


def test_invalid_ad_is_never_sent(ad):
  outcome = client_lib.Client(f'http://127.0.0.1:{free_port()}').predict(dict(ad, hour=-1))
  assert outcome == {'success': False, 'prediction': None,
                     'message': 'invalid ad: hour: -1 is outside [0, 23]'}


def test_unreachable_server_is_retried_then_explained(ad):
  started = time.time()
  outcome = client_lib.Client(f'http://127.0.0.1:{free_port()}', retries=2,
                              backoff=0.01).predict(ad)
  assert not outcome['success']
  assert 'cannot reach the model server' in outcome['message']
  assert 'connection refused' in outcome['message']
  assert 'after 3 attempts' in outcome['message'] and 'make serve' in outcome['message']
  assert time.time() - started < 5


class _Stub(http_stub.JsonHandler):
  """Answers from a script: a list of (status, body, delay) popped per request."""
  script = []
  seen = []

  def _answer(self):
    self.seen.append((self.command, self.path))
    status, body, delay = self.script.pop(0) if self.script else (200, {}, 0)
    time.sleep(delay)
    self.reply(body, status)

  do_GET = do_POST = _answer


@pytest.fixture
def stub():
  _Stub.script, _Stub.seen = [], []
  with http_stub.serving(_Stub) as (url, _):
    yield url, _Stub


_STATUS = {'model_version_status': [{'version': '7', 'state': 'AVAILABLE'},
                                    {'version': '6', 'state': 'END'}]}


def test_503_is_retried(ad, stub):
  url, handler = stub
  handler.script = [(200, _STATUS, 0), (503, {'error': 'busy'}, 0), (503, {'error': 'busy'}, 0),
                    (200, {'predictions': [0.25]}, 0)]
  outcome = client_lib.Client(url, retries=2, backoff=0.01).predict(ad)
  assert outcome['success'], outcome
  assert outcome['prediction'] == {PREDICTION: 0.25, client_lib.VERSION_KEY: '7'}
  assert [m for m, _ in handler.seen] == ['GET', 'POST', 'POST', 'POST']


def test_a_missing_value_with_a_missing_indicator_is_sent_as_nan(monkeypatch, stub):
  """features.py: an optional float without default is NaN when missing, and the request
  carries JSON's NaN, which TF Serving's REST API reads (requests' json= refused it)."""
  fake_models.use_features(monkeypatch, [
      features.Feature('code', features.CATEGORICAL, 'string', 'A code.'),
      features.Feature('count', features.NUMERIC, 'float', 'Often empty.', required=False),
      features.Feature('click', features.LABEL, 'int', 'Clicked.', value_range=(0, 1))])
  url, handler = stub
  bodies = []

  def answer(self):
    if self.command == 'POST':
      bodies.append(json.loads(self.rfile.read(int(self.headers['Content-Length']))))
    _Stub._answer(self)

  monkeypatch.setattr(_Stub, 'do_POST', answer)
  handler.script = [(200, _STATUS, 0), (200, {'predictions': [0.25]}, 0)]
  outcome = client_lib.Client(url).predict({'code': 'a'})
  assert outcome['success'], outcome
  [body] = bodies
  assert body['instances'][0]['code'] == 'a' and np.isnan(body['instances'][0]['count'])


def test_retries_are_bounded(ad, stub):
  url, handler = stub
  handler.script = [(200, _STATUS, 0)] + [(503, {'error': 'busy'}, 0)] * 5
  outcome = client_lib.Client(url, retries=1, backoff=0.01).predict(ad)
  assert outcome['message'] == (f'the model server at {url} is unavailable: busy, after 2 '
                                'attempts; is it running (make serve)?')
  assert len(handler.seen) == 3


def test_timeout_is_explained(ad, stub):
  url, handler = stub
  handler.script = [(200, _STATUS, 0), (200, {'predictions': [0.5]}, 1.0)]
  outcome = client_lib.Client(url, timeout=0.2).predict(ad)
  assert outcome['message'] == f'the model server at {url} did not answer within 0.2 s'


def test_server_errors_are_explained(ad, stub):
  url, handler = stub
  handler.script = [(404, {'error': 'Could not find any versions of model x'}, 0)]
  outcome = client_lib.Client(url, model_name='x').predict(ad)
  assert outcome['message'] == (f"the server at {url} does not serve model 'x': Could "
                                'not find any versions of model x')
  assert handler.seen == [('GET', '/v1/models/x')]


def _status(*available):
  return {'model_version_status': [{'version': str(v), 'state': 'AVAILABLE'} for v in available]}


def _metadata(version):
  return {'model_spec': {'name': MODEL, 'signature_name': '', 'version': str(version)}}


def _gone(version):  # TF Serving's answer for a version no longer loaded
  return 404, {'error': f'Servable not found for request: Specific({MODEL}, {version})'}, 0


# What the client asks for a version to predict on: the newest, or a label's.
_ASK = {None: (f'/v1/models/{MODEL}', _status),
        'stable': (f'/v1/models/{MODEL}/labels/stable/metadata', _metadata)}


@pytest.mark.parametrize('label', [None, 'stable'])
def test_the_version_asked_for_is_the_one_that_answers(ad, stub, label):
  url, handler = stub
  ask, answer = _ASK[label]
  handler.script = [(200, answer(7), 0), (200, {'predictions': [0.25]}, 0)]
  outcome = client_lib.Client(url, label=label).predict(ad)
  assert outcome['prediction'] == {PREDICTION: 0.25, client_lib.VERSION_KEY: '7'}
  assert handler.seen == [('GET', ask), ('POST', f'/v1/models/{MODEL}/versions/7:predict')]


@pytest.mark.parametrize('label', [None, 'stable'])
def test_a_version_gone_before_predict_is_asked_for_once_more(ad, stub, label):
  url, handler = stub
  ask, answer = _ASK[label]
  handler.script = [(200, answer(7), 0), _gone(7), (200, answer(8), 0),
                    (200, {'predictions': [0.5]}, 0)]
  outcome = client_lib.Client(url, label=label).predict(ad)
  assert outcome['prediction'] == {PREDICTION: 0.5, client_lib.VERSION_KEY: '8'}
  assert [path for _, path in handler.seen] == [
      ask, f'/v1/models/{MODEL}/versions/7:predict', ask, f'/v1/models/{MODEL}/versions/8:predict']


def test_a_version_gone_twice_is_an_error(ad, stub):
  url, handler = stub
  handler.script = [(200, _status(7), 0), _gone(7), (200, _status(8), 0), _gone(8)]
  outcome = client_lib.Client(url).predict(ad)
  assert outcome['message'] == (f"the server at {url} does not serve model '{MODEL}': "
                                f'Servable not found for request: Specific({MODEL}, 8)')
  assert len(handler.seen) == 4


def test_a_version_asked_for_by_number_is_not_looked_up(ad, stub):
  url, handler = stub
  handler.script = [_gone(7)]
  outcome = client_lib.Client(url, version=7).predict(ad)
  assert not outcome['success'] and f'Specific({MODEL}, 7)' in outcome['message']
  assert handler.seen == [('POST', f'/v1/models/{MODEL}/versions/7:predict')]


def test_during_a_swap_each_result_names_the_version_that_answered(tmp_path, raw_rows):
  """Against the stand-in server: while version 2 takes over from 1 and 1 is unloaded, the
  version each result names is the one whose answer it carries (a fake_serving version's
  answer tells its number)."""
  model_root = serving_layout.model_root(str(tmp_path / 'serving'))
  fake_serving.save_version(model_root, 1)
  row = raw_rows[0]
  ad = {k: v for k, v in row.items() if k != features.LABEL_KEY}
  results = []
  stop = threading.Event()

  def load(url):  # bounded: stops on the event or after 20,000 results
    client = client_lib.Client(url)
    while not stop.is_set() and len(results) < 20000:
      results.append(client.predict(ad))

  with server_process.model_server(str(tmp_path / 'serving'), MODEL,
                                   '--poll-seconds', '0.2') as server:
    threads = [threading.Thread(target=load, args=(server.url,)) for _ in range(3)]
    for thread in threads:
      thread.start()
    try:
      fake_serving.wait_for(lambda: len(results) > 20)
      # Saved aside and moved in whole, so the server never sees half a version.
      os.rename(fake_serving.save_version(str(tmp_path / 'aside'), 2),
                serving_layout.version_dir(model_root, 2))
      fake_serving.wait_for(lambda: fake_serving.version_states(server.url).get(1) == 'END')
      swapped = len(results)
      fake_serving.wait_for(lambda: len(results) > swapped + 20)
    finally:
      stop.set()
      for thread in threads:
        thread.join()
  failures = [r['message'] for r in results if not r['success']]
  assert not failures, failures[:3]
  reported = [int(r['prediction'][client_lib.VERSION_KEY]) for r in results]
  assert reported == [fake_serving.answered_version(r['prediction'][PREDICTION], row)
                      for r in results]
  assert reported[0] == 1 and reported[-1] == 2


def test_production_serving_imports_neither_the_stand_in_nor_the_pipeline():
  """serving/ outside serving/emulator/ is what production runs beside the tensorflow/serving
  image: it may not depend on the stand-in, nor on the pipeline and its components
  (dependencies point down)."""
  production = glob.glob(os.path.join(server_process.REPO_ROOT, 'serving', '*.py'))
  imported = {}
  for path in production:
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):  # `from serving import emulator` names both
        names = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
      else:
        continue
      imported.update({name: os.path.basename(path) for name in names})
  assert len(production) >= 6 and 'serving.client' in imported
  assert not {name: where for name, where in imported.items()
              if name.startswith(('serving.emulator', 'pipeline', 'components'))}


def test_predict_against_the_local_server(model_server, serving_model_dir, ad):
  from components import safe_pusher  # pylint: disable=g-import-not-at-top  (TFX, slow)
  server, model_dir = model_server
  version = 1 + max(filter(None, map(serving_layout.version_number, os.listdir(model_dir))))
  safe_pusher.push(serving_model_dir, model_dir, str(version))
  serving = f'Serving model {serving_layout.MODEL_NAME} version {version} from'
  fake_serving.wait_for(lambda: serving in ''.join(server.output))
  client = client_lib.Client(server.url)
  outcome = client.predict(ad)
  assert outcome['success'], outcome
  assert outcome['prediction'] == {
      PREDICTION: pytest.approx(fake_models.serving_predictions(serving_model_dir, [ad])[0],
                                rel=1e-5),
      client_lib.VERSION_KEY: str(version)}
  many = client.predict_many([ad, dict(ad, device='tv'), ad])
  assert [o['success'] for o in many] == [True, False, True]
  # The same ad twice: equal up to float summation order (the server may batch them apart).
  assert many[0]['prediction'] == dict(many[2]['prediction'], **{
      PREDICTION: pytest.approx(many[2]['prediction'][PREDICTION], rel=1e-5)})


def test_cli_one_ad(model_server, serving_model_dir, ad, tmp_path, capsys):
  server, _ = model_server
  image = features.image_feature().name
  (tmp_path / 'ad.json').write_text(json.dumps({k: v for k, v in ad.items() if k != image}))
  (tmp_path / 'creative.png').write_bytes(ad[image])
  code = predict.main(['--ad', str(tmp_path / 'ad.json'), '--image',
                       str(tmp_path / 'creative.png'), '--url', server.url])
  printed = json.loads(capsys.readouterr().out)
  assert code == 0 and printed['success']
  expected = fake_models.serving_predictions(serving_model_dir, [ad])[0]
  assert printed['prediction'][PREDICTION] == pytest.approx(expected, rel=1e-5)


def test_cli_one_ad_with_user_errors(tmp_path, capsys):
  image = ['--image', 'x.png'] if features.image_feature() else []
  code = predict.main(['--ad', str(tmp_path / 'missing.json'), *image])
  assert code == 1
  assert 'cannot read the ad from' in json.loads(capsys.readouterr().out)['message']
  if image:  # (without an image field, --ad alone is the usage)
    with pytest.raises(SystemExit):
      predict.main(['--ad', 'ad.json'])  # argparse explains the usage


def test_cli_csv(model_server, serving_model_dir, raw_rows, tmp_path):
  server, _ = model_server
  image = features.image_feature().name
  (tmp_path / 'images').mkdir()
  with open(tmp_path / 'ads.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, features.csv_columns())
    writer.writeheader()
    for i, row in enumerate(raw_rows[:5]):
      (tmp_path / 'images' / f'{i}.png').write_bytes(row[image])
      out = {k: v for k, v in row.items() if k != image}
      out[features.IMAGE_PATH_COLUMN] = f'images/{i}.png'
      writer.writerow(out)
    writer.writerow(dict(out, device='tv'))
    writer.writerow(dict(out, **{features.IMAGE_PATH_COLUMN: 'images/gone.png'}))
  code = predict.main(['--csv', str(tmp_path / 'ads.csv'), '--out', str(tmp_path / 'p.csv'),
                       '--url', server.url])
  assert code == 1
  with open(tmp_path / 'p.csv') as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == predict.output_columns()
  assert not any(r['error'] for r in rows[:5])
  np.testing.assert_allclose([float(r[PREDICTION]) for r in rows[:5]],
                             fake_models.serving_predictions(serving_model_dir, raw_rows[:5]),
                             rtol=1e-5)
  assert rows[5]['error'].startswith("line 7: invalid ad: device: 'tv' is not one of")
  assert rows[6]['error'] == "line 8: image 'images/gone.png' not found next to the CSV"
  assert [r['impression_id'] for r in rows[:5]] == [r['impression_id'] for r in raw_rows[:5]]


def test_cli_csv_without_the_needed_columns(tmp_path, capsys):
  (tmp_path / 'ads.csv').write_text('ad_id,hour\nad_1,3\n')
  assert predict.main(['--csv', str(tmp_path / 'ads.csv'), '--out', str(tmp_path / 'o.csv')]
                      ) == 1
  lacking = next(f.name for f in features.serving_features() if f.name not in ('ad_id', 'hour'))
  assert f'lacks the column(s) {lacking}' in json.loads(capsys.readouterr().out)['message']
  assert not os.path.exists(tmp_path / 'o.csv')


# Another log: other key and label, an integer-coded categorical, no image at all.
NO_IMAGE_AD = {'id': 'imp-1', 'site_category': 'news', 'hour': '3', 'price': '2.5'}


def _no_image_probability(ad):
  """fake_models.no_image_probability, by hand."""
  hour = int(ad['hour']) + int(ad.get('banner_pos') or 0)
  return ((hour + 1) / 50 + 0.3 * (ad['site_category'] == 'news') +
          0.1 * (ad.get('C1', '1005') in ('', '1005')) + float(ad['price']) / 1000)


@pytest.fixture
def no_image(monkeypatch):
  fake_models.use_features(monkeypatch, fake_models.NO_IMAGE_FEATURES)


@pytest.fixture(scope='module')
def no_image_server(tmp_path_factory):
  """The model server serving a fake model of NO_IMAGE_FEATURES as version 1."""
  root = tmp_path_factory.mktemp('no_image')
  with pytest.MonkeyPatch.context() as patch:
    fake_models.use_features(patch, fake_models.NO_IMAGE_FEATURES)
    fake_models.save_raw(serving_layout.version_dir(serving_layout.model_root(str(root)), 1),
                         fake_models.no_image_probability)
  with server_process.model_server(str(root), serving_layout.MODEL_NAME,
                                   '--poll-seconds', '0.2') as server:
    yield server.url


def test_validation_without_an_image_field(no_image):
  instance, problems = client_lib.validate(NO_IMAGE_AD)
  assert not problems
  assert instance == {'id': 'imp-1', 'site_category': 'news', 'C1': '1005', 'hour': 3,
                      'banner_pos': 0, 'price': 2.5}
  problems = _problems(dict(NO_IMAGE_AD, C1=1005, image=png_bytes((0, 0, 0)), hour=24,
                            site_category=None))
  assert problems == ("unknown field 'image' (the fields are id, site_category, C1, hour, "
                      'banner_pos, price); site_category is missing (Category of the site.); '
                      'C1: 1005 is not text; hour: 24 is outside [0, 23]')


def test_cli_csv_without_an_image_field(no_image, no_image_server, tmp_path):
  ads = [dict(NO_IMAGE_AD, id=f'imp-{i}', hour=str(i), C1=code, banner_pos=str(i % 3))
         for i, code in enumerate(['1005', '1002', '', '7'])]
  ads.append(dict(NO_IMAGE_AD, id='imp-bad', hour='30'))
  with open(tmp_path / 'ads.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, features.csv_columns())
    writer.writeheader()
    writer.writerows(dict(ad, click='0') for ad in ads)
  code = predict.main(['--csv', str(tmp_path / 'ads.csv'), '--out', str(tmp_path / 'p.csv'),
                       '--url', no_image_server])
  assert code == 1
  with open(tmp_path / 'p.csv') as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ['id', PREDICTION, client_lib.VERSION_KEY, 'error']
  assert [r['id'] for r in rows] == [ad['id'] for ad in ads]
  np.testing.assert_allclose([float(r[PREDICTION]) for r in rows[:4]],
                             [_no_image_probability(ad) for ad in ads[:4]], rtol=1e-6)
  assert [r[client_lib.VERSION_KEY] for r in rows[:4]] == ['1'] * 4
  assert rows[4]['error'] == 'line 6: invalid ad: hour: 30 is outside [0, 23]'


def test_cli_one_ad_without_an_image_field(no_image, no_image_server, tmp_path, capsys):
  (tmp_path / 'ad.json').write_text(json.dumps(NO_IMAGE_AD))
  code = predict.main(['--ad', str(tmp_path / 'ad.json'), '--url', no_image_server])
  printed = json.loads(capsys.readouterr().out)
  assert code == 0, printed
  assert printed['prediction'][PREDICTION] == pytest.approx(_no_image_probability(NO_IMAGE_AD))
  with pytest.raises(SystemExit):  # argparse explains there is no image to give
    predict.main(['--ad', str(tmp_path / 'ad.json'), '--image', 'creative.png'])
  assert 'features.py has no image field' in capsys.readouterr().err
