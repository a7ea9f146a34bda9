"""What a cached component must not miss: fingerprints of the inputs TFX's cache key cannot see.

TFX reuses an execution when the node, its parameters and its input artifacts are the same as
a finished one's (tfx/orchestration/portable/cache_utils.py). That is blind to what a
component reads by path: ExampleGen's `input_base` names a folder whose spans change from
month to month, ImportSchemaGen's `schema_file` names a file `make schema` rewrites, the
executors import the code of models/ and components/ by module path, the Trainer reads the
tuned hyperparameters stored at `tuned_hparams_uri`, and the served-model baseline reads
whatever is served now. The runner computes these fingerprints before a run;
create_pipeline records them as custom properties of the outputs of the nodes that read those
inputs, so a change gives that node (and everything downstream) a new cache key.

Files count by path, size and modification time (not content: cheap on a large image folder,
and a touched file is only re-read, never missed).
"""
import dataclasses
import datetime
import hashlib
import os
import posixpath
import subprocess
from typing import Iterable, List, Optional

from apache_beam.io.filesystems import FileSystems

import components
import models
from models import data_layout

# Custom property names on the output artifacts (visible in MLMD beside TFX's own).
DATA_PROPERTY = 'input_fingerprint'  # the name TFX's FileBasedExampleGen gives the same fact
SCHEMA_PROPERTY = 'schema_fingerprint'
TUNED_HPARAMS_PROPERTY = 'tuned_hparams_fingerprint'
RUN_PROPERTY = 'run_started'  # unique per run: what carries it is never reused from the cache
# The repository's revision the run's code came from (the lineage names it); recorded beside
# RUN_PROPERTY, on an output that is never cached, so a new commit alone re-runs nothing.
CODE_REVISION_PROPERTY = 'code_revision'


@dataclasses.dataclass(frozen=True)
class Fingerprints:
  data: str  # the span folders under data_root, and the code the executors run
  schema: str  # the schema file's content
  tuned_hparams: str  # the stored tuned hyperparameters ('' while there are none)
  run: str  # when this run started
  code_revision: str  # `git describe --always --dirty` of the code's checkout; '' outside one


def _listing(pattern: str, suffix: str = '') -> List[str]:
  """'path size mtime' of every file matching pattern whose name ends with suffix."""
  matched = FileSystems.match([pattern])[0].metadata_list
  return sorted(f'{m.path} {m.size_in_bytes} {m.last_updated_in_seconds}'
                for m in matched if m.path.endswith(suffix))


def _hash(lines: Iterable[str]) -> str:
  digest = hashlib.sha256()
  for line in lines:
    digest.update(line.encode() + b'\n')
  return digest.hexdigest()


def code_revision(repo_dir: str) -> str:
  """The checkout's commit (abbreviated, `-dirty` with uncommitted changes); '' where the
  code is not a git checkout or git is missing (e.g. an image built without .git)."""
  try:
    described = subprocess.run(['git', '-C', repo_dir, 'describe', '--always', '--dirty'],
                               capture_output=True, text=True, check=False, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return ''
  return described.stdout.strip() if described.returncode == 0 else ''


def compute(data_root: str, schema_file: str, tuned_hparams_uri: Optional[str]) -> Fingerprints:
  """The fingerprints of a run over data_root (local or gs://)."""
  span_folders = posixpath.dirname(data_layout.SPLIT_PATTERN).replace(data_layout.SPAN_SPEC, '*')
  data = _listing(FileSystems.join(data_root, span_folders, '**'))
  code = [line for package in (models, components)
          for line in _listing(FileSystems.join(os.path.dirname(package.__file__), '**'), '.py')]
  tuned = _listing(tuned_hparams_uri) if tuned_hparams_uri else []
  return Fingerprints(
      data=_hash(data + code),
      schema=_hash(_listing(schema_file)),
      tuned_hparams=_hash(tuned) if tuned else '',
      run=datetime.datetime.now().isoformat(),
      code_revision=code_revision(os.path.dirname(os.path.dirname(components.__file__))))
