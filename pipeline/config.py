"""Everything a user tunes about a run, in one place, shared by all runners.

Each part is defined once, beside the code that uses it (models/ and components/ never
import pipeline/), and gathered here: the split (splits.SplitConfig), the hyperparameters
(models/model.py HParams) and their search (TunerConfig), the Transform graph's bucket counts
(models/preprocessing.py PreprocessingConfig), the gate (components/gate_rule.py GateConfig),
and where Kubeflow runs the steps and how big (pipeline/resources.py).

Every field (nested ones too, e.g. `hparams.learning_rate`, `gate.auc_floor`) can be set from
either runner with `--set NAME=VALUE` or `--config FILE.json` (pipeline/options.py).
"""
import dataclasses
import os
from typing import Optional

from components.gate_rule import GateConfig
from components.image_csv_example_gen import splits
from models import serving_layout
from models.model import HParams, TunerConfig
from models.preprocessing import PreprocessingConfig
from pipeline.resources import DataflowConfig, ResourcesConfig, VertexConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_FILE = os.path.join(REPO_ROOT, 'schema', 'schema.pbtxt')
# Module functions referenced by path, as in the TFX taxi template; importable from the repo
# root locally and from the pipeline image's working directory on Kubeflow.
PREPROCESSING_FN = 'models.preprocessing.preprocessing_fn'
RUN_FN = 'models.trainer.run_fn'
TUNER_FN = 'models.tuner.tuner_fn'


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  pipeline_name: str = 'adclick'
  model_name: str = serving_layout.MODEL_NAME  # <serving_root>/<model_name>/<version>
  span: Optional[int] = None  # None = latest span under data_root
  # Train on this many months: the span above and the window_spans - 1 before it (those
  # that exist).
  window_spans: int = 3
  max_rejected_fraction: float = 0.05  # ExampleGen fails above this share of rejected rows
  split: splits.SplitConfig = splits.SplitConfig()
  preprocessing: PreprocessingConfig = PreprocessingConfig()  # Transform's bucket counts
  hparams: HParams = HParams()
  gate: GateConfig = GateConfig()
  # Hyperparameter search (Tuner + KerasTuner) before training; its best values are kept at
  # tuned_hparams_uri and reused by later runs that do not tune.
  tune: bool = False
  tuner_trials: int = 6
  # What is searched: `--set tuner.search_space='{"dropout": [0.0, 0.2]}'` (replaces it).
  tuner: TunerConfig = TunerConfig()
  tuned_hparams_uri: Optional[str] = None  # runners default it beside their outputs
  resources: ResourcesConfig = ResourcesConfig()  # Kubeflow pod sizes (pipeline/resources.py)
  dataflow: DataflowConfig = DataflowConfig()  # Dataflow workers, with --dataflow (same file)
  vertex: VertexConfig = VertexConfig()  # Vertex AI Training pools, with --vertex (same file)
  # TFX caching: a repeated run over unchanged inputs reuses finished components (the
  # served-model baseline is always re-read).
  enable_cache: bool = True

  def transform_custom_config(self) -> dict:
    """What preprocessing_fn gets (models/preprocessing.py)."""
    return dataclasses.asdict(self.preprocessing)

  def trainer_custom_config(self) -> dict:
    return {'hparams': dataclasses.asdict(self.hparams),
            'tuned_hparams_uri': self.tuned_hparams_uri}

  def tuner_custom_config(self) -> dict:
    """What tuner_fn gets (models/tuner.py): the Trainer's, the search and its budget."""
    return dict(self.trainer_custom_config(), tuner_trials=self.tuner_trials,
                tuner=dataclasses.asdict(self.tuner))
