"""A copy of the repository that runs on another log: models/features.py with its sample
fields replaced by a features.py variant's (examples/<log>/features.py, or a test fixture), as
a user adopting the pipeline edits it. Used by the real-log benchmark
(benchmarks/real_logs.py) and the bring-your-own-data test (tests/test_own_csv.py).
"""
import ast
import os
import shutil
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FEATURES_PY = os.path.join('models', 'features.py')


def features_with_own_fields(original: str, own: str) -> str:
  """models/features.py with its sample fields (the statements from the one after the Feature
  class to the end of FEATURES) replaced by the variant's statements after its imports."""
  body = ast.parse(original).body
  after_class = next(i for i, node in enumerate(body)
                     if isinstance(node, ast.ClassDef) and node.name == 'Feature') + 1
  fields_end = next(node for node in body if isinstance(node, ast.AnnAssign) and
                    getattr(node.target, 'id', None) == 'FEATURES').end_lineno
  own_start = next(node for node in ast.parse(own).body[1:]
                   if not isinstance(node, (ast.Import, ast.ImportFrom))).lineno
  lines = original.splitlines()
  return '\n'.join(lines[:body[after_class].lineno - 1] + own.splitlines()[own_start - 1:] +
                   lines[fields_end:]) + '\n'


def repository_files(*patterns: str) -> list:
  """The repository's files as a checkout holds them: every file git neither ignores nor
  lost (tracked or new; the image's `COPY . .` takes the same, .dockerignore mirrors
  .gitignore), relative to REPO, optionally only those matching git pathspecs `patterns`."""
  listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard',
                           *patterns], cwd=REPO, check=True, capture_output=True).stdout.decode()
  return [path for path in filter(None, listed.split('\0'))
          if os.path.isfile(os.path.join(REPO, path))]


def copy_repository(destination: str) -> str:
  """A copy of repository_files() under destination (which is returned)."""
  for path in repository_files():
    os.makedirs(os.path.dirname(os.path.join(destination, path)), exist_ok=True)
    shutil.copy2(os.path.join(REPO, path), os.path.join(destination, path))
  return destination


def copy_with_fields(destination: str, own_fields: str) -> str:
  """A copy of the repository under `destination` (returned) whose models/features.py has
  the fields of `own_fields` (a features.py variant's path)."""
  copy_repository(destination)
  features_path = os.path.join(destination, FEATURES_PY)
  with open(features_path) as f, open(own_fields) as own:
    text = features_with_own_fields(f.read(), own.read())
  with open(features_path, 'w') as f:
    f.write(text)
  return destination
