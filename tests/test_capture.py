"""Request capture: a clean close writes every accepted row, a full buffer drops and counts
instead of blocking, sampling keeps its share, the server's columnar inputs and gs:// work; a
process killed with kill -9 loses at most what it held in memory, and that loss is counted
when the next capture starts; a process that exits without close() still writes its rows."""
import contextlib
import csv
import glob
import io
import os
import queue
import subprocess
import sys
import threading
import time

from apache_beam.io.filesystems import FileSystems
import numpy as np
import pytest

from models import features
from serving import capture as capture_lib
from serving import client as client_lib
from monitoring import check
from tests import gcs_emulator
from tests.conftest import REPO


# A text field of features.py that tells captured rows apart (the sample log's impression_id).
ID = next(f.name for f in features.serving_features() if f.dtype == 'string')


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
  real_append = capture_lib._Journal.append  # pylint: disable=protected-access
  monkeypatch.setattr(capture_lib._Journal, 'append',  # pylint: disable=protected-access
                      lambda self, data, rows: (release.wait(), real_append(self, data, rows)))
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
  inputs[ID] = np.array([b'food'] * n)
  capture.record(inputs, np.full((n, 1), 0.125), 5)
  counts = capture.close()
  assert 0.2 * n < counts['written'] < 0.3 * n and counts['dropped'] == 0
  rows = _captured(str(tmp_path), 2)
  assert len(rows) == counts['written']
  assert {r[ID] for r in rows} == {'food'}
  assert {r[capture_lib.PREDICTION_COLUMN] for r in rows} == {'0.125'}


def test_unreadable_requests_and_failed_writes_are_counted_not_raised(tmp_path, monkeypatch):
  capture = capture_lib.Capture(str(tmp_path), span=1)
  capture.record(None, [0.1], '1')  # not instances at all
  monkeypatch.setattr(capture_lib._Journal, 'publish',  # pylint: disable=protected-access
                      lambda self: 1 / 0)  # the store refuses the file
  capture.record([{ID: 'food'}], [0.1], '1')
  counts = capture.close()
  assert counts == {'accepted': 1, 'dropped': 2, 'written': 0}


def test_capture_to_gcs(raw_rows, tmp_path):
  with gcs_emulator.running('capture-test'):
    root = 'gs://capture-test/capture'
    capture = capture_lib.Capture(root, span=4, flush_rows=30, journal_dir=str(tmp_path))
    capture.record(_instances(raw_rows, 50), [0.2] * 50, '9')
    assert capture.close()['written'] == 50
    assert len(_captured(root, 4)) == 50


# Captures rows one by one and prints how many it has accepted after each, until killed.
# `stall`: a test stand-in for a disk that stops answering after the first append, so that many
# rows are still in memory when the process is killed.
_RECORDER = """
import itertools, sys, threading, time
from serving import capture as capture_lib
root, journal_dir, mode, flush_rows, field = sys.argv[1:]
if mode == 'stall':
  real_append, calls = capture_lib._Journal.append, []
  def append(self, data, rows):
    calls.append(rows)
    if len(calls) > 1:
      threading.Event().wait()
    real_append(self, data, rows)
  capture_lib._Journal.append = append
capture = capture_lib.Capture(root, span=2, buffer_size=20, sync_rows=5,
                              flush_rows=int(flush_rows), flush_seconds=3600,
                              journal_dir=journal_dir)
for i in itertools.count():
  capture.record([{field: f'imp-{i}'}], [0.5], '1')
  print(capture.counts()['accepted'], flush=True)
  time.sleep(0.001)
"""
_IN_MEMORY = 20 + 5  # buffer_size + sync_rows: the most rows the recorder holds in memory


def _python(*args, **kwargs):
  return subprocess.Popen([sys.executable, *args], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), text=True, **kwargs)


def _kill_9_while_recording(root: str, journal_dir: str, mode: str, flush_rows: int,
                            rows: int) -> int:
  """Runs _RECORDER until it has recorded `rows` rows, kills it with SIGKILL and returns the
  last count of accepted rows it printed."""
  recorder = _python('-c', _RECORDER, root, journal_dir, mode, str(flush_rows), ID,
                     stdout=subprocess.PIPE)
  try:
    printed = [recorder.stdout.readline() for _ in range(rows)]
    assert printed[-1], 'the recorder stopped by itself'
  finally:
    recorder.kill()
    recorder.wait()
  printed += recorder.stdout.read().split()
  recorder.stdout.close()
  return int(printed[-1])


@pytest.mark.parametrize('store, mode', [('local', 'keep-up'), ('local', 'stall'),
                                         ('gs', 'keep-up')])
def test_kill_9_loses_at_most_what_was_in_memory_and_the_next_start_counts_it(
    tmp_path, store, mode):
  journal_dir = str(tmp_path / 'journal')
  root = 'gs://capture-kill/capture' if store == 'gs' else str(tmp_path / 'capture')
  # 150 rows: on a local root one capture file of 100 is published, the rest is only in the
  # journal; on gs:// (no store is running yet) all of them are only in the journal.
  published = 100 if store == 'local' else 0
  printed = _kill_9_while_recording(root, journal_dir, mode, published or 1000, rows=150)
  (journal,) = glob.glob(os.path.join(capture_lib.journal_root(root, journal_dir), 'span-2',
                                      f'{capture_lib.JOURNAL_PREFIX}*{capture_lib.JOURNAL_SUFFIX}'))
  with open(journal, 'ab') as f:
    f.write(b'imp-cut-short,foo')  # a write that the kill cut short: never published
  with gcs_emulator.running('capture-kill') if store == 'gs' else contextlib.nullcontext():
    after = capture_lib.Capture(root, span=2, journal_dir=journal_dir)
    assert after.close() == {'accepted': 0, 'dropped': 0, 'written': 0}
    (dead,) = after.recovered
    ids = sorted(int(r[ID][4:]) for r in _captured(root, 2))
    # What reached the journal, each row once (a writer that fell behind dropped, and counted,
    # some rows: ids may have gaps).
    assert len(set(ids)) == len(ids) == dead['written']
    assert dead['recovered'] == dead['written'] - (published if mode == 'keep-up' else 0)
    assert dead['accepted'] in (printed, printed + 1)  # the last record() may not have printed
    assert dead['written'] + dead['lost'] == dead['accepted']
    assert dead['lost'] <= _IN_MEMORY
    if mode == 'stall':
      assert dead['lost'] > 0 and dead['dropped'] > 0
    assert check.capture_losses(root, 2) == (dead['dropped'], dead['lost'])
  assert not glob.glob(os.path.join(capture_lib.journal_root(root, journal_dir), 'span-2',
                                    f'{capture_lib.JOURNAL_PREFIX}*'))  # nothing left over


def test_a_kill_during_the_first_write_publishes_no_file_and_counts_the_row(tmp_path):
  root = str(tmp_path)
  # The recorder kills itself in the middle of its first journal write (header written, the
  # row not yet).
  code = ('import os, sys\nfrom serving import capture\n'
          'def append(self, data, rows):\n'
          '  with open(self.path, "w") as f:\n'
          '    f.write(",".join(capture.columns()) + "\\n")\n'
          '  os.kill(os.getpid(), 9)\n'
          'capture._Journal.append = append\n'
          'c = capture.Capture(sys.argv[1], span=1)\n'
          f'c.record([{{{ID!r}: "imp-0"}}], [0.5], "1")\n'
          'c.close()\n')
  assert _python('-c', code, root).wait() == -9
  after = capture_lib.Capture(root, span=1)
  after.close()
  (dead,) = after.recovered
  assert (dead['accepted'], dead['written'], dead['lost']) == (1, 0, 1)
  assert not glob.glob(capture_lib.file_pattern(root, 1))  # no empty or header-only file


def test_the_journal_is_fsynced_every_sync_rows_rows_or_sync_seconds(tmp_path, monkeypatch):
  synced = queue.Queue()  # (rows in the journal file when it was fsynced)
  real_fsync = os.fsync

  def fsync(fd):
    real_fsync(fd)
    path = os.readlink(f'/proc/self/fd/{fd}')
    if path.endswith(capture_lib.JOURNAL_SUFFIX):
      with open(path) as f:
        synced.put(len(f.readlines()) - 1)

  monkeypatch.setattr(os, 'fsync', fsync)
  by_rows = capture_lib.Capture(str(tmp_path / 'rows'), span=1, sync_rows=3,
                                sync_seconds=3600, flush_seconds=3600)
  for _ in range(3):
    by_rows.record([{ID: 'food'}], [0.5], '1')
  assert synced.get(timeout=60) == 3
  by_time = capture_lib.Capture(str(tmp_path / 'time'), span=1, sync_rows=1000,
                                sync_seconds=0.1, flush_seconds=3600)
  by_time.record([{ID: 'food'}], [0.5], '1')
  assert synced.get(timeout=60) == 1
  by_rows.close()
  by_time.close()


def test_a_process_that_exits_without_close_still_writes_its_rows(tmp_path):
  root = str(tmp_path / 'capture')
  code = ('import sys\nfrom serving import capture\n'
          'c = capture.Capture(sys.argv[1], span=3, flush_seconds=3600)\n'
          'for i in range(20):\n'
          f'  c.record([{{{ID!r}: f"imp-{{i}}"}}], [0.5], "1")\n')
  assert _python('-c', code, root).wait() == 0
  assert sorted(r[ID] for r in _captured(root, 3)) == sorted(
      f'imp-{i}' for i in range(20))
  assert not glob.glob(f'{root}/span-3/{capture_lib.JOURNAL_PREFIX}*')


def test_the_next_start_leaves_a_live_writers_journal_alone(tmp_path):
  root = str(tmp_path)
  live = capture_lib.Capture(root, span=1, flush_seconds=3600, sync_rows=1)
  live.record([{ID: f'imp-{i}'} for i in range(5)], [0.5] * 5, '1')
  journal = glob.glob(f'{root}/span-1/{capture_lib.JOURNAL_PREFIX}*{capture_lib.JOURNAL_SUFFIX}')
  deadline = time.monotonic() + 60
  while not journal or len(open(journal[0]).readlines()) < 6:  # the header and 5 rows
    assert time.monotonic() < deadline, 'the live writer never journaled its rows'
    time.sleep(0.05)
    journal = journal or glob.glob(
        f'{root}/span-1/{capture_lib.JOURNAL_PREFIX}*{capture_lib.JOURNAL_SUFFIX}')
  second = capture_lib.Capture(root, span=1)
  second.close()
  assert second.recovered == []
  assert live.close() == {'accepted': 5, 'dropped': 0, 'written': 5}
  assert len(_captured(root, 1)) == 5


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
  # The version that answered (the session's server may serve a later push by now).
  answered = {str(r['prediction']['model_version']) for r in results[:20]}
  assert len(answered) == 1 and {r['model_version'] for r in rows} == answered
  assert sorted(float(r[capture_lib.PREDICTION_COLUMN]) for r in rows) == pytest.approx(
      sorted(r['prediction'][capture_lib.PREDICTION_COLUMN] for r in results[:20]), rel=1e-5)
  stats = fields.traffic(capture_lib.file_pattern(str(tmp_path), 7),
                         schema_lib.build_schema()).statistics
  view = tfdv.get_feature_stats(stats.datasets[0], tfdv.FeaturePath(['bid_price']))
  assert view.num_stats.common_stats.num_non_missing == 20
  assert view.num_stats.max == pytest.approx(max(ad['bid_price'] for ad in ads), rel=1e-5)


def test_the_model_server_captures_what_it_answers_and_flushes_on_a_clean_stop(
    model_server, raw_rows, tmp_path):
  """`--capture-root`: every :predict answer of serving_default (sample rate 1) is written
  by the time the server has stopped on SIGTERM; other signatures are not captured."""
  from models import serving_layout  # pylint: disable=import-outside-toplevel
  from serving.emulator import server_process  # pylint: disable=import-outside-toplevel
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
