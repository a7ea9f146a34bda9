"""ImageCsvExampleGen: an ExampleGen for ads.csv spans with creative images."""
from typing import Optional

from tfx import types
from tfx.components.example_gen import utils
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.proto import range_config_pb2
from tfx.types import component_spec
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs

from components.image_csv_example_gen import executor

# The production layout; `{SPAN}` is where spans.py puts the span number.
DEFAULT_SPLIT_PATTERN = 'span-{SPAN}/ads.csv'


class ImageCsvExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
  """FileBasedExampleGenSpec plus the share of rejected rows that fails the run."""

  PARAMETERS = {
      **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
      executor.MAX_REJECTED_FRACTION_KEY: component_spec.ExecutionParameter(type=float),
  }


class ImageCsvExampleGen(base_beam_component.BaseBeamComponent):
  """Reads `<input_base>/span-<N>/ads.csv` and the images it names into tf.Examples.

  Takes FileBasedExampleGen's parameters but not its driver: the executor picks the
  spans (spans.py), the same way under every orchestrator. The output Examples
  artifact carries `span`, `spans`, `rows_accepted` and `rows_rejected`; rejected rows
  are listed under its URI (see executor.py).
  """

  SPEC_CLASS = ImageCsvExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(
      self,
      input_base: str,
      input_config: Optional[example_gen_pb2.Input] = None,
      output_config: Optional[example_gen_pb2.Output] = None,
      range_config: Optional[range_config_pb2.RangeConfig] = None,
      max_rejected_fraction: float = executor.DEFAULT_MAX_REJECTED_FRACTION):
    """Constructs an ImageCsvExampleGen.

    Args:
      input_base: Local or gs:// folder holding the span-<N> folders.
      input_config: Input splits; defaults to one split `span-{SPAN}/ads.csv`.
      output_config: Output splits; defaults to train/eval hashed 2:1.
      range_config: Spans to read (see spans.py); defaults to the latest span.
      max_rejected_fraction: The run fails if a larger share of rows is rejected.
    """
    input_config = input_config or example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name='single_split', pattern=DEFAULT_SPLIT_PATTERN)])
    output_config = output_config or utils.make_default_output_config(input_config)
    spec = ImageCsvExampleGenSpec(
        input_base=input_base,
        input_config=input_config,
        output_config=output_config,
        range_config=range_config,
        output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        max_rejected_fraction=max_rejected_fraction,
        examples=types.Channel(type=standard_artifacts.Examples))
    super().__init__(spec=spec)
