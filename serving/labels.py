"""Version labels and the canary flow, one command a step, on TF Serving's model config file.

    python -m serving.labels show              --config deploy/models.config
    python -m serving.labels set stable 1795273561 --config ...  # pin: pushes wait for a canary
    (push a new model: the pipeline's SafePusher; under a pinned config it is not served yet)
    python -m serving.labels set canary 1795360000 --config ...  # load it under `canary`
    (send a share of traffic to it: serving.client.Client(..., canary_share=0.05))
    python -m serving.labels promote           --config ...  # stable := canary; old one unloaded
    python -m serving.labels remove canary     --config ...  # or: roll the canary back
    python -m serving.labels latest            --config ...  # back to serving the newest push

The file is the text ModelServerConfig that the server re-reads every
--model_config_file_poll_wait_seconds (serving/model_config.py; deploy/ mounts it from a
ConfigMap). Labels need the `specific` version policy, which serves exactly the versions
listed: setting a label under the default `latest` policy pins what that policy serves now
(the newest whole version under base_path, models/storage.py) as `stable`, so unlabelled and
`stable` traffic keep their version and a push waits for its canary.

TF Serving's rules, which these commands keep: a label may only move to a version that is
already loaded (here: listed in the policy), and a *new* label may point at a version still
loading only under --allow_version_labels_for_unavailable_models (deploy/ sets it). A config
that breaks them is refused by the server as a whole, so nothing changes; this tool refuses it
first and says why. While a canary runs, requests without a label get the newest loaded version,
the canary: the internal API calls with a label (the client's canary_share does).
"""
import argparse
import sys
from typing import List, Optional

from models import serving_layout
from serving import model_config


class LabelError(Exception):
  """Why the config was left as it was."""


def _versions(entry) -> List[int]:
  return sorted(set(entry.model_version_policy.specific.versions))


def _set_versions(entry, versions) -> None:
  entry.model_version_policy.specific.Clear()
  entry.model_version_policy.specific.versions.extend(sorted(set(versions)))


def served_by_latest(base_path: str) -> Optional[int]:
  """What the latest policy serves from base_path now: its newest whole version."""
  from models import storage  # pylint: disable=g-import-not-at-top  (Beam: only when needed)
  return storage.latest_whole_version(base_path)


def set_label(entry, label: str, version: int) -> None:
  if entry.model_version_policy.WhichOneof('policy_choice') != 'specific':
    pinned = served_by_latest(entry.base_path)
    if pinned is None:
      raise LabelError(f'no complete version under {entry.base_path} to pin')
    _set_versions(entry, [pinned])
    if label != serving_layout.STABLE:
      entry.version_labels[serving_layout.STABLE] = pinned
  current = entry.version_labels.get(label)
  if current is not None and current != version and version not in _versions(entry):
    raise LabelError(
        f'{label} points at version {current}; TF Serving moves a label only to a version it '
        f'has loaded, and {version} is not among the served versions {_versions(entry)}: '
        f'load it under another label first (set {serving_layout.CANARY} {version})')
  _set_versions(entry, _versions(entry) + [version])
  entry.version_labels[label] = version


def remove_label(entry, label: str) -> None:
  if label not in entry.version_labels:
    raise LabelError(f'there is no label {label} (labels: {dict(entry.version_labels)})')
  del entry.version_labels[label]
  if not entry.version_labels:
    raise LabelError(f'{label} is the last label: use `latest` to serve the newest version')
  _set_versions(entry, entry.version_labels.values())


def promote(entry) -> None:
  """stable moves to the canary's version (loaded, so TF Serving takes it); the canary label
  goes, and the old stable version is unloaded once nothing names it."""
  if serving_layout.CANARY not in entry.version_labels:
    raise LabelError('there is no canary to promote')
  entry.version_labels[serving_layout.STABLE] = entry.version_labels[serving_layout.CANARY]
  remove_label(entry, serving_layout.CANARY)


def serve_latest(entry) -> None:
  entry.model_version_policy.Clear()
  entry.model_version_policy.latest.SetInParent()
  entry.version_labels.clear()


def describe(entry) -> str:
  policy = entry.model_version_policy.WhichOneof('policy_choice') or 'latest'
  versions = f' {_versions(entry)}' if policy == 'specific' else ''
  labels = ', '.join(f'{k}={v}' for k, v in sorted(entry.version_labels.items())) or 'none'
  return f'model {entry.name} ({entry.base_path}): policy {policy}{versions}; labels: {labels}'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  common = argparse.ArgumentParser(add_help=False)  # after the command: `set ... --config F`
  common.add_argument('--config', required=True, help='the model config file to edit')
  common.add_argument('--model-name', default=serving_layout.MODEL_NAME)
  commands = parser.add_subparsers(dest='command', required=True)
  commands.add_parser('show', parents=[common], help='the policy and labels')
  setting = commands.add_parser('set', parents=[common],
                                help='point LABEL at VERSION (and serve VERSION)')
  setting.add_argument('label')
  setting.add_argument('version', type=int)
  removing = commands.add_parser('remove', parents=[common],
                                 help='drop LABEL (and its version, if unlabelled)')
  removing.add_argument('label')
  commands.add_parser('promote', parents=[common], help='stable := canary, canary dropped')
  commands.add_parser('latest', parents=[common],
                      help='no labels; serve the newest version again')
  args = parser.parse_args(argv)
  try:
    config = model_config.read(args.config)
    entry = model_config.model(config, args.model_name)
    if args.command == 'set':
      set_label(entry, args.label, args.version)
    elif args.command == 'remove':
      remove_label(entry, args.label)
    elif args.command == 'promote':
      promote(entry)
    elif args.command == 'latest':
      serve_latest(entry)
  except (LabelError, model_config.ConfigError) as e:
    print(f'{args.config} unchanged: {e}.', file=sys.stderr)
    return 1
  if args.command != 'show':
    model_config.write(args.config, config)
  print(describe(entry))
  return 0


if __name__ == '__main__':
  sys.exit(main())
