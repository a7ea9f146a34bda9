"""Rollback (serving/rollback.py): under load with no failed request, on a GCS emulator, what
the pipeline's baseline and summary make of it, and that a later push is served as usual."""
import json
import os
import threading
import time

from apache_beam.io.filesystems import FileSystems
from ml_metadata.proto import metadata_store_pb2
import pytest
import requests
from tfx.types import standard_artifacts

from components import safe_pusher
from components import served_baseline
from models import serving_layout
from models import storage
from pipeline import run_result
from pipeline import summary
from serving import rollback
from serving.emulator import server_process
from tests import fake_serving
from tests import gcs_emulator

MODEL = serving_layout.MODEL_NAME


def _content(name, version) -> bytes:
  """A file's content (it does not matter to a move); saved_model.pb: one naming no asset."""
  return b'' if name == serving_layout.SAVED_MODEL else f'{name} of {version}'.encode()


def _write_files(root, version):
  """A complete version's files, published by SafePusher (with its manifest)."""
  directory = os.path.join(root, str(version))
  os.makedirs(os.path.join(directory, 'variables'), exist_ok=True)
  for name in (serving_layout.SAVED_MODEL, serving_layout.VARIABLES_INDEX,
               'variables/variables.data-00000-of-00001'):
    with open(os.path.join(directory, name), 'wb') as f:
      f.write(_content(name, version))
  storage.write_manifest(directory)
  return directory


def test_rollback_under_load_fails_no_request(tmp_path, raw_rows):
  model_root = serving_layout.model_root(str(tmp_path))
  for version in (1, 2, 3):
    fake_serving.save_version(model_root, version)
  row = raw_rows[0]
  body = json.dumps({'instances': [fake_serving.instance(row)]})
  answered = [[], [], []]  # per thread, in order: the version that gave each answer
  failed = []
  stop = threading.Event()

  def load(url, mine):  # bounded: stops on the event, after 20,000 answers, or a failure
    with requests.Session() as session:
      while not stop.is_set() and sum(map(len, answered)) < 20000 and not failed:
        try:
          response = session.post(f'{url}/v1/models/{MODEL}:predict', data=body, timeout=30)
        except requests.RequestException as e:
          failed.append(repr(e))
          continue
        if response.status_code != 200:
          failed.append(response.text)
        else:
          mine.append(fake_serving.answered_version(response.json()['predictions'][0], row))

  def all_answer(version):
    return failed or all(mine and mine[-1] == version for mine in answered)

  with server_process.model_server(str(tmp_path), MODEL, '--poll-seconds', '0.2') as server:
    fake_serving.wait_for(lambda: fake_serving.available_versions(server.url) == {3})
    threads = [threading.Thread(target=load, args=(server.url, mine)) for mine in answered]
    for thread in threads:
      thread.start()
    try:
      fake_serving.wait_for(lambda: all_answer(3))
      record = rollback.rollback(model_root, 'CTR fell', by='oncall@test')
      fake_serving.wait_for(lambda: all_answer(2))
      assert rollback.main(['--model-base-path', str(tmp_path), '--to', '1',
                            '--reason', 'still bad']) == 0
      fake_serving.wait_for(lambda: all_answer(1))
      count = sum(map(len, answered))
      fake_serving.wait_for(lambda: sum(map(len, answered)) > count + 20 or failed)
    finally:
      stop.set()
      for thread in threads:
        thread.join()
    assert not failed, failed[:3]
    # On each connection versions only ever went back: no gap, no mix of old and new.
    for mine in answered:
      assert mine[0] == 3 and mine[-1] == 1
      assert all(a >= b for a, b in zip(mine, mine[1:]))
    assert {2} < set(sum(answered, []))
    assert fake_serving.available_versions(server.url) == {1}

    aside = serving_layout.rolled_back_root(model_root)
    assert record == {'when': record['when'], 'from': 3, 'to': 2, 'moved': [3],
                      'reason': 'CTR fell', 'who': 'oncall@test', 'model_root': model_root,
                      'moved_to': aside}
    assert sorted(os.listdir(model_root)) == ['1']
    assert sorted(os.listdir(aside)) == ['2', '2.rollback.json', '3', '3.rollback.json']
    assert storage.check(os.path.join(aside, '3')).whole  # moved whole
    records = served_baseline.rollback_records(model_root)
    assert [(r['from'], r['to'], r['reason']) for r in records] == [
        (3, 2, 'CTR fell'), (2, 1, 'still bad')]

    # The next push gets a number above every version ever used, and is served.
    new = safe_pusher.next_version(model_root)
    assert new > 3
    fake_serving.save_version(str(tmp_path / 'trained'), 7)
    safe_pusher.push(str(tmp_path / 'trained' / '7'), model_root, str(new))
    fake_serving.wait_for(lambda: fake_serving.available_versions(server.url) == {new})


def test_pushes_after_a_rollback_number_above_every_version_used(tmp_path, monkeypatch):
  model_root = str(tmp_path / MODEL)
  for version in (10, 20, 30):
    _write_files(model_root, version)
  rollback.rollback(model_root, 'bad', to=10)
  monkeypatch.setattr(time, 'time', lambda: 15.0)  # a clock behind the versions used
  assert served_baseline.highest_version_used(model_root) == 30
  assert safe_pusher.next_version(model_root) == 31


def test_rollback_moves_versions_through_the_one_publish(tmp_path, monkeypatch):
  model_root = str(tmp_path / MODEL)
  for version in (10, 20, 30):
    _write_files(model_root, version)
  published = []
  publish = storage.publish
  monkeypatch.setattr(storage, 'publish', lambda staging, target, **kwargs: (
      published.append((os.path.basename(staging), target)), publish(staging, target,
                                                                     **kwargs))[1])
  rollback.rollback(model_root, 'bad', to=10)
  aside = serving_layout.rolled_back_root(model_root)
  assert [target for _, target in published] == [os.path.join(aside, '20'),
                                                 os.path.join(aside, '30')]
  assert all(name.startswith(serving_layout.STAGING_PREFIX) for name, _ in published)
  assert storage.check(os.path.join(aside, '30')).whole
  assert storage.version_numbers(model_root) == [10]
  monkeypatch.setattr(time, 'time', lambda: 1795273561.5)
  assert safe_pusher.next_version(model_root) == 1795273561


@pytest.mark.parametrize('to,reason,error', [
    (30, 'x', 'version 30 is not a complete version older than the served 30'),
    (40, 'x', 'version 40 is not a complete version older than the served 30'),
    (5, 'x', 'version 5 is not a complete version older than the served 30'),
    (15, 'x', 'version 15 is not a complete version older than the served 30'),
    (None, ' ', 'a rollback needs a reason'),
])
def test_refused_rollbacks_move_nothing(tmp_path, to, reason, error):
  model_root = str(tmp_path / MODEL)
  for version in (10, 15, 20, 30):
    _write_files(model_root, version)
  # 15 lacks its variables: incomplete, never rolled back to.
  os.remove(os.path.join(model_root, '15', serving_layout.VARIABLES_INDEX))
  with pytest.raises(rollback.RollbackError, match=error):
    rollback.rollback(model_root, reason, to=to)
  assert sorted(os.listdir(model_root)) == ['10', '15', '20', '30']
  assert not os.path.exists(serving_layout.rolled_back_root(model_root))


def test_nothing_to_roll_back_to(tmp_path, capsys):
  _write_files(str(tmp_path / MODEL), 10)
  assert rollback.main(['--model-base-path', str(tmp_path), '--previous', '--reason', 'x']) == 1
  assert 'version 10 is the only complete version' in capsys.readouterr().err
  assert os.listdir(tmp_path / MODEL) == ['10']


def test_rollback_on_gcs_moves_whole_versions_and_deletes_saved_model_pb_first(tmp_path,
                                                                               monkeypatch):
  for version in (1, 2, 3):
    _write_files(str(tmp_path / 'serving' / MODEL), version)
  deleted = []
  delete = FileSystems.delete
  monkeypatch.setattr(FileSystems, 'delete', lambda paths: (deleted.append(list(paths)),
                                                            delete(paths))[1])
  with gcs_emulator.running('rollback-test') as bucket:
    gcs_emulator.upload_tree(bucket, str(tmp_path / 'serving'), 'serving')
    model_root = f'gs://rollback-test/serving/{MODEL}'
    assert rollback.main(['--model-base-path', 'gs://rollback-test/serving', '--to', '1',
                          '--reason', 'bad creative decoder']) == 0
    blobs = {blob.name: blob.download_as_bytes() for blob in bucket.list_blobs()}
    assert storage.latest_whole_version(model_root) == 1
    (record,) = served_baseline.rollback_records(model_root)
    assert served_baseline.highest_version_used(model_root) == 3
  for version in (2, 3):
    for name in (serving_layout.SAVED_MODEL, serving_layout.VARIABLES_INDEX):
      assert blobs[f'serving/{MODEL}.rolled-back/{version}/{name}'] == _content(name, version)
    assert f'serving/{MODEL}.rolled-back/{version}/{storage.MANIFEST}' in blobs
  assert not [name for name in blobs if name.startswith((f'serving/{MODEL}/2/',
                                                         f'serving/{MODEL}/3/'))]
  assert len([name for name in blobs if name.startswith(f'serving/{MODEL}/1/')]) == 4
  assert (record['from'], record['to'], record['moved']) == (3, 1, [2, 3])
  assert json.loads(blobs[f'serving/{MODEL}.rolled-back/3.rollback.json']) == record
  # Each version: saved_model.pb and the manifest first, so what is left can never be loaded.
  for version in (2, 3):
    source = f'{model_root}/{version}/'
    first = next(paths for paths in deleted if paths[0].startswith(source))
    assert first == [source + serving_layout.SAVED_MODEL, source + storage.MANIFEST]

def _run_with_baseline(model):
  """The run result of a run whose ServedModelBaseline wrote `model`."""
  baseline = run_result.Component('ServedModelBaseline', 'done', 1.0, None,
                                  metadata_store_pb2.Execution(), inputs=[], outputs=[model])
  return run_result.from_components(1, 0.0, [baseline])


def test_baseline_and_summary_after_a_rollback(tmp_path):
  model_root = tmp_path / 'serving' / MODEL
  for version in (5, 6):
    _write_files(str(model_root), version)
  before = standard_artifacts.Model()
  before.uri = str(tmp_path / 'before')
  executor = served_baseline.ServedModelBaseline.EXECUTOR_SPEC.executor_class()
  executor.Do({}, {'model': [before]}, {'model_root': str(model_root)})
  assert not before.has_custom_property(served_baseline.ROLLBACK_PROPERTY)

  rollback.rollback(str(model_root), 'log-loss up 4%', by='alice@laptop')
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'after')
  executor.Do({}, {'model': [model]}, {'model_root': str(model_root)})
  assert model.get_int_custom_property(served_baseline.SERVED_VERSION_PROPERTY) == 5
  record = json.loads(model.get_string_custom_property(served_baseline.ROLLBACK_PROPERTY))
  assert (record['from'], record['to'], record['reason']) == (6, 5, 'log-loss up 4%')

  # The run result reads it from the baseline's artifact; the run summary says it.
  line = summary.rollback_line(_run_with_baseline(model))
  assert line.startswith('Rollback: the served model is version 5 since alice@laptop rolled '
                         'back from version 6 at ')
  assert 'reason: log-loss up 4%' in line
  assert summary.rollback_line(_run_with_baseline(before)) is None
