"""The ad click pipeline, defined once for every runner (local, Kubeflow)."""
import dataclasses
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.v1.extensions import google_cloud_ai_platform as ai_platform
from tfx.proto import range_config_pb2

from components.data_gate import DataGate
from components.edge_export import EdgeExport
from components.gated_evaluator import GatedEvaluator
from components.image_csv_example_gen import splits
from components.image_csv_example_gen.component import ImageCsvExampleGen
from components.safe_pusher import SafePusher
from components.served_baseline import ServedModelBaseline
from models import edge_model
from models import features
from models import serving_layout
from models import signatures
from pipeline import cache_keys
from pipeline.config import PREPROCESSING_FN, RUN_FN, SCHEMA_FILE, TUNER_FN, PipelineConfig


def range_config(config: PipelineConfig) -> Optional[range_config_pb2.RangeConfig]:
  """Which spans ExampleGen reads: the latest (or config.span) and the window before it."""
  if config.span is None:
    if config.window_spans == 1:
      return None  # the latest span
    return range_config_pb2.RangeConfig(rolling_range=range_config_pb2.RollingRange(
        num_spans=config.window_spans))
  return range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
      start_span_number=max(0, config.span - config.window_spans + 1),
      end_span_number=config.span))


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
  """Metrics with 95 % jackknife intervals (paired when there is a baseline).

  No threshold is given to TFMA: the Evaluator decides the blessing once, from config.gate
  (components/gate_rule.py). Calibration (mean prediction / mean label) is derived from the
  two means in the report.
  """
  # 1,000 thresholds instead of TFMA's 10,000: the jackknife recomputes AUC from them per
  # slice and sample in Python, and 10,000 made the Evaluator take minutes on 4,000 rows.
  auc = tfma.MetricConfig(class_name='AUC', config='{"num_thresholds": 1000}')
  return tfma.EvalConfig(
      # A generic SavedModel to TFMA: as a Keras model it would also re-evaluate the compiled
      # Keras metrics, loading the model once per jackknife combiner (minutes, not seconds).
      model_specs=[tfma.ModelSpec(signature_name=signatures.EXAMPLES_SIGNATURE,
                                  label_key=features.LABEL_KEY,
                                  model_type=tfma.constants.TF_GENERIC)],
      slicing_specs=[tfma.SlicingSpec()] + [
          tfma.SlicingSpec(feature_keys=[name]) for name in features.slice_features()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name='ExampleCount'), auc,
          tfma.MetricConfig(class_name='BinaryCrossentropy'),
          tfma.MetricConfig(class_name='MeanLabel'),
          tfma.MetricConfig(class_name='MeanPrediction'),
          # The HTML report's reliability diagram (components/evaluation_report_html.py).
          tfma.MetricConfig(class_name='CalibrationPlot', config='{"num_buckets": 1000}'),
      ])],
      options=tfma.Options(compute_confidence_intervals={'value': True}))


@dataclasses.dataclass(frozen=True)
class VertexTraining:
  """Where the Trainer and Tuner run when they run on Vertex AI Training (kubeflow_runner.py
  --vertex); how big is config.vertex (pipeline/resources.py)."""
  project: str
  region: str
  image: str  # the pipeline image: every replica runs the TFX executor from it


def _vertex_job(vertex: VertexTraining, args_key: str, pools: List[dict]) -> dict:
  """The custom_config entries that make an ai_platform Trainer or Tuner launch its executor
  as a Vertex AI custom job and wait for it (the task's own pod does no training)."""
  return {ai_platform.ENABLE_VERTEX_KEY: True, ai_platform.VERTEX_REGION_KEY: vertex.region,
          args_key: {'project': vertex.project, 'job_spec': {'worker_pool_specs': pools}}}


def training_components(config: PipelineConfig, vertex: Optional[VertexTraining]):
  """(Trainer class, its custom_config, Tuner class, its custom_config): TFX's own, in the
  task's process, or with `vertex` the ai_platform ones, which run the same executor on
  Vertex AI Training. The Trainer gets all of config.vertex's pools; the Tuner the chief's
  alone, as its trials run one after another."""
  custom_config, tuner_config = config.trainer_custom_config(), config.tuner_custom_config()
  if vertex is None:
    return tfx.components.Trainer, custom_config, tfx.components.Tuner, tuner_config
  pools = config.vertex.worker_pool_specs(vertex.image)
  return (ai_platform.Trainer,
          dict(custom_config, **_vertex_job(vertex, ai_platform.TRAINING_ARGS_KEY, pools)),
          ai_platform.Tuner,
          dict(tuner_config, **_vertex_job(vertex, ai_platform.experimental.TUNING_ARGS_KEY,
                                           pools[:1])))


def create_pipeline(pipeline_root: str, data_root: str, serving_root: str,
                    config: PipelineConfig = PipelineConfig(),
                    metadata_connection_config=None,
                    beam_pipeline_args: Optional[List[str]] = None,
                    schema_file: str = SCHEMA_FILE,
                    fingerprints: Optional[cache_keys.Fingerprints] = None,
                    vertex: Optional[VertexTraining] = None) -> tfx.dsl.Pipeline:
  """The pipeline; every root may be a local path or gs://.

  Args:
    pipeline_root: Where artifacts go.
    data_root: Holds the monthly `span-<N>/ads.csv` and `span-<N>/images/`.
    serving_root: TF Serving's model base path: the Pusher writes, and the baseline is
      read from, `<serving_root>/<config.model_name>/<version>/`.
    config: What a user tunes (spans, split, buckets, hyperparameters, gate, tuning, caching).
    metadata_connection_config: MLMD for local runs; None on Kubeflow.
    beam_pipeline_args: For every Beam-based component, e.g. DataflowRunner flags.
    schema_file: The schema as the executors see it (inside the image on Kubeflow).
    fingerprints: What the run reads that TFX's cache key misses (cache_keys.py), computed
      by the runner just before the run. Caching (config.enable_cache) needs them: without
      them (Kubeflow, whose spec is compiled once for many monthly runs) it is off.
    vertex: Run the Trainer and Tuner on Vertex AI Training; None: in their own process.
  """
  model_root = serving_layout.model_root(serving_root, config.model_name)
  example_gen = ImageCsvExampleGen(
      input_base=data_root, max_rejected_fraction=config.max_rejected_fraction,
      split_config=config.split, range_config=range_config(config))
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])
  data_gate = DataGate(
      schema=schema_gen.outputs['schema'],
      anomalies=example_validator.outputs['anomalies'],
      examples=example_gen.outputs['examples'], data_root=data_root)

  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN, custom_config=config.transform_custom_config(),
      materialize=False,
      # Its statistics would cover the decoded images (3,072 floats a row): at 60,000 rows
      # they took the run's peak memory from 2.4 to 4.1 GiB (docs/benchmarks.md). Nothing
      # reads them; StatisticsGen already describes the raw data.
      disable_statistics=True)
  transform.add_upstream_node(data_gate)  # bad data stops the run here

  trainer_class, trainer_config, tuner_class, tuner_config = training_components(
      config, vertex)
  train_args = tfx.proto.TrainArgs(splits=[splits.TRAIN])
  eval_args = tfx.proto.EvalArgs(splits=[splits.VALIDATION])
  tuner = None
  if config.tune:
    tuner = tuner_class(
        tuner_fn=TUNER_FN, examples=example_gen.outputs['examples'],
        transform_graph=transform.outputs['transform_graph'],
        schema=schema_gen.outputs['schema'], train_args=train_args, eval_args=eval_args,
        custom_config=tuner_config)
  trainer_component = trainer_class(
      run_fn=RUN_FN,
      examples=example_gen.outputs['examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      hyperparameters=tuner.outputs['best_hyperparameters'] if tuner else None,
      train_args=train_args, eval_args=eval_args, custom_config=trainer_config)

  # The model being served, read from the push destination (no Resolver: see the component).
  baseline = ServedModelBaseline(model_root=model_root)
  evaluator = GatedEvaluator(
      examples=example_gen.outputs['examples'],
      example_splits=[splits.EVAL],
      model=trainer_component.outputs['model'],
      baseline_model=baseline.outputs['model'],
      eval_config=eval_config(config),
      gate=dataclasses.asdict(config.gate),
      eval_fraction=config.split.eval_fraction).with_id('Evaluator')

  # Stock Pusher inputs/outputs; the copy is staged so TF Serving never sees a partial version.
  pusher = SafePusher(
      model=trainer_component.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=model_root)))

  # The pushed model also as TFLite for apps, beside the model base path (not a version).
  edge_export = EdgeExport(pushed_model=pusher.outputs['pushed_model'],
                           transform_graph=transform.outputs['transform_graph'],
                           edge_root=edge_model.edge_root(model_root))

  if fingerprints is not None:
    # Recorded on the outputs, so each is part of that node's cache key (cache_keys.py).
    for channel, name, value in (
        (example_gen.outputs['examples'], cache_keys.DATA_PROPERTY, fingerprints.data),
        (schema_gen.outputs['schema'], cache_keys.SCHEMA_PROPERTY, fingerprints.schema),
        (trainer_component.outputs['model'], cache_keys.TUNED_HPARAMS_PROPERTY,
         fingerprints.tuned_hparams),
        # The served model is re-read every run; the Evaluator and Pusher follow it.
        (baseline.outputs['model'], cache_keys.RUN_PROPERTY, fingerprints.run),
        (baseline.outputs['model'], cache_keys.CODE_REVISION_PROPERTY,
         fingerprints.code_revision)):
      channel.additional_custom_properties[name] = value

  components = [example_gen, statistics_gen, schema_gen, example_validator, data_gate,
                transform] + ([tuner] if tuner else []) + [
                    trainer_component, baseline, evaluator, pusher, edge_export]
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=config.enable_cache and fingerprints is not None,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args)
