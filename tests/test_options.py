"""Run options: every config field settable, typed, unknown names refused."""
import argparse
import os

import pytest

from pipeline import options
from pipeline.config import REPO_ROOT, PipelineConfig


def _config(*argv, **overrides):
  parser = argparse.ArgumentParser()
  options.add_run_options(parser)
  return options.config_from_args(parser.parse_args(list(argv)), **overrides)


def test_defaults_come_from_the_config():
  assert _config() == PipelineConfig()


def test_flags_and_nested_fields(tmp_path):
  path = tmp_path / 'c.json'
  path.write_text('{"hparams.dropout": 0.25, "gate.auc_floor": 0.6}')
  config = _config('--span', '4', '--window-spans', '2', '--tune', '--config', str(path),
                   '--set', 'hparams.learning_rate=0.002', '--set', 'hparams.deep_units=[16, 8]',
                   '--set', 'gate.auc_floor=0.7', '--set', 'hparams.use_image=false')
  assert (config.span, config.window_spans, config.tune) == (4, 2, True)
  assert config.hparams.learning_rate == 0.002 and config.hparams.dropout == 0.25
  assert config.hparams.deep_units == (16, 8) and config.hparams.use_image is False
  assert config.gate.auc_floor == 0.7  # --set wins over --config


def test_every_field_is_reachable():
  names = options.field_names()
  assert {'hparams.learning_rate', 'hparams.max_epochs', 'gate.auc_tolerance',
          'split.eval_fraction', 'tuner_trials', 'enable_cache'} <= set(names)


@pytest.mark.parametrize('item, message', [
    ('hparams.nope=1', 'unknown config field'),
    ('hparams.max_epochs=many', 'is not a'),
    ('window_spans', 'expected NAME=VALUE'),
])
def test_bad_values_are_refused_in_words(item, message):
  with pytest.raises(ValueError, match=message):
    _config('--set', item)


def test_beam_workers_become_direct_runner_flags(monkeypatch):
  parser = argparse.ArgumentParser()
  options.add_beam_workers_option(parser)
  assert options.beam_workers_args(parser.parse_args([]).beam_workers) == []
  monkeypatch.setenv('PYTHONPATH', '/elsewhere')
  assert options.beam_workers_args(parser.parse_args(['--beam-workers', '3']).beam_workers) == [
      '--direct_running_mode=multi_processing', '--direct_num_workers=3']
  # The workers start with this environment and import the repository's modules.
  assert os.environ['PYTHONPATH'].split(os.pathsep) == [REPO_ROOT, '/elsewhere']
  with pytest.raises(ValueError, match='expected a number of processes'):
    options.beam_workers_args(0)
