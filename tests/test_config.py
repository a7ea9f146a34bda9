"""pipeline/config.py: every tunable in one config, each defined once, reaching its component.

The option parsing itself is tests/test_options.py's; here: the parts gathered from models/,
components/ and pipeline/resources.py, set with --set, arrive where the component reads them.
"""
import argparse
import dataclasses
import json
import os

import pytest

from components.gate_rule import GateConfig
from components.image_csv_example_gen import splits
from models import model as model_lib
from models import preprocessing
from models import tuner
from pipeline import config as config_lib
from pipeline import options
from tests import conftest
from pipeline import resources
from pipeline.pipeline import create_pipeline


def _config(*sets):
  parser = argparse.ArgumentParser()
  options.add_run_options(parser)
  return options.config_from_args(parser.parse_args([a for s in sets for a in ('--set', s)]))


def _component(config, node_id):
  [component] = [c for c in create_pipeline('/tmp/root', '/tmp/data', '/tmp/serving',
                                            config=config).components if c.id == node_id]
  return component


def _custom_config(config, node_id):
  return json.loads(_component(config, node_id).exec_properties['custom_config'])


def test_each_part_is_the_class_of_the_module_that_uses_it():
  """Defined once, below the pipeline; config.py gathers (not copies) them."""
  config = config_lib.PipelineConfig()
  assert type(config.split) is splits.SplitConfig
  assert type(config.hparams) is model_lib.HParams
  assert type(config.tuner) is model_lib.TunerConfig
  assert type(config.preprocessing) is preprocessing.PreprocessingConfig
  assert type(config.gate) is GateConfig
  assert (type(config.resources), type(config.dataflow), type(config.vertex)) == (
      resources.ResourcesConfig, resources.DataflowConfig, resources.VertexConfig)


def test_every_tunable_is_settable():
  names = set(options.field_names())
  assert {'preprocessing.oov_buckets', 'preprocessing.numeric_buckets', 'tuner.search_space',
          'tuner.trial_epochs', 'tuner_trials', 'dataflow.max_num_workers',
          'dataflow.transform_machine_type', 'vertex.workers',
          'vertex.accelerator_type'} <= names


def test_bucket_counts_reach_transform_custom_config():
  config = _config('preprocessing.oov_buckets=4', 'preprocessing.numeric_buckets=20',
                   'preprocessing.vocabulary_min_count=5', 'preprocessing.vocabulary_top_k=1000')
  custom = _custom_config(config, 'Transform')
  assert custom == {'oov_buckets': 4, 'numeric_buckets': 20, 'vocabulary_min_count': 5,
                    'vocabulary_top_k': 1000}
  # preprocessing_fn takes exactly what Transform passes it.
  assert preprocessing.PreprocessingConfig(**custom) == config.preprocessing
  # An exec property: TFX's cache key of Transform (and so everything after it) changes.
  assert _component(config, 'Transform').exec_properties['custom_config'] != (
      _component(config_lib.PipelineConfig(), 'Transform').exec_properties['custom_config'])


def test_search_space_and_trial_epochs_reach_the_tuner():
  config = _config('tune=true',
                   'tuner.search_space={"dropout": [0.0, 0.5], "cross_layers": [1, 3]}',
                   'tuner.trial_epochs=2', 'tuner_trials=3', 'hparams.learning_rate=0.003')
  custom = _custom_config(config, 'Tuner')
  assert custom['tuner'] == {'search_space': {'dropout': [0.0, 0.5], 'cross_layers': [1, 3]},
                             'trial_epochs': 2}
  assert (custom['tuner_trials'], custom['hparams']['learning_rate']) == (3, 0.003)
  # tuner_fn's search: these choices and no others; the Trainer gets none of it.
  space = tuner.hyperparameters(model_lib.TunerConfig(**custom['tuner'])).space
  assert {hp.name: list(hp.values) for hp in space} == {'dropout': [0.0, 0.5],
                                                          'cross_layers': [1, 3]}
  assert 'tuner' not in _custom_config(config, 'Trainer')


def test_the_default_search_covers_hparams_fields():
  search = model_lib.TunerConfig()
  assert set(search.search_space) <= {f.name for f in dataclasses.fields(model_lib.HParams)}
  assert len(tuner.hyperparameters(search).space) == len(search.search_space)


@pytest.mark.parametrize('item, message', [
    ('tuner.search_space={"nope": [1]}', "'nope' is not a hyperparameter"),
    ('tuner.search_space={"dropout": []}', 'non-empty list'),
    ('tuner.search_space={"deep_units": [[64, 32]]}', 'non-empty list'),
    ('tuner.trial_epochs=0', 'trial_epochs'),
    ('preprocessing.oov_buckets=0', 'oov_buckets'),
])
def test_bad_tunables_are_refused_in_words(item, message):
  with pytest.raises(ValueError, match=message):
    _config(item)


def test_the_small_log_settings_file_names_known_fields():
  """examples/small_log.json (the levers measured on the real logs, docs/benchmarks.md) stays a
  valid --config file as the config's fields change."""
  parser = argparse.ArgumentParser()
  options.add_run_options(parser)
  path = os.path.join(conftest.REPO, 'examples', 'small_log.json')
  config = options.config_from_args(parser.parse_args(['--config', path]))
  with open(path) as f:
    for name, value in json.load(f).items():
      section, field = name.split('.')
      assert getattr(getattr(config, section), field) == value
