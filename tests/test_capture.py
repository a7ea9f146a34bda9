"""Request capture: a clean close writes every accepted row, a full buffer drops and counts
instead of blocking, sampling keeps its share, the server's columnar inputs and gs:// work."""
import csv
import io
import os
import threading
import time

from apache_beam.io.filesystems import FileSystems
import numpy as np
import pytest

from models import features
from serving import capture as capture_lib
from serving import client as client_lib
from tests import gcs_emulator


def _instances(raw_rows, n):
  """What the client sends: validated instances (image as b64), n of them."""
  rows = [raw_rows[i % len(raw_rows)] for i in range(n)]
  result = []
  for i, row in enumerate(rows):
    ad = {k: v for k, v in row.items() if k != features.LABEL_KEY}
    instance, problems = client_lib.validate(dict(ad, impression_id=f'imp-{i}'))
    assert not problems
    result.append(instance)
  return result


def _captured(root, span):
  rows = []
  for match in FileSystems.match([capture_lib.file_pattern(root, span)])[0].metadata_list:
    with FileSystems.open(match.path) as f:
      reader = csv.DictReader(io.TextIOWrapper(f, encoding='utf-8'))
      assert reader.fieldnames == capture_lib.columns()
      rows += list(reader)
  return rows


def test_clean_close_writes_every_accepted_row_in_the_training_csv_columns(tmp_path, raw_rows):
  capture = capture_lib.Capture(str(tmp_path), span=3, flush_rows=70, flush_seconds=30)
  instances = _instances(raw_rows, 500)
  for start in range(0, 500, 64):
    chunk = instances[start:start + 64]
    capture.record(chunk, [0.01 * (i % 50) for i in range(start, start + len(chunk))], '17')
  counts = capture.close()
  assert counts == {'accepted': 500, 'dropped': 0, 'written': 500}
  rows = _captured(str(tmp_path), 3)
  assert sorted(int(r['impression_id'][4:]) for r in rows) == list(range(500))
  first = next(r for r in rows if r['impression_id'] == 'imp-1')
  assert first['category'] == raw_rows[1]['category']
  assert float(first['bid_price']) == pytest.approx(raw_rows[1]['bid_price'])
  assert first[capture_lib.PREDICTION_COLUMN] == '0.01' and first['model_version'] == '17'
  assert first[features.IMAGE_PATH_COLUMN] == ''  # creatives are not kept
  assert len(FileSystems.match([capture_lib.file_pattern(str(tmp_path), 3)])[0]
             .metadata_list) == 8  # one file per 70 rows
  counts_file = FileSystems.match([capture_lib.counts_pattern(str(tmp_path), 3)])[0]
  assert len(counts_file.metadata_list) == 1


def test_a_full_buffer_drops_and_counts_instead_of_blocking(tmp_path, raw_rows, monkeypatch):
  release = threading.Event()
  real_write = capture_lib.Capture._write
  monkeypatch.setattr(capture_lib.Capture, '_write',
                      lambda self, path, data: (release.wait(), real_write(self, path, data)))
  capture = capture_lib.Capture(str(tmp_path), span=1, buffer_size=10, flush_rows=5)
  instances = _instances(raw_rows, 100)
  started = time.perf_counter()
  for instance in instances:
    capture.record([instance], [0.5], '1')
  recording = time.perf_counter() - started
  counts = capture.counts()
  # The writer holds at most one file's rows, the queue at most 10: the rest is dropped.
  assert counts['accepted'] + counts['dropped'] == 100 and counts['dropped'] >= 85
  assert recording < 1.0, f'record() blocked for {recording:.2f} s'
  release.set()
  counts = capture.close()
  assert counts['written'] == counts['accepted']
  assert len(_captured(str(tmp_path), 1)) == counts['accepted']


def test_sampling_keeps_its_share_and_columnar_inputs_are_rows(tmp_path):
  capture = capture_lib.Capture(str(tmp_path), span=2, sample_rate=0.25, seed=1)
  n = 2000
  # The model server's parsed request: one array per field, bytes for text.
  inputs = {f.name: np.array([f.default if f.default is not None else b'x'] * n)
            for f in features.serving_features()}
  inputs['category'] = np.array([b'food'] * n)
  capture.record(inputs, np.full((n, 1), 0.125), 5)
  counts = capture.close()
  assert 0.2 * n < counts['written'] < 0.3 * n and counts['dropped'] == 0
  rows = _captured(str(tmp_path), 2)
  assert len(rows) == counts['written']
  assert {r['category'] for r in rows} == {'food'}
  assert {r[capture_lib.PREDICTION_COLUMN] for r in rows} == {'0.125'}


def test_unreadable_requests_and_failed_writes_are_counted_not_raised(tmp_path, monkeypatch):
  capture = capture_lib.Capture(str(tmp_path), span=1)
  capture.record(None, [0.1], '1')  # not instances at all
  monkeypatch.setattr(capture_lib.Capture, '_write_file', lambda self, text: 1 / 0)
  capture.record([{'category': 'food'}], [0.1], '1')
  counts = capture.close()
  assert counts == {'accepted': 1, 'dropped': 2, 'written': 0}


def test_capture_to_gcs(raw_rows):
  with gcs_emulator.running('capture-test'):
    root = 'gs://capture-test/capture'
    capture = capture_lib.Capture(root, span=4, flush_rows=30)
    capture.record(_instances(raw_rows, 50), [0.2] * 50, '9')
    assert capture.close()['written'] == 50
    assert len(_captured(root, 4)) == 50


def test_client_answers_from_the_model_server_are_captured_end_to_end(model_server, raw_rows,
                                                                      tmp_path):
  """The client's capture: the instances it sent and the answers it got, in files the
  monitoring check reads with TFDV, typed by the schema."""
  import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
  from monitoring import fields  # pylint: disable=import-outside-toplevel
  from schema import generate as schema_lib  # pylint: disable=import-outside-toplevel
  server, _ = model_server
  capture = capture_lib.Capture(str(tmp_path), span=7, flush_rows=10)
  client = client_lib.Client(server.url, capture=capture)
  ads = [{k: v for k, v in row.items() if k != features.LABEL_KEY} for row in raw_rows[:20]]
  ads.append(dict(ads[0], device='toaster'))  # invalid: answered locally, never captured
  results = client.predict_many(ads)
  assert [r['success'] for r in results] == [True] * 20 + [False]
  assert capture.close()['written'] == 20
  rows = _captured(str(tmp_path), 7)
  assert {r['model_version'] for r in rows} == {'1'}
  assert sorted(float(r[capture_lib.PREDICTION_COLUMN]) for r in rows) == pytest.approx(
      sorted(r['prediction'][capture_lib.PREDICTION_COLUMN] for r in results[:20]), rel=1e-5)
  stats = fields.traffic_statistics(capture_lib.file_pattern(str(tmp_path), 7),
                                    schema_lib.build_schema())
  view = tfdv.get_feature_stats(stats.datasets[0], tfdv.FeaturePath(['bid_price']))
  assert view.num_stats.common_stats.num_non_missing == 20
  assert view.num_stats.max == pytest.approx(max(ad['bid_price'] for ad in ads), rel=1e-5)


def test_the_model_server_captures_what_it_answers_and_flushes_on_a_clean_stop(
    model_server, raw_rows, tmp_path):
  """`--capture-root`: every :predict answer of serving_default (sample rate 1) is written
  by the time the server has stopped on SIGTERM; other signatures are not captured."""
  from models import serving_layout  # pylint: disable=import-outside-toplevel
  from serving import server_process  # pylint: disable=import-outside-toplevel
  _, model_dir = model_server
  root = str(tmp_path / 'capture')
  ads = [{k: v for k, v in row.items() if k != features.LABEL_KEY} for row in raw_rows[:30]]
  with server_process.model_server(
      os.path.dirname(model_dir), serving_layout.MODEL_NAME, '--capture-root', root,
      '--capture-span', '3', '--capture-sample-rate', '1') as server:
    results = client_lib.Client(server.url).predict_many(ads)
    assert all(r['success'] for r in results)
  rows = _captured(root, 3)  # the server has stopped: what it accepted is on disk
  assert sorted(r[features.row_id_feature().name] for r in rows) == sorted(
      ad[features.row_id_feature().name] for ad in ads)
  assert sorted(float(r[capture_lib.PREDICTION_COLUMN]) for r in rows) == pytest.approx(
      sorted(r['prediction'][capture_lib.PREDICTION_COLUMN] for r in results), rel=1e-5)
