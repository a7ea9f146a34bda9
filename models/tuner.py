"""tuner_fn for the TFX Tuner: a bounded KerasTuner random search over the model's HParams.

What is searched, and for how long, is the config's (pipeline/config.py), in the Tuner's
custom_config: `tuner` (models/model.py TunerConfig: the search space, the epochs of a trial),
`tuner_trials`, and `hparams` for every value not searched. Each trial trains on the train
split with early stopping and is scored by its validation log-loss (the out-of-time slice
before the eval period). The Trainer then uses the best values and stores them
(models/trainer.py), so later monthly runs reuse them without searching again.
"""
import keras_tuner
import tensorflow_transform as tft
from tfx import v1 as tfx

from models import model as model_lib
from models import trainer


def hyperparameters(search: model_lib.TunerConfig) -> keras_tuner.HyperParameters:
  hp = keras_tuner.HyperParameters()
  for name, values in search.search_space.items():
    hp.Choice(name, values)
  return hp


def tuner_fn(fn_args: tfx.components.FnArgs) -> tfx.components.TunerFnResult:
  custom = fn_args.custom_config or {}
  base = model_lib.HParams().replace(custom.get('hparams'))
  search = model_lib.TunerConfig(**custom.get('tuner', {}))
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  train, validation, steps_per_epoch, rows = trainer.datasets(fn_args, tf_transform_output, base)

  def build(hp):
    return model_lib.build_model(tf_transform_output, base.replace(hp.values), rows)

  tuner = keras_tuner.RandomSearch(
      build, max_trials=custom.get('tuner_trials', 1), hyperparameters=hyperparameters(search),
      objective=keras_tuner.Objective('val_logloss', 'min'), directory=fn_args.working_dir,
      project_name='adclick_tuning', seed=1)
  return tfx.components.TunerFnResult(tuner=tuner, fit_kwargs={
      'x': train, 'validation_data': validation, 'steps_per_epoch': steps_per_epoch,
      'epochs': min(search.trial_epochs, base.max_epochs), 'callbacks': trainer.callbacks(base),
      'verbose': 2})
