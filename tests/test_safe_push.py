"""SafePusher: a version appears complete, in one step, with its manifest written last, on local
disk and on GCS; and the names the pusher, the baseline and the model server agree are
versions."""
import filecmp
import hashlib
import json
import os
import pathlib

from apache_beam.io.filesystems import FileSystems
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import path_utils
from tfx.utils import proto_utils

from components import safe_pusher
from models import serving_layout
from models import storage
from serving.emulator import versions
from tests import gcs_emulator


@pytest.fixture
def model_dir(tmp_path):
  """The files of a SavedModel (their content does not matter to a push; its saved_model.pb is
  empty, a SavedModel with no asset)."""
  root = tmp_path / 'model'
  for name, content in [(serving_layout.SAVED_MODEL, b''),
                        (serving_layout.VARIABLES_INDEX, b'index'),
                        ('variables/variables.data-00000-of-00001', b'weights' * 1000),
                        ('assets/category', b'food\ntravel\n'), ('fingerprint.pb', b'fp')]:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(content)
  return str(root)


def _same_tree(a, b) -> bool:
  """The same files, but for the published copy's manifest."""
  comparison = filecmp.dircmp(a, b, ignore=[storage.MANIFEST])
  return (not comparison.left_only and not comparison.right_only and
          not filecmp.cmpfiles(a, b, comparison.common_files, shallow=False)[1] and
          all(_same_tree(os.path.join(a, d), os.path.join(b, d))
              for d in comparison.common_dirs))


@pytest.fixture
def created(monkeypatch):
  """The paths FileSystems.create opens for writing, in order."""
  paths = []
  create = FileSystems.create

  def recording(path, *args, **kwargs):
    paths.append(path)
    return create(path, *args, **kwargs)

  monkeypatch.setattr(FileSystems, 'create', recording)
  return paths


def test_local_push_renames_a_complete_copy_into_place(model_dir, tmp_path):
  base = str(tmp_path / 'serving' / 'adclick')
  target = safe_pusher.push(model_dir, base, '17')
  assert target == os.path.join(base, '17')
  assert _same_tree(model_dir, target)
  assert os.listdir(base) == ['17']  # no staging copy left behind
  assert storage.version_numbers(base) == [17]
  assert versions.snapshot(target) is not None
  assert storage.latest_whole_version(base) == 17


def test_the_manifest_is_written_last_and_covers_every_file(model_dir, tmp_path, created):
  base = str(tmp_path / 'adclick')
  target = safe_pusher.push(model_dir, base, '17')
  staged = [path for path in created if '/.push-17-' in path]
  assert len(staged) == 6 and not created[len(staged):]  # staged, then renamed into place
  assert staged[-1].endswith(f'/{storage.MANIFEST}')
  files = storage.read_manifest(target)[storage.FILES_KEY]
  assert set(files) == set(storage.relative_files(model_dir))
  assert files['assets/category'] == {
      'size': 12, 'sha256': hashlib.sha256(b'food\ntravel\n').hexdigest()}
  assert storage.check(target).whole


def test_existing_version_is_kept(model_dir, tmp_path):
  base = str(tmp_path / 'adclick')
  os.makedirs(os.path.join(base, '17'))
  assert safe_pusher.push(model_dir, base, '17') == os.path.join(base, '17')
  assert os.listdir(os.path.join(base, '17')) == []


def test_copy_writes_saved_model_pb_last(model_dir, tmp_path, created):
  storage.copy_tree(model_dir, str(tmp_path / 'out'))
  assert len(created) == 5
  assert created[-1] == str(tmp_path / 'out' / serving_layout.SAVED_MODEL)
  assert _same_tree(model_dir, str(tmp_path / 'out'))


def test_push_to_gcs_copies_saved_model_pb_and_then_the_manifest_last(model_dir, created):
  with gcs_emulator.running('push-test') as bucket:
    base = 'gs://push-test/serving/adclick'
    assert safe_pusher.push(model_dir, base, '17') == f'{base}/17'
    blobs = {blob.name: blob.download_as_bytes() for blob in bucket.list_blobs()}
    assert storage.latest_whole_version(base) == 17
    assert storage.check(f'{base}/17').whole
  files = storage.relative_files(model_dir)
  manifest = blobs.pop(f'serving/adclick/17/{storage.MANIFEST}')
  assert blobs == {f'serving/adclick/17/{path}': pathlib.Path(model_dir, path).read_bytes()
                   for path in files}  # and no staging copy left behind
  assert set(json.loads(manifest)[storage.FILES_KEY]) == set(files)
  into_version = [path for path in created if path.startswith(f'{base}/17/')]
  assert len(into_version) == len(files) + 1
  assert into_version[-2:] == [f'{base}/17/{serving_layout.SAVED_MODEL}',
                               f'{base}/17/{storage.MANIFEST}']


def test_staging_directories_are_not_versions(model_dir, tmp_path):
  base = str(tmp_path / 'adclick')
  storage.copy_tree(model_dir, os.path.join(base, serving_layout.staging_name(5, 'ab')))
  assert storage.version_numbers(base) == []
  assert storage.version_numbers(base) == []


@pytest.mark.parametrize('name,version', [
    ('17', 17), ('1795273561/', 1795273561), (str(2**63 - 1), 2**63 - 1), (str(2**63), None),
    ('-1', None), ('1.5', None), ('17.partial', None), ('', None),
    (serving_layout.staging_name(17, 'ab'), None)])
def test_which_names_are_versions(name, version):
  assert serving_layout.version_number(name) == version


def _run_executor(model_dir, tmp_path, blessed: bool):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'trainer_model')
  tf.io.gfile.makedirs(model.uri)
  storage.copy_tree(model_dir, path_utils.serving_model_dir(model.uri))
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  blessing.set_int_custom_property('blessed', int(blessed))
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / 'pushed_model')
  destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
      base_directory=str(tmp_path / 'serving' / 'adclick')))
  safe_pusher.Executor().Do(
      {'model': [model], 'model_blessing': [blessing]}, {'pushed_model': [pushed]},
      {'push_destination': proto_utils.proto_to_json(destination)})
  return pushed


def test_executor_pushes_a_blessed_model_and_records_it_like_the_stock_pusher(model_dir,
                                                                              tmp_path):
  pushed = _run_executor(model_dir, tmp_path, blessed=True)
  version = pushed.get_string_custom_property('pushed_version')
  destination = pushed.get_string_custom_property('pushed_destination')
  assert pushed.get_int_custom_property('pushed') == 1
  assert version.isdigit()
  assert destination == str(tmp_path / 'serving' / 'adclick' / version)
  assert _same_tree(model_dir, destination)
  assert _same_tree(model_dir, pushed.uri)  # the stock Pusher's archive copy


def test_executor_pushes_nothing_unblessed(model_dir, tmp_path):
  pushed = _run_executor(model_dir, tmp_path, blessed=False)
  assert pushed.get_int_custom_property('pushed') == 0
  assert not os.path.exists(tmp_path / 'serving')


def test_component_is_a_drop_in_for_the_stock_pusher():
  args = dict(
      model=tfx.dsl.Channel(type=standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=standard_artifacts.ModelBlessing),
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory='/srv/adclick')))
  stock, safe = tfx.components.Pusher(**args), safe_pusher.SafePusher(**args)
  assert safe.inputs.keys() == stock.inputs.keys()
  assert safe.outputs.keys() == stock.outputs.keys()
  assert safe.exec_properties == stock.exec_properties
  assert safe.executor_spec.executor_class is safe_pusher.Executor
