"""The pipeline image builds from requirements.lock, checked without a Docker engine.

The Dockerfile's final stage installs the lock with `pip --only-binary=:all:` (it has no
compiler); the `wheels` stage builds the packages named in SOURCE_BUILT_PACKAGES from source.
So every other pin needs a wheel on PyPI for the image's Python and platform: asked here of
PyPI's simple index (PEP 691 JSON), matched with the tags pip uses (packaging.tags).
"""
import concurrent.futures
import json
import os
import re
import shlex
import sys
import time
import urllib.error
import urllib.request

from packaging import tags
from packaging import utils
from packaging import version
import pytest

from tests.conftest import REPO

INDEX = 'https://pypi.org/simple'
# glibc of the Debian release a python:*-slim-<codename> image is built on (manylinux tags).
DEBIAN_GLIBC_MINOR = {'bullseye': 31, 'bookworm': 36}
# The glibc versions PEP 600's manylinux tags had legacy names for.
LEGACY_MANYLINUX = {17: 'manylinux2014', 12: 'manylinux2010', 5: 'manylinux1'}


def _read(name):
  with open(os.path.join(REPO, name)) as f:
    return f.read()


def _stages():
  """The Dockerfile as [(FROM line, [instructions])], continuation lines joined."""
  text = re.sub(r'\\\n\s*', ' ', _read('Dockerfile'))
  lines = [l.strip() for l in text.splitlines() if l.strip() and not l.lstrip().startswith('#')]
  stages = [('', [])]
  for line in lines:
    if line.upper().startswith('FROM '):
      stages.append((line, []))
    else:
      stages[-1][1].append(line)
  return stages


def _arg(name):
  for _, instructions in _stages():
    for line in instructions:
      found = re.fullmatch(rf'ARG {name}=(.*)', line)
      if found:
        return ' '.join(shlex.split(found.group(1))).split()  # ARG X="a b" -> [a, b]
  raise AssertionError(f'the Dockerfile has no ARG {name}=...')


def _pins():
  """{canonical name: version} of requirements.lock, read now (the lock changes)."""
  pins = {}
  for line in _read('requirements.lock').splitlines():
    line = line.split('#')[0].strip()
    if line:
      name, pinned = line.split('==')
      pins[utils.canonicalize_name(name)] = version.Version(pinned)
  return pins


def _image_python_and_platforms():
  """(major, minor) and manylinux platform tags of the image's base, from its tag."""
  (image,) = _arg('PYTHON_IMAGE')
  found = re.fullmatch(r'python:(\d+)\.(\d+)\.\d+-slim-(\w+)', image)
  assert found, f'expected a python:X.Y.Z-slim-<debian> base image, got {image}'
  major, minor, codename = int(found.group(1)), int(found.group(2)), found.group(3)
  assert codename in DEBIAN_GLIBC_MINOR, f'add the glibc version of Debian {codename}'
  platforms = []
  for glibc_minor in range(DEBIAN_GLIBC_MINOR[codename], 4, -1):
    platforms.append(f'manylinux_2_{glibc_minor}_x86_64')
    if glibc_minor in LEGACY_MANYLINUX:
      platforms.append(f'{LEGACY_MANYLINUX[glibc_minor]}_x86_64')
  return (major, minor), platforms


def _index_files(project, attempts=3):
  """The project's files on the index; a failed request (a timeout, a 5xx) is tried again."""
  request = urllib.request.Request(f'{INDEX}/{project}/',
                                   headers={'Accept': 'application/vnd.pypi.simple.v1+json'})
  for attempt in range(attempts):
    try:
      with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)['files']
    except (urllib.error.URLError, OSError):
      if attempt == attempts - 1:
        raise
      time.sleep(2 ** attempt)


def _wheel_tags(project):
  """{version: set of tags} of the project's wheels on the index."""
  files = _index_files(project)
  found = {}
  for file in files:
    if not file['filename'].endswith('.whl'):
      continue
    try:
      _, wheel_version, _, wheel_tags = utils.parse_wheel_filename(file['filename'])
    except (utils.InvalidWheelFilename, version.InvalidVersion):
      continue  # old uploads with names pip skips too
    found.setdefault(wheel_version, set()).update(wheel_tags)
  return found


@pytest.fixture(scope='module')
def index_wheels():
  try:
    urllib.request.urlopen(f'{INDEX}/pip/', timeout=10).close()
  except (urllib.error.URLError, OSError) as e:
    pytest.skip(f'the package index {INDEX} cannot be reached: {e}')
  pins = _pins()
  try:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
      return dict(zip(pins, pool.map(_wheel_tags, pins)))
  except (urllib.error.URLError, OSError) as e:
    pytest.skip(f'the package index {INDEX} stopped answering (3 tries): {e}')


def test_image_python_is_the_one_the_tests_run_on():
  python, _ = _image_python_and_platforms()
  assert python == sys.version_info[:2]


def test_every_pin_has_a_wheel_for_the_image_or_is_built_in_the_wheels_stage(index_wheels):
  python, platforms = _image_python_and_platforms()
  interpreter = f'cp{python[0]}{python[1]}'
  supported = set(tags.cpython_tags(python, platforms=platforms)) | set(
      tags.compatible_tags(python, interpreter, platforms))
  built = {utils.canonicalize_name(name) for name in _arg('SOURCE_BUILT_PACKAGES')}
  pins = _pins()
  assert built <= pins.keys(), f'SOURCE_BUILT_PACKAGES not in the lock: {built - pins.keys()}'
  no_wheel = {name for name, pinned in pins.items()
              if not index_wheels[name].get(pinned, set()) & supported}
  assert no_wheel - built == set(), (
      f'no {interpreter} manylinux x86_64 wheel on PyPI: add these to the Dockerfile\'s '
      'SOURCE_BUILT_PACKAGES (and the system packages they need to its wheels stage)')
  assert built - no_wheel == set(), 'these have wheels now: drop them from SOURCE_BUILT_PACKAGES'


def test_final_stage_installs_binaries_only_and_runs_as_non_root():
  *build_stages, (_, final) = _stages()[1:]
  assert any('g++' in line for _, lines in build_stages for line in lines)
  assert not any('apt-get install' in line for line in final)  # no compiler in the image
  (install,) = [line for line in final if '-r requirements.lock' in line]
  assert '--only-binary=:all:' in install and '--find-links /wheels' in install
  users = [line.split()[1] for line in final if line.startswith('USER ')]
  assert users and users[-1].isdigit() and int(users[-1]) != 0  # runAsNonRoot can verify it


def test_build_context_leaves_out_what_git_ignores():
  """COPY . . then holds what `git ls-files` lists, as tests/kfp_local_launcher.py copies it."""
  ignored = {l.strip().strip('/') for l in _read('.gitignore').splitlines() if l.strip()}
  docker = {l.strip().strip('/') for l in _read('.dockerignore').splitlines()
            if l.strip() and not l.startswith('#')}
  docker |= {p.removeprefix('**/') for p in docker}
  assert ignored - docker == set()
