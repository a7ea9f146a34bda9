"""TF_USE_LEGACY_KERAS is set in one place (models/__init__.py), and every entry point passes
there before TensorFlow loads: else TensorFlow picks Keras 3, which TFX 1.16 cannot use."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.conftest import repository_files

THE_PLACE = 'models/__init__.py'
_SETS = re.compile(r"""environ(\.setdefault\(|\[)\s*['"]TF_USE_LEGACY_KERAS""")

# Run before an entry point is imported: at the first import of TensorFlow (or of a Keras),
# prints whether the variable is set by then and ends the process, so nothing heavy loads.
_PROBE = '''
import importlib, importlib.abc, os, sys
class FirstTensorFlow(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.partition('.')[0] in ('tensorflow', 'keras', 'tf_keras'):
      print('set' if os.environ.get('TF_USE_LEGACY_KERAS') == '1' else 'unset', name, flush=True)
      os._exit(0)
sys.meta_path.insert(0, FirstTensorFlow())
'''


def _read(path):
  with open(os.path.join(REPO, path), encoding='utf-8') as f:
    return f.read()


def _entry_modules():
  """Every module run as a program (`python -m ...`, the runners), and pytest's conftest."""
  found = [path[:-3].replace('/', '.') for path in repository_files('*.py')
           if not path.startswith('tests/') and "__name__ == '__main__'" in _read(path)]
  return sorted(found) + ['tests.conftest']


def _python(code, *argv, timeout=120):
  """`python -c code argv` in the repository, started without the variable."""
  env = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
  return subprocess.run([sys.executable, '-c', code, *argv], cwd=REPO,
                        env=dict(env, PYTHONPATH=REPO), capture_output=True, text=True,
                        timeout=timeout)


def _first_tensorflow(code, *argv):
  """What the probe saw when `code` ran: 'set <module>', 'unset <module>' or 'no tensorflow'."""
  done = _python(_PROBE + code, *argv)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout.strip().splitlines()[-1]


def test_set_in_one_place():
  setters = [path for path in repository_files('*.py') if _SETS.search(_read(path))]
  assert setters == [THE_PLACE]


def test_the_image_sets_it():
  """In the pipeline image TFX's executor entrypoint and Beam's workers import TensorFlow
  before any of the repository's packages."""
  assert re.search(r'^ENV (.*\\\n)*\s*TF_USE_LEGACY_KERAS=1\b', _read('Dockerfile'), re.M)


def test_the_probe_sees_an_early_import():
  assert _first_tensorflow('import tensorflow') == 'unset tensorflow'


@pytest.mark.parametrize('module', _entry_modules())
def test_entry_point_sets_it_before_tensorflow(module):
  seen = _first_tensorflow('importlib.import_module(sys.argv[1]); print("no tensorflow")', module)
  assert not seen.startswith('unset'), f'{module} imports {seen.split()[1]} before {THE_PLACE}'


def test_pytest_sets_it_before_tensorflow():
  seen = _first_tensorflow('import pytest; pytest.main(["--collect-only", "-q", "-s", "-p", '
                           '"no:cacheprovider", "tests/test_model.py"])')
  assert seen.startswith('set'), seen


def test_tensorflow_then_has_keras_2():
  done = _python('import serving.client; import tensorflow as tf; print(tf.keras.__name__)',
                 timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.split()[-1].startswith('tf_keras.')  # Keras 2, not keras.*
