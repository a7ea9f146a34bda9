"""The client and the predict CLI: validation against features.py, errors in words, retries."""
import base64
import csv
import http.server
import io
import json
import os
import socket
import threading
import time

from PIL import Image
import pytest

from models import features
from serving import client as client_lib
from serving import predict
from tests.conftest import png_bytes


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


def _gif() -> bytes:
  buffer = io.BytesIO()
  Image.new('RGB', (8, 8)).save(buffer, format='GIF')
  return buffer.getvalue()


@pytest.mark.parametrize('change,problem', [
    ({'advertiser': None}, 'advertiser is missing'),
    ({'hour': 25}, 'hour must be between 0 and 23, got 25'),
    ({'hour': 3.5}, 'hour must be a whole number, got 3.5'),
    ({'hour': 'noon'}, "hour must be a whole number, got 'noon'"),
    ({'bid_price': 0}, 'bid_price must be between 0.01 and 50, got 0'),
    ({'bid_price': True}, 'bid_price must be a number, got True'),
    ({'bid_price': float('nan')}, 'bid_price must be a number, got nan'),
    ({'device': 'phone'}, "device must be one of mobile, desktop, tablet; got 'phone'"),
    ({'category': 5}, 'category must be text, got 5'),
    ({'clicked': 1}, "unknown field 'clicked'"),
    ({'image': None}, 'image is missing'),
    ({'image': b'not an image'}, 'image is not a readable PNG or JPEG image'),
    ({'image': png_bytes((0, 0, 0))[:60]}, 'image is not a readable PNG or JPEG image'),
    ({'image': _gif()}, 'image must be a PNG or JPEG image, got GIF'),
    ({'image': 'creative.png'}, 'image must be the bytes of a PNG or JPEG file'),
])
def test_each_invalid_field_is_named(ad, change, problem):
  ad.update(change)
  assert problem in _problems(ad)


def test_all_problems_are_reported_at_once(ad):
  problems = _problems(dict(ad, hour=99, device='tv'))
  assert 'hour must be' in problems and 'device must be' in problems


def test_not_an_object():
  assert _problems(['ad']) == 'an ad must be an object of field: value pairs, not list'


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_invalid_ad_is_never_sent(ad):
  outcome = client_lib.Client(f'http://127.0.0.1:{_free_port()}').predict(dict(ad, hour=-1))
  assert outcome == {'success': False, 'prediction': None,
                     'message': 'invalid ad: hour must be between 0 and 23, got -1'}


def test_unreachable_server_is_retried_then_explained(ad):
  started = time.time()
  outcome = client_lib.Client(f'http://127.0.0.1:{_free_port()}', retries=2,
                              backoff=0.01).predict(ad)
  assert not outcome['success']
  assert 'cannot reach the model server' in outcome['message']
  assert 'connection refused' in outcome['message']
  assert 'after 3 attempts' in outcome['message'] and 'make serve' in outcome['message']
  assert time.time() - started < 5


class _Stub(http.server.BaseHTTPRequestHandler):
  """Answers from a script: a list of (status, body, delay) popped per request."""
  script = []
  seen = []

  def _answer(self):
    self.seen.append((self.command, self.path))
    status, body, delay = self.script.pop(0) if self.script else (200, {}, 0)
    time.sleep(delay)
    data = json.dumps(body).encode()
    self.send_response(status)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  do_GET = do_POST = _answer

  def log_message(self, *args):
    pass


@pytest.fixture
def stub():
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Stub)
  threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
  _Stub.script, _Stub.seen = [], []
  yield f'http://127.0.0.1:{server.server_address[1]}', _Stub
  server.shutdown()


_STATUS = {'model_version_status': [{'version': '7', 'state': 'AVAILABLE'},
                                    {'version': '6', 'state': 'END'}]}


def test_503_is_retried(ad, stub):
  url, handler = stub
  handler.script = [(200, _STATUS, 0), (503, {'error': 'busy'}, 0), (503, {'error': 'busy'}, 0),
                    (200, {'predictions': [0.25]}, 0)]
  outcome = client_lib.Client(url, retries=2, backoff=0.01).predict(ad)
  assert outcome['success'], outcome
  assert outcome['prediction'] == {'click_probability': 0.25, 'model_version': '7'}
  assert [m for m, _ in handler.seen] == ['GET', 'POST', 'POST', 'POST']


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
  handler.script = [(404, {'error': 'Could not find any versions of model adclick'}, 0)]
  outcome = client_lib.Client(url).predict(ad)
  assert outcome['message'] == (f"the server at {url} does not serve model 'adclick': Could "
                                'not find any versions of model adclick')


def test_predict_against_the_local_server(model_server, ad):
  server, _ = model_server
  client = client_lib.Client(server.url)
  outcome = client.predict(ad)
  assert outcome['success'], outcome
  assert 0 < outcome['prediction']['click_probability'] < 1
  assert outcome['prediction']['model_version'] == client.serving_version()
  many = client.predict_many([ad, dict(ad, device='tv'), ad])
  assert [o['success'] for o in many] == [True, False, True]
  assert many[0]['prediction'] == many[2]['prediction']


def test_cli_one_ad(model_server, ad, tmp_path, capsys):
  server, _ = model_server
  image = ad.pop('image')
  (tmp_path / 'ad.json').write_text(json.dumps(ad))
  (tmp_path / 'creative.png').write_bytes(image)
  code = predict.main(['--ad', str(tmp_path / 'ad.json'), '--image',
                       str(tmp_path / 'creative.png'), '--url', server.url])
  printed = json.loads(capsys.readouterr().out)
  assert code == 0 and printed['success']
  assert 0 < printed['prediction']['click_probability'] < 1


def test_cli_one_ad_with_user_errors(tmp_path, capsys):
  code = predict.main(['--ad', str(tmp_path / 'missing.json'), '--image', 'x.png'])
  assert code == 1
  assert 'cannot read the ad from' in json.loads(capsys.readouterr().out)['message']
  with pytest.raises(SystemExit):
    predict.main(['--ad', 'ad.json'])  # argparse explains the usage


def test_cli_csv(model_server, raw_rows, tmp_path):
  server, _ = model_server
  columns = features.csv_columns()
  (tmp_path / 'images').mkdir()
  with open(tmp_path / 'ads.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    for i, row in enumerate(raw_rows[:5]):
      (tmp_path / 'images' / f'{i}.png').write_bytes(row['image'])
      out = {k: v for k, v in row.items() if k != 'image'}
      out[features.IMAGE_PATH_COLUMN] = f'images/{i}.png'
      writer.writerow(out)
    writer.writerow(dict(out, device='tv'))
    writer.writerow(dict(out, image_path='images/gone.png'))
  code = predict.main(['--csv', str(tmp_path / 'ads.csv'), '--out', str(tmp_path / 'p.csv'),
                       '--url', server.url])
  assert code == 1
  with open(tmp_path / 'p.csv') as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == list(predict.OUTPUT_COLUMNS)
  assert all(0 < float(r['click_probability']) < 1 and not r['error'] for r in rows[:5])
  assert rows[5]['error'].startswith('line 7: invalid ad: device must be one of')
  assert rows[6]['error'] == "line 8: image 'images/gone.png' not found next to the CSV"
  assert rows[0]['impression_id'] == raw_rows[0]['impression_id']


def test_cli_csv_without_the_needed_columns(tmp_path, capsys):
  (tmp_path / 'ads.csv').write_text('ad_id,hour\nad_1,3\n')
  assert predict.main(['--csv', str(tmp_path / 'ads.csv'), '--out', str(tmp_path / 'o.csv')]
                      ) == 1
  assert 'lacks the column(s) impression_id' in json.loads(capsys.readouterr().out)['message']
  assert not os.path.exists(tmp_path / 'o.csv')
