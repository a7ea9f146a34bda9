"""A month with one line of every bad kind, in the new span and the one before, runs to a
pushed model with every line accounted for (the real pipeline: LocalDagRunner, MLMD, Beam).

What each line became is read from MLMD and the artifacts (ExampleGen's row counts and
rejected-rows report, DataGate's statistics), never from console wording.
"""
import os

from ml_metadata import metadata_store
import pytest
import tensorflow_data_validation as tfdv

import local_runner
from components import data_gate
from components.image_csv_example_gen import executor
from datagen import generate
from models import model as model_lib
from models import serving_layout
from pipeline import config as config_lib
from tests import dirty_month

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    generate.sample_fields_problem() is not None, reason=str(generate.sample_fields_problem()))]
ROWS = 400  # good rows a span: the bad lines stay under max_rejected_fraction (5 %)
# This run is about accounting for lines, not model quality: one epoch, and no AUC floor, so
# that the model (a few clicks a span) is pushed whatever its AUC.
CONFIG = config_lib.PipelineConfig(hparams=model_lib.HParams(max_epochs=1),
                                   gate=config_lib.GateConfig(auc_floor=0.0))


def _output_of(store, type_name: str, producer: str):
  """The one artifact of `type_name` that the component `producer` wrote."""
  found = [a for a in store.get_artifacts_by_type(type_name)
           if f'/{producer}/' in a.uri]
  assert len(found) == 1, [a.uri for a in found]
  return found[0]


@pytest.fixture(scope='module')
def dirty_run(tmp_path_factory):
  """Two dirty months and one run over them; (data root, output root, {span: DirtySpan})."""
  root = tmp_path_factory.mktemp('dirty')
  data, out = str(root / 'data'), str(root / 'out')
  spans = {span: dirty_month.write_dirty_span(data, span, ROWS) for span in (1, 2)}
  assert local_runner.run(data, out, CONFIG)
  return data, out, spans


def test_every_line_is_accepted_or_rejected_by_name(dirty_run):
  _, out, spans = dirty_run
  store = metadata_store.MetadataStore(local_runner.metadata_config(out))
  examples = _output_of(store, 'Examples', 'ImageCsvExampleGen')
  accepted = examples.custom_properties[executor.ROWS_ACCEPTED_PROPERTY].int_value
  rejected = examples.custom_properties[executor.ROWS_REJECTED_PROPERTY].int_value
  report = executor.read_rejected_rows(examples.uri)
  assert rejected == len(report)
  for span, dirty in spans.items():
    named = {int(row['line_number']): row['reason'] for row in report
             if row['source_file'] == dirty.csv_path}
    assert sorted(named) == sorted(dirty.bad_lines), span
    for line, kind in dirty.bad_lines.items():
      assert dirty_month.REASON_WORDS[kind].lower() in named[line].lower(), (kind, named[line])
  assert accepted == sum(dirty.good_rows for dirty in spans.values())
  assert accepted + rejected == sum(dirty.rows_read for dirty in spans.values())


def test_drift_is_computed_on_the_accepted_rows(dirty_run):
  _, out, spans = dirty_run
  store = metadata_store.MetadataStore(local_runner.metadata_config(out))
  drift = _output_of(store, 'ExampleAnomalies', 'DataGate')
  for span, dirty in spans.items():
    stats = tfdv.load_stats_binary(data_gate.statistics_path(drift.uri, span))
    assert stats.datasets[0].num_examples == dirty.good_rows, span


def test_the_model_is_pushed(dirty_run):
  _, out, _ = dirty_run
  store = metadata_store.MetadataStore(local_runner.metadata_config(out))
  pushed = _output_of(store, 'PushedModel', 'SafePusher')
  assert pushed.custom_properties['pushed'].int_value == 1
  model_root = serving_layout.model_root(os.path.join(out, 'serving'), CONFIG.model_name)
  versions = os.listdir(model_root)
  assert len(versions) == 1
  assert os.path.exists(os.path.join(model_root, versions[0], 'saved_model.pb'))
