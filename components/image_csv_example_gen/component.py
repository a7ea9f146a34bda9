"""ImageCsvExampleGen: an ExampleGen for ads.csv spans with creative images."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

from components.image_csv_example_gen import executor
from components.image_csv_example_gen import splits
from models import data_layout


class ImageCsvExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
  """FileBasedExampleGenSpec plus the rejection limit and the out-of-time split."""

  PARAMETERS = {
      **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
      executor.MAX_REJECTED_FRACTION_KEY: component_spec.ExecutionParameter(type=float),
      executor.EVAL_FRACTION_KEY: component_spec.ExecutionParameter(type=float),
      executor.VALIDATION_FRACTION_KEY: component_spec.ExecutionParameter(type=float),
  }


class ImageCsvExampleGen(base_beam_component.BaseBeamComponent):
  """Reads `<input_base>/span-<N>/ads.csv` and the images it names into tf.Examples.

  Takes FileBasedExampleGen's parameters but not its driver: the executor picks the
  spans (spans.py), the same way under every orchestrator, and splits the rows into
  train/validation/eval out of time (splits.py). The output Examples artifact carries
  `span`, `spans`, `rows_accepted` and `rows_rejected`; rejected rows are listed under its
  URI (see executor.py).
  """

  SPEC_CLASS = ImageCsvExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(
      self,
      input_base: str,
      max_rejected_fraction: float,
      split_config: splits.SplitConfig,
      range_config: Optional[range_config_pb2.RangeConfig] = None,
      input_config: Optional[example_gen_pb2.Input] = None):
    """Constructs an ImageCsvExampleGen.

    Args:
      input_base: Local or gs:// folder holding the span-<N> folders.
      max_rejected_fraction: The run fails if a larger share of rows is rejected.
      split_config: The shares of the eval and validation splits (splits.py).
      range_config: Spans to read (see spans.py); defaults to the latest span.
      input_config: Input pattern; defaults to the production layout (data_layout.py).
    """
    input_config = input_config or example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name='single_split', pattern=data_layout.SPLIT_PATTERN)])
    # The split names, as FileBasedExampleGenSpec wants them; the executor splits by time and
    # names the splits itself (splits.py).
    output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
        for name, buckets in split_config.hash_buckets().items()]))
    spec = ImageCsvExampleGenSpec(
        input_base=input_base,
        input_config=input_config,
        output_config=output_config,
        range_config=range_config,
        output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        max_rejected_fraction=max_rejected_fraction,
        eval_fraction=split_config.eval_fraction,
        validation_fraction=split_config.validation_fraction,
        examples=types.Channel(type=standard_artifacts.Examples))
    super().__init__(spec=spec)
