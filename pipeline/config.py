"""Everything a user tunes about a run, in one place, shared by all runners."""
import dataclasses
import os
from typing import Optional

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_FILE = os.path.join(REPO_ROOT, 'schema', 'schema.pbtxt')
# Module functions referenced by path, as in the TFX taxi template; importable from the repo
# root locally and from the pipeline image's working directory on Kubeflow.
PREPROCESSING_FN = 'models.preprocessing.preprocessing_fn'
RUN_FN = 'models.trainer.run_fn'


@dataclasses.dataclass(frozen=True)
class GateConfig:
  """When the Evaluator blesses a model (all must hold; the baseline is the served model)."""
  auc_floor: float = 0.65  # absolute quality floor
  auc_tolerance: float = 0.01  # allowed AUC drop against the served model
  logloss_tolerance: float = 0.01  # allowed log-loss rise against the served model


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  pipeline_name: str = 'adclick'
  model_name: str = 'adclick'  # TF Serving model name: <serving_root>/<model_name>/<version>
  span: Optional[int] = None  # None = latest span under data_root
  # Train on this many months: the span above and the window_spans - 1 before it (those
  # that exist). The hash split draws eval rows from every month of the window too.
  window_spans: int = 1
  train_steps: int = 1200
  epochs: int = 8
  batch_size: int = 128
  use_image: bool = True
  max_rejected_fraction: float = 0.05  # ExampleGen fails above this share of rejected rows
  gate: GateConfig = GateConfig()
  # ExampleGen hash split of each span: train / validation (early stopping) / eval (TFMA).
  split_buckets: tuple = (('train', 7), ('validation', 1), ('eval', 2))
  slice_features: tuple = ('category', 'device', 'placement')

  def trainer_custom_config(self) -> dict:
    return {'use_image': self.use_image, 'epochs': self.epochs, 'batch_size': self.batch_size}
