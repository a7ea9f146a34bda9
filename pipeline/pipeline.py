"""The ad click pipeline, defined once for every runner (local, Kubeflow)."""
from typing import List, Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2

from components.data_gate import DataGate
from components.image_csv_example_gen.component import ImageCsvExampleGen
from models import features
from models import trainer
from pipeline.config import PREPROCESSING_FN, RUN_FN, SCHEMA_DIR, PipelineConfig

SPAN_PATTERN = 'span-{SPAN}/ads.csv'


def _range_config(span: Optional[int]):
  if span is None:
    return None  # FileBasedExampleGen's driver then takes the latest span
  return range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
      start_span_number=span, end_span_number=span))


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
  gate = config.gate

  def overall(threshold):
    # Gate on the overall slice only; per-slice metrics are reported, not gated (small slices
    # are too noisy to block a release on).
    return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                         threshold=threshold)]

  auc = tfma.MetricConfig(class_name='AUC', per_slice_thresholds=overall(tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={'value': gate.auc_floor}),
      change_threshold=tfma.GenericChangeThreshold(
          direction=tfma.MetricDirection.HIGHER_IS_BETTER,
          absolute={'value': -gate.auc_tolerance}))))
  logloss = tfma.MetricConfig(class_name='BinaryCrossentropy',
                              per_slice_thresholds=overall(tfma.MetricThreshold(
                                  change_threshold=tfma.GenericChangeThreshold(
                                      direction=tfma.MetricDirection.LOWER_IS_BETTER,
                                      absolute={'value': gate.logloss_tolerance}))))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name=trainer.EXAMPLES_SIGNATURE,
                                  label_key=features.LABEL_KEY)],
      slicing_specs=[tfma.SlicingSpec()] + [
          tfma.SlicingSpec(feature_keys=[name]) for name in config.slice_features],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name='ExampleCount'), auc, logloss,
          tfma.MetricConfig(class_name='Calibration'),
          tfma.MetricConfig(class_name='MeanLabel'),
          tfma.MetricConfig(class_name='MeanPrediction'),
      ])])


def create_pipeline(pipeline_root: str, data_root: str, serving_root: str,
                    config: PipelineConfig = PipelineConfig(),
                    metadata_connection_config=None,
                    beam_pipeline_args: Optional[List[str]] = None) -> tfx.dsl.Pipeline:
  example_gen = ImageCsvExampleGen(
      input_base=data_root,
      input_config=example_gen_pb2.Input(splits=[
          example_gen_pb2.Input.Split(name='single_split', pattern=SPAN_PATTERN)]),
      output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
          example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
          for name, buckets in config.split_buckets])),
      range_config=_range_config(config.span),
      max_rejected_fraction=config.max_rejected_fraction)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.ImportSchemaGen(schema_file=f'{SCHEMA_DIR}/schema.pbtxt')
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])
  data_gate = DataGate(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'],
      anomalies=example_validator.outputs['anomalies'],
      examples=example_gen.outputs['examples'], data_root=data_root)

  transform = tfx.components.Transform(
      examples=example_gen.outputs['examples'], schema=schema_gen.outputs['schema'],
      preprocessing_fn=PREPROCESSING_FN, materialize=False)
  transform.add_upstream_node(data_gate)  # bad data stops the run here

  trainer_component = tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=example_gen.outputs['examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(splits=['train'], num_steps=config.train_steps),
      eval_args=tfx.proto.EvalArgs(splits=['validation'], num_steps=None),
      custom_config=config.trainer_custom_config())

  baseline = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('baseline_model_resolver')

  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'],
      example_splits=['eval'],
      model=trainer_component.outputs['model'],
      baseline_model=baseline.outputs['model'],
      eval_config=eval_config(config))

  pusher = tfx.components.Pusher(
      model=trainer_component.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=f'{serving_root}/{config.model_name}')))

  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=pipeline_root,
      components=[example_gen, statistics_gen, schema_gen, example_validator, data_gate,
                  transform, trainer_component, baseline, evaluator, pusher],
      enable_cache=False,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args)
