"""Rollback in one command: make an earlier version the one TF Serving serves.

    python -m serving.rollback --model-base-path gs://adclick-models/serving \\
        (--previous | --to VERSION) --reason "CTR dropped 8% after 1795360000"

Under TF Serving's default policy (the newest version of `<base>/<model>/`, which
tensorflow/serving and serving/emulator/model_server.py both poll) a version is served because it is
the newest, so rolling back means taking the newer versions out of the model root. They are
moved, never deleted, to `<base>/<model>.rolled-back/<version>/` (models/serving_layout.py),
beside an audit record `<version>.rollback.json`: when, from, to, moved, reason, who.

No moment serves nothing or a partial version: the version rolled back to stays in place,
complete, throughout; the newer ones leave one at a time, oldest first, so the one being served
leaves last. A server keeps serving what it has loaded until the older version has loaded
(TF Serving's availability-preserving policy; the local server does the same). Each version
moves as every version is published (models/storage.py: move, publish): on local disk it
leaves in one rename and gets a manifest aside; GCS has no rename: the version is copied aside
(manifest last) first, then its saved_model.pb and manifest are deleted before the rest, so a
server (re)starting meanwhile can never load what is left of it. Which versions are whole is
storage.check's rule, the one the servers, the baseline and batch scoring apply.

Afterwards the pipeline's baseline (components/served_baseline.py) is the version rolled back
to and the run summary names the rollback; SafePusher numbers the next push above every version
ever used, moved-aside ones included, so it is served as usual. Works with the default latest
policy; with version labels (serving/labels.py), move the labels instead.
"""
import argparse
import datetime
import getpass
import json
import socket
import sys
from typing import Optional

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from models import serving_layout
from models import storage


class RollbackError(Exception):
  """Why nothing was rolled back; nothing was moved."""


def who() -> str:
  return f'{getpass.getuser()}@{socket.gethostname()}'


def rollback(model_root: str, reason: str, to: Optional[int] = None,
             by: Optional[str] = None) -> dict:
  """Serves `to` (default: the complete version below the served one) from model_root by
  moving every newer version aside; returns the audit record it wrote."""
  if not reason.strip():
    raise RollbackError('a rollback needs a reason (--reason)')
  whole = storage.whole_versions(model_root)
  if not whole:
    raise RollbackError(f'no complete version is served from {model_root}')
  served, complete = whole[-1], whole[:-1]  # the latest policy serves the newest whole one
  if to is None:
    if not complete:
      raise RollbackError(f'version {served} is the only complete version under {model_root}')
    to = complete[-1]
  elif to not in complete:
    raise RollbackError(
        f'version {to} is not a complete version older than the served {served} under '
        f'{model_root} (those are: {", ".join(map(str, complete)) or "none"}); to serve a newer '
        'model, push it')
  moved = [v for v in storage.version_numbers(model_root) if v > to]
  aside = serving_layout.rolled_back_root(model_root)
  taken = [v for v in moved if storage.relative_files(serving_layout.version_dir(aside, v))]
  if taken:
    raise RollbackError(f'{aside} already holds version(s) {taken}; move them away first')
  for version in moved:  # oldest first: the served one leaves last
    storage.move(serving_layout.version_dir(model_root, version),
                 serving_layout.version_dir(aside, version))
  now = datetime.datetime.now(datetime.timezone.utc)
  record = {'when': now.isoformat(timespec='milliseconds'), 'from': served, 'to': to,
            'moved': moved, 'reason': reason, 'who': by or who(), 'model_root': model_root,
            'moved_to': aside}
  with FileSystems.create(serving_layout.rollback_record(model_root, served),
                          compression_type=CompressionTypes.UNCOMPRESSED) as f:
    f.write(json.dumps(record, indent=2).encode())
  return record


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--model-base-path', required=True,
                      help='the serving root (local or gs://); the model is <this>/<model-name>')
  parser.add_argument('--model-name', default=serving_layout.MODEL_NAME)
  which = parser.add_mutually_exclusive_group(required=True)
  which.add_argument('--previous', action='store_true',
                     help='the newest complete version older than the served one')
  which.add_argument('--to', type=int, metavar='VERSION', help='this older version')
  parser.add_argument('--reason', required=True, help='why (kept in the audit record)')
  parser.add_argument('--who', help='who rolls back (default: user@host)')
  args = parser.parse_args(argv)
  model_root = serving_layout.model_root(args.model_base_path, args.model_name)
  try:
    record = rollback(model_root, args.reason, args.to, args.who)
  except RollbackError as e:
    print(f'Nothing rolled back: {e}.', file=sys.stderr)
    return 1
  print(f"Rolled back {args.model_name} from version {record['from']} to {record['to']}: "
        f"moved version(s) {', '.join(map(str, record['moved']))} to {record['moved_to']} "
        f"(record: {serving_layout.rollback_record(model_root, record['from'])}). TF Serving "
        f"serves {record['to']} once its next poll has loaded it.")
  return 0


if __name__ == '__main__':
  sys.exit(main())
