"""safe_push and the SafePusher component: a version appears complete, in one step."""
import filecmp
import os

import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import safe_pusher
from serving import safe_push
from serving import versions


@pytest.fixture
def model_dir(tmp_path):
  """The files of a SavedModel (their content does not matter to a push)."""
  root = tmp_path / 'model'
  for name, content in [(versions.SAVED_MODEL, b'graph'), (versions.VARIABLES_INDEX, b'index'),
                        ('variables/variables.data-00000-of-00001', b'weights' * 1000),
                        ('assets/category', b'food\ntravel\n'), ('fingerprint.pb', b'fp')]:
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_bytes(content)
  return str(root)


def _same_tree(a, b) -> bool:
  comparison = filecmp.dircmp(a, b)
  return (not comparison.left_only and not comparison.right_only and
          not filecmp.cmpfiles(a, b, comparison.common_files, shallow=False)[1] and
          all(_same_tree(os.path.join(a, d), os.path.join(b, d))
              for d in comparison.common_dirs))


def test_local_push_renames_a_complete_copy_into_place(model_dir, tmp_path):
  base = str(tmp_path / 'serving' / 'adclick')
  target = safe_push.push(model_dir, base, '17')
  assert target == os.path.join(base, '17')
  assert _same_tree(model_dir, target)
  assert os.listdir(base) == ['17']  # no staging copy left behind
  assert versions.list_versions(base) == [17]
  assert versions.snapshot(target) is not None


def test_existing_version_is_kept(model_dir, tmp_path):
  base = str(tmp_path / 'adclick')
  os.makedirs(os.path.join(base, '17'))
  assert safe_push.push(model_dir, base, '17') == os.path.join(base, '17')
  assert os.listdir(os.path.join(base, '17')) == []


def test_object_store_copy_writes_saved_model_pb_last(model_dir, tmp_path, monkeypatch):
  copied = []
  copy = tf.io.gfile.copy
  monkeypatch.setattr(tf.io.gfile, 'copy',
                      lambda src, dst, *args: copied.append(dst) or copy(src, dst, *args))
  safe_push.copy_saved_model(model_dir, str(tmp_path / 'out'))
  assert len(copied) == 5
  assert copied[-1] == str(tmp_path / 'out' / versions.SAVED_MODEL)
  assert _same_tree(model_dir, str(tmp_path / 'out'))


def test_staging_directories_are_not_versions(model_dir, tmp_path):
  base = str(tmp_path / 'adclick')
  safe_push.copy_saved_model(model_dir, os.path.join(base, safe_push.STAGING_PREFIX + '5-ab'))
  assert versions.list_versions(base) == []


def _run_executor(model_dir, tmp_path, blessed: bool):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'trainer_model')
  tf.io.gfile.makedirs(model.uri)
  safe_push.copy_saved_model(model_dir, os.path.join(model.uri, 'Format-Serving'))
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
