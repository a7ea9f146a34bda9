"""The run options both runners take, derived from PipelineConfig so they cannot drift apart.

    --span N  --window-spans K  --tune            the common ones, as flags
    --set NAME=VALUE                               any config field, nested ones dotted:
                                                   hparams.learning_rate=0.002, gate.auc_floor=0.7
    --config FILE.json                             the same as a JSON object of NAME: VALUE
Values are parsed as JSON where they can be (numbers, true/false, null, [lists]) and taken as
strings otherwise; each is checked against the field's type.

Runners that run Beam on this machine (local_runner.py, batch/score.py) also take
`--beam-workers N` (add_beam_workers_option): the Beam steps then run in N worker processes.
"""
import argparse
import dataclasses
import json
import os
import typing
from typing import Any, Dict, List, Optional

from pipeline.config import REPO_ROOT, PipelineConfig

# Flags for the fields a monthly operator changes most; every other field goes through --set.
_FLAGS = {'span': 'span', 'window_spans': 'window-spans', 'tune': 'tune'}


def add_run_options(parser: argparse.ArgumentParser) -> None:
  defaults = PipelineConfig()
  group = parser.add_argument_group('run options (pipeline/config.py)')
  group.add_argument('--span', type=int, default=None,
                     help='month to train on (default: the latest span)')
  group.add_argument('--window-spans', type=int, default=None,
                     help=f'train on this many months ending at the span '
                     f'(default {defaults.window_spans})')
  group.add_argument('--tune', action='store_true', default=None,
                     help=f'search hyperparameters first ({defaults.tuner_trials} trials), '
                     'keep the best for later runs')
  add_config_options(group)


def add_config_options(parser) -> None:
  """--set and --config alone: for a compiler that takes config fields but no run flags
  (batch/kfp_batch.py: the Dataflow workers and pod sizes)."""
  parser.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                      help='set any config field, e.g. hparams.learning_rate=0.002')
  parser.add_argument('--config', metavar='FILE.json',
                      help='a JSON object of config fields (NAME: VALUE), applied before --set')


def add_beam_workers_option(parser: argparse.ArgumentParser) -> None:
  parser.add_argument(
      '--beam-workers', type=int, default=None, metavar='N',
      help='run every Beam step in N worker processes (DirectRunner multi_processing: '
      "Dataflow's worker harness, on this machine); default: in this process")


def beam_workers_args(workers: Optional[int]) -> List[str]:
  """The Beam flags of --beam-workers N: [] for None (Beam's DirectRunner in this process).

  In multi_processing mode the DirectRunner runs each step in N Python worker processes
  through the Fn API harness that Dataflow's runner v2 uses: a step's functions are pickled
  and its module state is fresh in every worker, as on Dataflow.
  The workers are started with this process's environment and must import this
  repository's modules: the repository root is added to PYTHONPATH for them (on Dataflow,
  the pipeline image has it).
  """
  if workers is None:
    return []
  if workers < 1:
    raise ValueError(f'--beam-workers {workers}: expected a number of processes >= 1')
  _repo_on_python_path()
  return ['--direct_running_mode=multi_processing', f'--direct_num_workers={workers}']


def _repo_on_python_path() -> None:
  paths = [path for path in os.environ.get('PYTHONPATH', '').split(os.pathsep) if path]
  if REPO_ROOT not in paths:
    os.environ['PYTHONPATH'] = os.pathsep.join([REPO_ROOT] + paths)


def field_names(config_class=PipelineConfig, prefix: str = '') -> Dict[str, Any]:
  """Every settable field, dotted, with its type: {'hparams.learning_rate': float, ...}."""
  names = {}
  hints = typing.get_type_hints(config_class)
  for field in dataclasses.fields(config_class):
    kind = hints[field.name]
    if dataclasses.is_dataclass(kind):
      names.update(field_names(kind, f'{prefix}{field.name}.'))
    else:
      names[prefix + field.name] = kind
  return names


def _coerce(name: str, kind: Any, value: Any) -> Any:
  if isinstance(value, str):
    try:
      value = json.loads(value)
    except ValueError:
      pass  # a plain string
  allowed = typing.get_args(kind) or (kind,)  # Optional[int] -> (int, NoneType)
  if value is None and type(None) in allowed:
    return None
  for option in allowed:
    if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value)
    if option is tuple and isinstance(value, list):
      return tuple(value)
    if option is not type(None) and isinstance(value, option) and not (
        option is int and isinstance(value, bool)):
      return value
  if str in allowed:
    return str(value)
  raise ValueError(f'{name}: {value!r} is not a {kind}')


def apply(config: PipelineConfig, values: Dict[str, Any]) -> PipelineConfig:
  """Returns `config` with dotted fields replaced; unknown names are an error."""
  known = field_names()
  for name, value in values.items():
    if name not in known:
      raise ValueError(f'unknown config field {name!r}; known: {", ".join(sorted(known))}')
    config = _replace(config, name.split('.'), _coerce(name, known[name], value))
  return config


def _replace(obj, path, value):
  if len(path) == 1:
    return dataclasses.replace(obj, **{path[0]: value})
  return dataclasses.replace(obj, **{path[0]: _replace(getattr(obj, path[0]), path[1:], value)})


def config_from_args(args: argparse.Namespace, **overrides) -> PipelineConfig:
  """The config a runner runs with: defaults, then --config, --set, the flags, `overrides`."""
  values = {}
  if args.config:
    with open(args.config) as f:
      values.update(json.load(f))
  for item in args.set:
    name, sep, value = item.partition('=')
    if not sep:
      raise ValueError(f'--set {item!r}: expected NAME=VALUE')
    values[name.strip()] = value
  for field in _FLAGS:
    if getattr(args, field, None) is not None:
      values[field] = getattr(args, field)
  values.update(overrides)
  return apply(PipelineConfig(), values)
