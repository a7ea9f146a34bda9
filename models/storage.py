"""Published folders on any file system: stage, publish, check whole, discover versions.

The one home of how a model version (or a batch output) appears and when it counts as whole;
SafePusher, the baseline, rollback, version labels, the model server and batch scoring all go
through it. Every read and write is a Beam FileSystems call, so a folder may be local or gs://.

Publishing (publish()): a folder is written complete under a staging name beside its target
(staging_dir(): `.push-<name>-<token>`, never a version, models/serving_layout.py), then its
manifest is written LAST, then it is moved into place: on local disk in one rename; on an
object store, which cannot rename, file by file with saved_model.pb just before the manifest.

The manifest (`manifest.json`) names every file of the folder, assets/ included, with its size
and SHA-256; callers may add their own keys (batch scoring's counts). SHA-256 (hashlib; about
1.7 GB/s on one core here, so 1-2 ms per MiB of model together with reading it) rather than
CRC32C: no extra dependency, and corruption of any kind is caught, not only random bit flips.

Whole (check()), the one rule used before a version is loaded, copied or scored: saved_model.pb,
the variables index and every variables shard are there (what TF Serving needs), and
  * with a manifest: every file it names is there with its size and checksum, and no other
    file is (a file added, cut short, missing or rewritten since publishing is refused);
  * without one (a foreign copy: by hand, gsutil, TFX's own Pusher): every asset saved_model.pb
    names is under assets/, and the full listing (names, sizes and modification times,
    assets/ included) is the same on two looks SETTLE_SECONDS apart (or the same as a
    poller's previous look). A foreign copy that stalled for good with a file cut short
    cannot be told from a whole one: publish with SafePusher (or write a manifest) to be sure.
"""
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from typing import Dict, List, Optional, Tuple

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem

from models import serving_layout

MANIFEST = 'manifest.json'
FILES_KEY = 'files'  # the manifest's {relative path: {"size": bytes, "sha256": hex}}
SETTLE_SECONDS = 1.0  # between the two looks at a foreign copy (TF Serving polls every 1 s)
ASSETS = 'assets'
_SHARD = re.compile(r'variables/variables\.data-\d+-of-(\d+)$')
_RAW = CompressionTypes.UNCOMPRESSED  # never (de)compress *.gz files on the way
_CHUNK = 1 << 20

Listing = Tuple[Tuple[str, int, float], ...]  # (relative path, size, mtime) of every file


class NotWhole(Exception):
  """A folder that is not whole by check(); the message says why."""


@dataclasses.dataclass(frozen=True)
class Check:
  listing: Listing  # what was looked at
  problem: str = ''  # why the folder is not whole; empty when it is

  @property
  def whole(self) -> bool:
    return not self.problem


def _is_local(path: str) -> bool:
  return isinstance(FileSystems.get_filesystem(path), LocalFileSystem)


def listing(directory: str) -> Listing:
  """Every file under directory with its size and modification time, sorted by path."""
  directory = directory.rstrip('/')
  matched = FileSystems.match([FileSystems.join(directory, '**')])[0].metadata_list
  return tuple(sorted((m.path[len(directory):].lstrip('/'), m.size_in_bytes,
                       m.last_updated_in_seconds)
                      for m in matched if not m.path.endswith('/')))  # no folder markers


def relative_files(directory: str) -> List[str]:
  """Every file under directory, as paths relative to it."""
  return [path for path, _, _ in listing(directory)]


def _copy_order(paths) -> List[str]:
  """saved_model.pb after every other file (no server loads a version without it), and the
  manifest after that (nothing is whole by its manifest before every file is there)."""
  return sorted(paths, key=lambda path: (path == MANIFEST, path == serving_layout.SAVED_MODEL,
                                         path))


def copy_tree(source_dir: str, target_dir: str) -> None:
  """Copies every file byte for byte, also from one file system to another, in _copy_order."""
  for relative in _copy_order(relative_files(source_dir)):
    with FileSystems.open(FileSystems.join(source_dir, relative),
                          compression_type=_RAW) as reader, FileSystems.create(
                              FileSystems.join(target_dir, relative),
                              compression_type=_RAW) as writer:
      shutil.copyfileobj(reader, writer, _CHUNK)


def delete_tree(directory: str) -> None:
  """Deletes a folder and every file in it (an object store has no folders to delete)."""
  files = relative_files(directory)
  if files:
    FileSystems.delete([FileSystems.join(directory, path) for path in files])
  if _is_local(directory) and os.path.isdir(directory):
    shutil.rmtree(directory)


def withdraw(directory: str) -> None:
  """Deletes a published folder so that it is never whole meanwhile: saved_model.pb and the
  manifest go first, then the rest."""
  files = relative_files(directory)
  first = [path for path in (serving_layout.SAVED_MODEL, MANIFEST) if path in files]
  if first:
    FileSystems.delete([FileSystems.join(directory, path) for path in first])
  delete_tree(directory)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with FileSystems.open(path, compression_type=_RAW) as f:
    for chunk in iter(lambda: f.read(_CHUNK), b''):
      digest.update(chunk)
  return digest.hexdigest()


def write_manifest(directory: str, extra: Optional[Dict] = None) -> Dict:
  """Writes directory's manifest (every other file, its size and SHA-256, and `extra`'s keys)
  and returns it. Write it after every other file is complete."""
  files = {path: {'size': size, 'sha256': _sha256(FileSystems.join(directory, path))}
           for path, size, _ in listing(directory) if path != MANIFEST}
  manifest = {**(extra or {}), FILES_KEY: files}
  with FileSystems.create(FileSystems.join(directory, MANIFEST), compression_type=_RAW) as f:
    f.write((json.dumps(manifest, indent=2, sort_keys=True) + '\n').encode('utf-8'))
  return manifest


def read_manifest(directory: str) -> Dict:
  """A published folder's manifest; raises NotWhole if it is missing or unreadable."""
  try:
    with FileSystems.open(FileSystems.join(directory, MANIFEST), compression_type=_RAW) as f:
      manifest = json.loads(f.read().decode('utf-8'))
    if not isinstance(manifest.get(FILES_KEY), dict):
      raise ValueError(f'no "{FILES_KEY}"')
  except (OSError, ValueError) as e:  # BeamIOError is an OSError; JSONDecodeError a ValueError
    raise NotWhole(f'{MANIFEST} is unreadable ({e})') from e
  return manifest


def staging_dir(target: str) -> str:
  """A fresh folder beside target (same file system, so a local move is a rename) whose name is
  never a version."""
  parent, name = FileSystems.split(target.rstrip('/'))
  return FileSystems.join(parent, serving_layout.staging_name(name, uuid.uuid4().hex[:8]))


def stage(source_dir: str, target: str) -> str:
  """Copies source_dir to a staging_dir of target, ready for publish(); returns its path."""
  staging = staging_dir(target)
  copy_tree(source_dir, staging)
  return staging


def publish(staging: str, target: str, extra: Optional[Dict] = None,
            replace: bool = False) -> Dict:
  """Makes the complete folder `staging` (a staging_dir of target) appear at target whole:
  writes its manifest last, then moves it into place; returns the manifest. A folder already
  at target is replaced if `replace`, else FileExistsError (nothing changes)."""
  exists = FileSystems.exists(target) or bool(relative_files(target))
  if exists and not replace:
    raise FileExistsError(f'{target} exists')
  manifest = write_manifest(staging, extra)
  if _is_local(target):
    old = staging_dir(target) if exists else None
    if old:
      os.rename(target, old)
    os.makedirs(os.path.dirname(target.rstrip('/')), exist_ok=True)
    os.rename(staging, target)  # the whole folder appears at once
    if old:
      shutil.rmtree(old)
    return manifest
  if exists:
    withdraw(target)
  copy_tree(staging, target)  # manifest last
  delete_tree(staging)
  return manifest


def move(source: str, target: str) -> None:
  """Moves a version directory to target through publish(): on local disk it leaves source in
  one rename; elsewhere it is copied first, then withdrawn (never whole meanwhile)."""
  if _is_local(source):
    staging = staging_dir(target)
    os.makedirs(os.path.dirname(staging), exist_ok=True)
    os.rename(source, staging)
  else:
    staging = stage(source, target)
  publish(staging, target)
  if not _is_local(source):
    withdraw(source)


def _structure_problem(paths) -> str:
  """Why these files are not a whole SavedModel by their names: what TF Serving needs."""
  present = set(paths)
  if serving_layout.SAVED_MODEL not in present:
    return f'no {serving_layout.SAVED_MODEL}'
  if serving_layout.VARIABLES_INDEX not in present:
    return f'no {serving_layout.VARIABLES_INDEX}'
  counts = [int(m.group(1)) for m in map(_SHARD.match, present) if m]
  if not counts or len(set(counts)) != 1 or len(counts) != counts[0]:
    return f'variables shards missing ({len(counts)} of {counts[0] if counts else "?"})'
  return ''


def _listing_problem(files: Listing, manifest: Optional[Dict]) -> str:
  """What the listing alone shows is wrong: the SavedModel's names, and the manifest."""
  problem = _structure_problem(path for path, _, _ in files)
  if problem or manifest is None:
    return problem
  expected = manifest[FILES_KEY]
  sizes = {path: size for path, size, _ in files if path != MANIFEST}
  for path, entry in sorted(expected.items()):
    if path not in sizes:
      return f'{path} is missing (its manifest names it)'
    if sizes[path] != entry['size']:
      return f'{path} has {sizes[path]} bytes, its manifest says {entry["size"]}'
  extra = sorted(set(sizes) - set(expected))
  return f'files not in its manifest: {", ".join(extra)}' if extra else ''


def _content_problem(directory: str, manifest: Dict) -> str:
  for path, entry in sorted(manifest[FILES_KEY].items()):
    if _sha256(FileSystems.join(directory, path)) != entry['sha256']:
      return f'{path} differs from its manifest (SHA-256)'
  return ''


def _asset_problem(directory: str, paths) -> str:
  """An asset that saved_model.pb names (a vocabulary, say) missing under assets/."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  from google.protobuf import message  # pylint: disable=g-import-not-at-top
  saved_model = saved_model_pb2.SavedModel()
  try:
    with FileSystems.open(FileSystems.join(directory, serving_layout.SAVED_MODEL),
                          compression_type=_RAW) as f:
      saved_model.ParseFromString(f.read())
  except message.DecodeError:
    return f'{serving_layout.SAVED_MODEL} does not parse'
  named = {f'{ASSETS}/{asset.filename}' for graph in saved_model.meta_graphs
           for asset in graph.asset_file_def}
  missing = sorted(named - set(paths))
  return f'assets missing: {", ".join(missing)}' if missing else ''


def _has_manifest(files: Listing) -> bool:
  return any(path == MANIFEST for path, _, _ in files)


def quick_check(directory: str) -> Check:
  """The part of check() that reads neither file contents nor takes a second look: what a
  poller runs on every poll, before it runs check() once to load a version."""
  files = listing(directory)
  try:
    manifest = read_manifest(directory) if _has_manifest(files) else None
  except NotWhole as e:
    return Check(files, str(e))
  return Check(files, _listing_problem(files, manifest))


def check(directory: str, previous: Optional[Listing] = None) -> Check:
  """Whether directory is whole (module docstring). A foreign copy is compared with
  `previous`, a poller's last look at it, or else looked at again after SETTLE_SECONDS."""
  found = quick_check(directory)
  if not found.whole:
    return found
  files = found.listing
  try:
    if _has_manifest(files):
      return Check(files, _content_problem(directory, read_manifest(directory)))
    if previous is None:
      time.sleep(SETTLE_SECONDS)
      previous, files = files, listing(directory)
    if files != previous:
      return Check(files, 'a copy without a manifest whose files are still changing')
    return Check(files, _asset_problem(directory, [path for path, _, _ in files]))
  except (OSError, NotWhole) as e:  # a file went while it was read (BeamIOError: an OSError)
    return Check(files, f'its files changed while they were checked ({e})')


def is_whole(directory: str) -> bool:
  return check(directory).whole


def version_numbers(model_root: str) -> List[int]:
  """Every version directory under a model root that holds a file, whole or not, sorted: the
  one place that says which versions there are (names per serving_layout.version_number)."""
  names = {path.split('/', 1)[0] for path in relative_files(model_root) if '/' in path}
  return sorted(v for v in map(serving_layout.version_number, names) if v is not None)


def whole_versions(model_root: str) -> List[int]:
  """The whole versions under model_root, sorted; one SETTLE_SECONDS wait for all the foreign
  copies among them."""
  paths = {v: serving_layout.version_dir(model_root, v) for v in version_numbers(model_root)}
  first = {v: quick_check(path) for v, path in paths.items()}
  if any(found.whole and not _has_manifest(found.listing) for found in first.values()):
    time.sleep(SETTLE_SECONDS)
  return [v for v, path in paths.items()
          if first[v].whole and check(path, previous=first[v].listing).whole]


def latest_whole_version(model_root: str) -> Optional[int]:
  """The version TF Serving's latest policy serves from model_root: the newest whole one."""
  for version in reversed(version_numbers(model_root)):
    found = check(serving_layout.version_dir(model_root, version))
    if found.whole:
      return version
    logging.warning('Skipping version %s under %s: %s.', version, model_root, found.problem)
  return None
