"""models/storage.py: a version is used only when whole (its manifest, or for a foreign copy a
listing that holds still), checked by discovery and by the local server's loader; on a tiny
SavedModel whose answers come from a vocabulary in assets/, as the real model's do."""
import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf

from models import serving_layout
from models import storage
from serving.emulator import server_process
from serving.emulator import versions
from tests import fake_serving
from tests import gcs_emulator

VOCABULARY = 'food\ntravel\nnews\n'
VOCAB_ASSET = 'assets/vocab.txt'


@pytest.fixture(scope='module')
def vocab_model(tmp_path_factory) -> str:
  """A SavedModel answering a category's line in assets/vocab.txt (-1 if absent)."""
  directory = tmp_path_factory.mktemp('vocab_model')
  vocab = directory / 'vocab.txt'
  vocab.write_text(VOCABULARY)
  module = tf.Module()
  module.table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
      str(vocab), tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
      tf.lookup.TextFileIndex.LINE_NUMBER), -1)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='category')])
  def serve(category):
    return {'index': module.table.lookup(category)}

  path = str(directory / 'model')
  tf.saved_model.save(module, path, signatures={'serving_default': serve})
  return path


@pytest.fixture(autouse=True)
def no_settling(monkeypatch):
  """Foreign copies are looked at twice without waiting (tests that need the wait set it)."""
  monkeypatch.setattr(storage, 'SETTLE_SECONDS', 0)


def _publish(model, root, version) -> str:
  target = serving_layout.version_dir(root, version)
  storage.publish(storage.stage(model, target), target)
  return target


def _foreign_copy(model, root, version) -> str:
  target = serving_layout.version_dir(root, version)
  shutil.copytree(model, target)
  return target


def _answers(loaded, categories):
  run = loaded.signatures['serving_default']
  return run(category=np.array(categories, dtype=object))['index'].tolist()


def _refused(path, version, files=None) -> str:
  with pytest.raises(tf.errors.DataLossError) as refused:
    versions.load(path, version, files)
  return refused.value.message


def test_a_published_version_is_whole_and_loads(vocab_model, tmp_path):
  root = str(tmp_path / 'adclick')
  path = _publish(vocab_model, root, 7)
  manifest = storage.read_manifest(path)
  assert manifest[storage.FILES_KEY][VOCAB_ASSET]['size'] == len(VOCABULARY)
  assert len(manifest[storage.FILES_KEY][VOCAB_ASSET]['sha256']) == 64
  assert set(manifest[storage.FILES_KEY]) | {storage.MANIFEST} == set(
      storage.relative_files(path))
  assert storage.check(path).whole
  assert storage.latest_whole_version(root) == 7
  assert os.listdir(root) == ['7']  # no staging copy left
  loaded = versions.load(path, 7)
  assert _answers(loaded, [b'news', b'sports']) == [2, -1]
  assert loaded.files == storage.listing(path)


@pytest.mark.parametrize('published', [True, False], ids=['manifest', 'foreign'])
def test_a_version_missing_its_assets_is_never_served(vocab_model, tmp_path, published):
  root = str(tmp_path / 'adclick')
  _publish(vocab_model, root, 1)
  path = (_publish if published else _foreign_copy)(vocab_model, root, 2)
  shutil.rmtree(os.path.join(path, 'assets'))
  assert storage.latest_whole_version(root) == 1  # discovery: baseline, batch, rollback
  assert storage.whole_versions(root) == [1]  # (rollback's)
  if published:
    assert versions.snapshot(path) is None  # the server does not even try it
    assert f'{VOCAB_ASSET} is missing' in _refused(path, 2)
  else:  # its listing holds still, but saved_model.pb names an asset that is not there
    assert f'assets missing: {VOCAB_ASSET}' in _refused(path, 2, versions.snapshot(path))


def test_a_truncated_or_rewritten_file_is_refused_against_the_manifest(vocab_model, tmp_path):
  root = str(tmp_path / 'adclick')
  _publish(vocab_model, root, 1)
  path = _publish(vocab_model, root, 2)
  vocab = os.path.join(path, VOCAB_ASSET)
  with open(vocab, 'w') as f:
    f.write('food\ntravel\n')  # a copy that stalled: 'news' is gone, so it would answer -1
  assert storage.latest_whole_version(root) == 1
  assert versions.snapshot(path) is None
  assert f'{VOCAB_ASSET} has 12 bytes, its manifest says 17' in _refused(path, 2)
  with open(vocab, 'w') as f:
    f.write('food\ntravel\nnevs\n')  # same size, other bytes: only the checksum tells
  assert versions.snapshot(path) is not None
  assert f'{VOCAB_ASSET} differs from its manifest (SHA-256)' in _refused(path, 2)
  assert storage.latest_whole_version(root) == 1
  with open(vocab, 'w') as f:
    f.write(VOCABULARY)  # the copy finished
  assert storage.latest_whole_version(root) == 2
  assert _answers(versions.load(path, 2), [b'news']) == [2]


def test_a_foreign_copy_is_used_only_once_its_files_hold_still(vocab_model, tmp_path,
                                                               monkeypatch):
  root = str(tmp_path / 'adclick')
  _publish(vocab_model, root, 1)
  path = _foreign_copy(vocab_model, root, 2)
  shard = os.path.join(path, 'variables', 'variables.data-00000-of-00001')

  def still_copying(seconds):  # between discovery's two looks, the copy grows
    with open(shard, 'ab') as f:
      f.write(b'\0')

  monkeypatch.setattr(storage.time, 'sleep', still_copying)
  assert storage.latest_whole_version(root) == 1
  # The server: what the previous poll saw is not what is there now.
  before = versions.snapshot(path)
  still_copying(0)
  assert 'still changing' in _refused(path, 2, before)
  monkeypatch.undo()
  monkeypatch.setattr(storage, 'SETTLE_SECONDS', 0)
  shutil.rmtree(path)
  _foreign_copy(vocab_model, root, 2)  # copied again, and left alone
  assert storage.latest_whole_version(root) == 2
  assert _answers(versions.load(path, 2, versions.snapshot(path)), [b'travel']) == [1]


def test_rollback_looks_twice_at_all_foreign_copies_with_one_wait(vocab_model, tmp_path,
                                                                  monkeypatch):
  root = str(tmp_path / 'adclick')
  for version in (1, 2, 3):
    _foreign_copy(vocab_model, root, version)
  slept = []

  def still_copying_3(seconds):
    slept.append(seconds)
    with open(os.path.join(root, '3', 'variables', 'variables.data-00000-of-00001'), 'ab') as f:
      f.write(b'\0')

  monkeypatch.setattr(storage.time, 'sleep', still_copying_3)
  assert storage.whole_versions(root) == [1, 2]
  assert len(slept) == 1


def test_on_gcs_a_foreign_copy_without_its_assets_is_not_whole(vocab_model, tmp_path):
  _publish(vocab_model, str(tmp_path / 'adclick'), 1)
  _foreign_copy(vocab_model, str(tmp_path / 'adclick'), 2)
  with gcs_emulator.running('storage-test') as bucket:
    gcs_emulator.upload_tree(bucket, str(tmp_path / 'adclick'), 'adclick')
    root = 'gs://storage-test/adclick'
    assert storage.latest_whole_version(root) == 2
    bucket.blob(f'adclick/2/{VOCAB_ASSET}').delete()
    bucket.blob(f'adclick/1/{VOCAB_ASSET}').upload_from_string(b'food\n')
    assert storage.whole_versions(root) == []
    assert f'assets missing: {VOCAB_ASSET}' in storage.check(f'{root}/2').problem


def test_a_manifest_that_does_not_parse_is_not_whole(vocab_model, tmp_path):
  path = _publish(vocab_model, str(tmp_path), 3)
  with open(os.path.join(path, storage.MANIFEST), 'w') as f:
    f.write('{"files": {"saved_model.pb"')  # cut short
  assert f'{storage.MANIFEST} is unreadable' in storage.check(path).problem


def test_a_version_withdrawn_while_it_is_checked_is_not_whole(vocab_model, tmp_path,
                                                              monkeypatch):
  path = _publish(vocab_model, str(tmp_path), 3)
  listed = storage.quick_check

  def then_withdrawn(directory):  # a rollback on GCS deletes it right after the listing
    found = listed(directory)
    storage.withdraw(directory)
    return found

  monkeypatch.setattr(storage, 'quick_check', then_withdrawn)
  assert 'its files changed while they were checked' in storage.check(path).problem


def test_publish_replaces_a_folder_whole_or_not_at_all(vocab_model, tmp_path):
  target = str(tmp_path / 'out')
  _publish(vocab_model, str(tmp_path), 'out')
  staging = storage.stage(vocab_model, target)
  with pytest.raises(FileExistsError):
    storage.publish(staging, target)
  manifest = storage.publish(staging, target, extra={'rows_scored': 3}, replace=True)
  assert storage.read_manifest(target) == manifest and manifest['rows_scored'] == 3
  assert sorted(os.listdir(tmp_path)) == ['out']


def test_the_server_never_serves_a_version_with_a_cut_vocabulary(vocab_model, tmp_path):
  root = serving_layout.model_root(str(tmp_path))
  _publish(vocab_model, root, 1)
  path = _publish(vocab_model, root, 2)
  vocab = os.path.join(path, VOCAB_ASSET)
  with open(vocab, 'w') as f:
    f.write('food\n')
  with server_process.model_server(str(tmp_path), serving_layout.MODEL_NAME,
                                   '--poll-seconds', '0.1') as server:
    fake_serving.wait_for(lambda: fake_serving.version_states(server.url).get(1) == 'AVAILABLE')
    time.sleep(1)  # several polls: version 2 is never tried
    assert fake_serving.version_states(server.url) == {1: 'AVAILABLE'}
    with open(vocab, 'w') as f:
      f.write(VOCABULARY)  # the copy finished: now it is whole, and takes over
    fake_serving.wait_for(lambda: fake_serving.version_states(server.url).get(2) == 'AVAILABLE')
