"""Creatives whose headers claim huge sizes: the Transform graph refuses them before decoding
(so the serving signatures do, in TF Serving too), and the model server answers 400."""
import base64
import io
import json
import math
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
from PIL import Image
import pytest
import requests
import tensorflow as tf

from models import features
from models import preprocessing
from models import serving_layout
from serving.emulator import server_process
from tests import fake_serving
from tests.conftest import encoded_image
from tests.conftest import needs_image

LIMIT = preprocessing.MAX_IMAGE_PIXELS
# Over LIMIT, under what TF's own decoders refuse (a PNG of 2^29 pixels): decoded unguarded,
# this PNG would take 1.5 GB (uint8, then float32 RGB).
BOMB_SIDE = 10_000
TOO_BIG = f'image is {BOMB_SIDE} x {BOMB_SIDE} pixels; the most accepted is {LIMIT:,}'


def _chunk(kind: bytes, data: bytes) -> bytes:
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def png(width: int, height: int, rows=None) -> bytes:
  """A valid 8-bit grayscale PNG stream of zeros; its IDAT holds `rows` rows (all of them by
  default: a whole image, about 100 KB for the bomb, that decodes unless refused)."""
  header = struct.pack('>IIBBBBB', width, height, 8, 0, 0, 0, 0)
  compress = zlib.compressobj(9)
  data = b''.join(compress.compress(bytes(width + 1))  # filter byte 0, then the pixels
                  for _ in range(height if rows is None else rows))
  return (b'\x89PNG\r\n\x1a\n' + _chunk(b'IHDR', header) + _chunk(b'IDAT', data + compress.flush())
          + _chunk(b'IEND', b''))


def _animated_gif() -> bytes:
  frames = [Image.new('RGB', (30, 20), (200, 30, 30)), Image.new('RGB', (30, 20), (0, 0, 255))]
  buffer = io.BytesIO()
  frames[0].save(buffer, format='GIF', save_all=True, append_images=frames[1:])
  return buffer.getvalue()


def _jpeg_claiming(width: int, height: int) -> bytes:
  """A small JPEG whose frame header (SOF0) says width x height."""
  data = bytearray(encoded_image('JPEG'))
  sof = data.index(b'\xff\xc0')
  data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
  return bytes(data)


def _bmp_claiming(width: int, height: int) -> bytes:
  data = bytearray(encoded_image('BMP'))
  data[18:26] = struct.pack('<ii', width, -height)  # negative height: rows top-down
  return bytes(data)


def _gif(frames, screen=(8, 8), sub_blocks=(1,)) -> bytes:
  """A GIF with a global color table, a graphic control extension and a frame of each
  (width, height); each frame's LZW data is sub-blocks of these lengths (zeros: decoding
  would fail on them, later)."""
  gif = b'GIF89a' + struct.pack('<HHBBB', *screen, 0x80, 0, 0) + bytes(6)
  data = b''.join(bytes([length]) + bytes(length) for length in sub_blocks) + b'\x00'
  for width, height in frames:
    gif += b'\x21\xf9\x04' + bytes(4) + b'\x00'
    gif += b'\x2c' + struct.pack('<HHHHB', 0, 0, width, height, 0) + b'\x02' + data
  return gif + b'\x3b'


decode_images = tf.function(preprocessing.decode_images)  # in a graph, as Transform runs it


def _error(image: bytes) -> str:
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    decode_images(tf.constant([image]))
  return raised.value.message


def _refused_for_size(image: bytes) -> bool:
  return 'the most accepted' in _error(image)


@pytest.mark.parametrize('image,color', [
    (encoded_image('PNG'), (200, 30, 30)), (encoded_image('JPEG', size=(700, 300)), (200, 30, 30)),
    (encoded_image('GIF', color=(0, 0, 255)), (0, 0, 255)), (encoded_image('BMP'), (200, 30, 30)),
    (encoded_image('PNG', size=(1, 1)), (200, 30, 30)), (_animated_gif(), (200, 30, 30)),
], ids=['png', 'jpeg', 'gif', 'bmp', '1x1-png', 'animated-gif'])
def test_images_under_the_limit_decode(image, color):
  decoded = decode_images(tf.constant([image, image])).numpy()
  assert decoded.shape == (2, features.IMAGE_SIZE, features.IMAGE_SIZE, 3)
  np.testing.assert_allclose(decoded[1, 5, 7], np.array(color) / 255, atol=0.02)


@pytest.mark.parametrize('image', [
    png(BOMB_SIDE, BOMB_SIDE, rows=2), _jpeg_claiming(BOMB_SIDE, BOMB_SIDE),
    _bmp_claiming(BOMB_SIDE, BOMB_SIDE),
    _gif([(BOMB_SIDE, BOMB_SIDE)], screen=(8, 8)),  # decode_image sizes a GIF by its frames
], ids=['png', 'jpeg', 'bmp', 'gif'])
def test_a_header_over_the_limit_is_refused_before_decoding(image):
  assert TOO_BIG in _error(image)


def test_gif_frames_count_together():
  """giflib holds every frame at once, though decode_image returns only the first."""
  side, fit = 4096, preprocessing.MAX_GIF_FRAMES_PIXELS // LIMIT  # frames of the largest size
  too_many = (f'image is a GIF of {side} x {side} pixels with {(fit + 1) * side * side} in '
              'all its frames; the most accepted in all frames is')
  assert too_many in _error(_gif([(side, side)] * (fit + 1)))
  # Under the limit the check passes and decoding fails on the one-byte LZW data instead.
  assert not _refused_for_size(_gif([(side, side)] * fit))
  # Long runs of full sub-blocks, then odd ones, between the frames are skipped exactly.
  data = [255] * 200 + [17, 1] + [255] * 63 + [9]
  assert too_many in _error(_gif([(side, side)] * (fit + 1), sub_blocks=data))


def test_a_gif_too_long_to_size_is_refused_quickly():
  """Sub-blocks of ever-changing lengths make the walk step through them one by one."""
  gif = _gif([(8, 8)], sub_blocks=[1, 2] * 100_000)
  start = time.time()
  assert 'image is a GIF with too many blocks to size' in _error(gif)
  assert time.time() - start < 2
  # Under the bound, the same blocks are sized, and the GIF decodes (zeros: color 0).
  decoded = decode_images(tf.constant([_gif([(8, 8)], sub_blocks=[1, 2] * 4000)]))
  assert decoded.shape == (1, features.IMAGE_SIZE, features.IMAGE_SIZE, 3)


_SIDE = math.isqrt(LIMIT)


@pytest.mark.parametrize('width,height,refused', [
    (_SIDE, LIMIT // _SIDE, False), (_SIDE + 1, LIMIT // _SIDE, True),
    (LIMIT // 2, 2, False), (LIMIT // 2 + 1, 2, True),
    (2**32 - 1, 2**32 - 1, True), (2**32 - 1, 0, False)])  # the most a PNG can say
def test_the_limit_is_on_pixels(width, height, refused):
  # No rows: past the check, decoding fails on the missing rows, not on the size.
  assert _refused_for_size(png(width, height, rows=0)) == refused


_MEASURE = '''
import json, resource, sys, time
import tensorflow as tf
from models import preprocessing
decode = tf.function(preprocessing.decode_images)
images = [open(path, 'rb').read() for path in sys.argv[1:]]
decode(tf.constant(images[:1]))  # warms up: what TensorFlow itself takes is not counted
peak, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
try:
  decode(tf.constant(images[1:]))
  error = None
except tf.errors.InvalidArgumentError as e:
  error = e.message
print(json.dumps({'error': error, 'seconds': time.time() - start,
                  'growth_mb': (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024}))
'''


def test_a_png_bomb_is_refused_quickly_without_allocating(tmp_path):
  """In a fresh process, so that its peak memory is this decode's."""
  paths = [tmp_path / 'normal.png', tmp_path / 'bomb.png']
  paths[0].write_bytes(encoded_image('PNG'))
  paths[1].write_bytes(png(BOMB_SIDE, BOMB_SIDE))
  env = dict(os.environ, PYTHONPATH=server_process.REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run([sys.executable, '-c', _MEASURE, *map(str, paths)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
  measured = json.loads(result.stdout.splitlines()[-1])
  assert measured['error'] and TOO_BIG in measured['error']
  assert measured['growth_mb'] < 500, measured
  assert measured['seconds'] < 5, measured


def _predict(url: str, row: dict, image: bytes) -> requests.Response:
  instance = fake_serving.instance(row)
  instance[features.image_feature().name] = {'b64': base64.b64encode(image).decode()}
  return requests.post(f'{url}/v1/models/{serving_layout.MODEL_NAME}:predict',
                       json={'instances': [instance]}, timeout=60)


@pytest.mark.sample_fields
@needs_image
@pytest.mark.parametrize('bomb', [
    lambda: png(BOMB_SIDE, BOMB_SIDE), lambda: _jpeg_claiming(BOMB_SIDE, BOMB_SIDE),
    lambda: _gif([(BOMB_SIDE, BOMB_SIDE)]),
], ids=['png', 'jpeg', 'gif'])
def test_the_model_server_answers_400_and_then_serves(model_server, raw_rows, bomb):
  url = model_server[0].url
  response = _predict(url, raw_rows[0], bomb())
  assert response.status_code == 400, response.text
  assert response.headers['Content-Type'] == 'application/json'
  assert TOO_BIG in response.json()['error']
  assert _predict(url, raw_rows[1], raw_rows[1][features.image_feature().name]).status_code == 200
