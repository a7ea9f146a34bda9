"""The model benchmark's helpers on tiny data: cohort metrics, tables, peers, data readers."""
import os

import numpy as np
import pandas as pd
import pytest

from benchmarks import model_bench
from components import evaluation_results
from components.evaluation_results import Estimate
from datagen.generate import generate_span
from models import data_layout
from models import features
from pipeline import run_result
from tests.conftest import to_example


def test_by_cohort_splits_rows_and_computes_each_figure():
  labels = np.array([1, 0, 0, 1, 0, 0])
  p = np.array([0.9, 0.2, 0.1, 0.3, 0.4, 0.05])
  is_new = np.array([True, True, False, False, False, True])
  result = model_bench.by_cohort(labels, p, is_new)
  assert set(result) == {model_bench.ALL, features.COHORT_NEW, features.COHORT_ESTABLISHED}
  assert result[model_bench.ALL]['auc'] == pytest.approx(7 / 8)
  new, established = result[features.COHORT_NEW], result[features.COHORT_ESTABLISHED]
  assert (new['auc'], new['rows'], new['clicks']) == (1.0, 3, 1)
  assert new['calibration'] == pytest.approx((0.9 + 0.2 + 0.05) / 3 / (1 / 3))
  assert established['auc'] == pytest.approx(0.5)
  assert established['calibration'] == pytest.approx((0.1 + 0.3 + 0.4) / 3 / (1 / 3))
  assert established['logloss'] == pytest.approx(
      evaluation_results.log_loss(labels[2:5], p[2:5]))


def test_by_cohort_without_a_cohort_key_or_an_empty_group():
  labels, p = np.array([0, 1, 0]), np.array([0.1, 0.8, 0.3])
  assert set(model_bench.by_cohort(labels, p, None)) == {model_bench.ALL}
  assert set(model_bench.by_cohort(labels, p, np.zeros(3, bool))) == {
      model_bench.ALL, features.COHORT_ESTABLISHED}
  assert np.isnan(model_bench.figures(np.zeros(2), np.array([0.1, 0.2]))['calibration'])


@pytest.mark.sample_fields  # a cohort_key field
def test_new_ads_are_those_absent_from_the_training_rows():
  key = features.cohort_key_feature().name
  month = pd.DataFrame({key: ['a', 'b', 'c', 'a']})
  training = pd.DataFrame({key: ['a', 'c', 'z']})
  assert model_bench.new_ads(month, training).tolist() == [False, True, False, False]


def test_quality_table_cells():
  rows = [
      model_bench.Row('20000, seed 7', 'model', 'all', gate_auc=Estimate(0.7, 0.68, 0.72),
                      gate_gain=Estimate(0.01, -0.002, 0.022),
                      next_month={'auc': 0.69, 'logloss': 0.17561, 'calibration': 1.1234,
                                  'rows': 120, 'clicks': 7}, next_gain=-0.003,
                      oracle_gap=Estimate(-0.01, -0.03, 0.005)),
      model_bench.Row('20000, seed 7', 'oracle', 'new'),
  ]
  lines = model_bench.quality_table(rows).split('\n')
  assert len(lines) == 4
  assert len({line.count('|') for line in lines}) == 1  # every line has the header's columns
  assert lines[2] == ('| 20000, seed 7 | model | all | 0.7000 [0.6800, 0.7200] | '
                      '+0.0100 [-0.0020, +0.0220] | 0.6900 | -0.0100 [-0.0300, +0.0050] | '
                      '-0.0030 | 0.1756 | 1.123 | 120 (7) |')
  assert lines[3] == '| 20000, seed 7 | oracle | new | - | - | - | - | - | - | - | - |'


def _tabular_frame(rng, n):
  """Random tabular fields; the click depends on one categorical and one numeric field."""
  frame = {}
  for feature in model_bench.tabular_features():
    if feature.role == features.CATEGORICAL:
      frame[feature.name] = rng.choice(feature.domain or ('x1', 'x2', 'x3'), n)
    elif feature.role == features.INTEGER:
      frame[feature.name] = rng.integers(feature.value_range[0], feature.value_range[1] + 1, n)
    else:
      frame[feature.name] = rng.uniform(*feature.value_range, n)
  frame = pd.DataFrame(frame)
  signal = next(f for f in features.with_role(features.CATEGORICAL) if f.domain)
  numeric = features.with_role(features.NUMERIC)[0]
  logit = (-1.5 + 2.5 * (frame[signal.name] == signal.domain[0]) +
           0.8 * np.log1p(frame[numeric.name]))
  probability = (1 / (1 + np.exp(-logit))).to_numpy()
  return frame, (rng.random(n) < probability).astype(int), probability


@pytest.mark.sample_fields  # a closed domain, an open one and a NUMERIC field
def test_peers_learn_the_tabular_signal_and_accept_unseen_categories():
  rng = np.random.default_rng(0)
  train, train_labels, _ = _tabular_frame(rng, 3000)
  test, test_labels, truth = _tabular_frame(rng, 2000)
  unknown = next(f for f in features.with_role(features.CATEGORICAL) if not f.domain)
  test.loc[:9, unknown.name] = 'never_seen'
  oracle = evaluation_results.auc(test_labels, truth)
  for name, peer in model_bench.peers().items():
    peer.fit(train, train_labels)
    p = peer.predict_proba(test)[:, 1]
    assert evaluation_results.auc(test_labels, p) > oracle - 0.03, name
    assert abs(p.mean() / test_labels.mean() - 1) < 0.1, name


def test_read_examples_decodes_the_tabular_fields(raw_rows, tmp_path):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  for split, rows in (('train', raw_rows[:40]), ('validation', raw_rows[40:])):
    os.makedirs(tmp_path / f'Split-{split}')
    with tf.io.TFRecordWriter(str(tmp_path / f'Split-{split}' / 'data.gz'),
                              options='GZIP') as writer:
      for row in rows:
        writer.write(to_example(row).SerializeToString())
  frame = model_bench.read_examples(str(tmp_path), ('train', 'validation'))
  key = features.cohort_key_feature().name
  assert len(frame) == len(raw_rows)
  assert frame[key].tolist() == [row[key] for row in raw_rows]
  assert frame[features.LABEL_KEY].tolist() == [row[features.LABEL_KEY] for row in raw_rows]
  for feature in model_bench.tabular_features():  # float32 in a tf.Example: approx
    assert frame[feature.name].tolist() == pytest.approx([row[feature.name] for row in raw_rows])


@pytest.mark.sample_fields  # datagen
def test_read_month_and_serving_inputs(tmp_path):
  root = str(tmp_path)
  generate_span(root, 1, 200)
  month = model_bench.read_month(root, 1)
  truth = pd.read_csv(data_layout.ground_truth_csv(root, 1))
  assert len(month) == 200
  assert month[model_bench.ORACLE].to_numpy() == pytest.approx(truth.iloc[:, 1].to_numpy())
  inputs = model_bench.serving_inputs(month, data_layout.span_dir(root, 1))
  assert list(inputs) == [f.name for f in features.serving_features()]
  assert all(len(values) == 200 for values in inputs.values())
  image = features.image_feature().name
  with open(os.path.join(data_layout.span_dir(root, 1),
                         month[features.IMAGE_PATH_COLUMN][5]), 'rb') as f:
    assert inputs[image][5] == f.read()


# ---------------------------------------------------------------- cost at scale (--scale)

def _write(path, size):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(b'x' * size)


def _recorded_run(root):
  """A stand-in for a pipeline run's MLMD store (real MLMD, SQLite) and artifact folders of
  known sizes: ExampleGen -> Examples -> StatisticsGen, Transform, Trainer -> Model ->
  Evaluator; an earlier run's execution in the same store must not count."""
  from ml_metadata import metadata_store  # pylint: disable=import-outside-toplevel
  from ml_metadata.proto import metadata_store_pb2 as mlmd  # pylint: disable=import-outside-toplevel
  from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=import-outside-toplevel
  import local_runner  # pylint: disable=import-outside-toplevel
  from components import data_gate  # pylint: disable=import-outside-toplevel
  examples, stats, model = (os.path.join(root, name) for name in ('examples', 'stats', 'model'))
  for split, size in (('train', 100), ('validation', 30), ('eval', 20)):
    _write(os.path.join(examples, f'Split-{split}', 'data_tfrecord-00000.gz'), size)
  _write(os.path.join(examples, 'rejected_rows', 'rejected.csv'), 7)
  _write(os.path.join(model, 'saved_model.pb'), 50)
  _write(os.path.join(stats, 'Split-train', data_gate.STATISTICS_FILE), 11)
  counted = statistics_pb2.DatasetFeatureStatisticsList()
  counted.datasets.add(num_examples=4)
  os.makedirs(os.path.join(stats, 'Split-eval'))
  with open(os.path.join(stats, 'Split-eval', data_gate.STATISTICS_FILE), 'wb') as f:
    f.write(counted.SerializeToString())

  config = local_runner.metadata_config(root)
  store = metadata_store.MetadataStore(config)
  run_type = store.put_context_type(mlmd.ContextType(name='pipeline_run'))
  split_names = {'split_names': mlmd.Value(string_value='["train", "validation", "eval"]')}
  types = {}

  def artifact(type_name, uri, properties=None, custom=None):
    if type_name not in types:
      types[type_name] = store.put_artifact_type(mlmd.ArtifactType(
          name=type_name, properties={'split_names': mlmd.STRING}))
    made = mlmd.Artifact(type_id=types[type_name], uri=uri, properties=properties or {},
                         custom_properties=custom or {})
    made.id = store.put_artifacts([made])[0]
    return made

  def execute(run, name, inputs=(), outputs=(), **properties):
    type_id = store.put_execution_type(mlmd.ExecutionType(name=f'some.module.{name}'))
    execution = mlmd.Execution(type_id=type_id)
    for key, value in properties.items():
      execution.custom_properties[key].string_value = value
    events = [(a, mlmd.Event(type=mlmd.Event.INPUT)) for a in inputs]
    events += [(a, mlmd.Event(type=mlmd.Event.OUTPUT)) for a in outputs]
    store.put_execution(execution, events, [run])

  earlier = mlmd.Context(type_id=run_type, name='run-1')
  earlier.id = store.put_contexts([earlier])[0]
  execute(earlier, 'Pusher')
  run = mlmd.Context(type_id=run_type, name='run-2')
  run.id = store.put_contexts([run])[0]
  made = {'examples': artifact('Examples', examples, split_names, {
      'rows_accepted': mlmd.Value(int_value=8), 'rows_rejected': mlmd.Value(int_value=2),
      'spans': mlmd.Value(string_value='1,2')}),
          'stats': artifact('ExampleStatistics', stats, split_names),
          'model': artifact('Model', model)}
  execute(run, 'ImageCsvExampleGen', outputs=[made['examples']])
  execute(run, 'StatisticsGen', [made['examples']], [made['stats']],
          exclude_splits='["validation"]')
  execute(run, 'Transform', [made['examples']])
  execute(run, 'Trainer', [made['examples']], [made['model']],
          train_args='{"splits": ["train"]}', eval_args='{"splits": ["validation"]}')
  execute(run, 'Evaluator', [made['examples'], made['model']], example_splits='["eval"]')
  return config


def test_component_io_counts_the_splits_each_execution_reads(tmp_path):
  from benchmarks import component_io  # pylint: disable=import-outside-toplevel
  components = run_result.read(_recorded_run(str(tmp_path))).components
  assert [(c.name, component_io.bytes_read(c), component_io.bytes_written(c))
          for c in components] == [
      ('ImageCsvExampleGen', 0, 157),  # the splits and the rejected rows
      ('StatisticsGen', 120, 11 + os.path.getsize(tmp_path / 'stats' / 'Split-eval' /
                                                  'FeatureStats.pb')),
      ('Transform', 157, 0),  # no split property: the whole artifact
      ('Trainer', 130, 50),
      ('Evaluator', 20 + 50, 0)]


def test_scale_lines_divide_by_rows_read_and_the_evaluator_by_eval_rows(tmp_path):
  from benchmarks import component_io  # pylint: disable=import-outside-toplevel
  config = _recorded_run(str(tmp_path / 'run'))
  data = str(tmp_path / 'data')
  for span, size in ((1, 40), (2, 60), (3, 1000)):  # span 3 is outside the window read
    _write(os.path.join(data_layout.span_dir(data, span), 'ads.csv'), size)
  result = run_result.read(config)
  seconds = {'ImageCsvExampleGen': 3.0, 'StatisticsGen': 1.0, 'Transform': 0.5,
             'Trainer': 20.0, 'Evaluator': 2.0}
  for component in result.components:
    component.seconds = seconds[component.name]
  run = model_bench.Run('r', result, wall_s=40.0, peak_rss_gib=1.234, load_before=0.5)
  lines = model_bench.scale_lines(run, data)
  table = model_bench.markdown(model_bench.SCALE_HEADER, lines).split('\n')
  assert len({line.count('|') for line in table}) == 1
  assert lines[0] == ['10', 'ImageCsvExampleGen', '3', '300.000', '10 read', '16', '10', '']
  assert lines[3] == ['10', 'Trainer', '20', '2000.000', '10 read', '5.00', '13', '']
  # 4 eval rows (StatisticsGen's count): 2 s and 70 bytes given over 4 rows.
  assert lines[4] == ['10', 'Evaluator', '2', '500.000', '4 eval', '0.00', '18', '']
  written = sum(component_io.bytes_written(c) for c in result.components)
  assert lines[5] == ['10', 'whole run (1-min load 0.5 before)', '40', '4000.000', '10 read',
                      f'{written / 10:,.0f}', '10', '1.23']


@pytest.mark.slow
@pytest.mark.sample_fields  # datagen's months and its oracle
def test_scale_mode_on_a_tiny_size(tmp_path, monkeypatch, capsys):
  """One 3,000-row run (1,000 rows a month, one training epoch), the peers on a sample."""
  monkeypatch.setattr(model_bench, 'PEER_ROWS', 1000)
  out = str(tmp_path)
  model_bench.main(['--scale', '--sizes', '3000', '--out', out,
                    '--set', 'hparams.max_epochs=1', '--set', 'hparams.challenger=false'])
  with open(os.path.join(out, 'model_bench_scale.md')) as f:
    text = f.read()
  assert text.startswith('`python -m benchmarks.model_bench --scale --sizes 3000 --out ')
  assert text.strip() in capsys.readouterr().out
  lines = {row.split(' | ')[1]: row.split(' | ') for row in text.split('\n')
           if row.startswith('| 3,000 | ')}
  for name in ('ImageCsvExampleGen', 'StatisticsGen', 'Transform', 'Trainer', 'Evaluator'):
    assert float(lines[name][3]) > 0, name  # ms a row
    assert float(lines[name][6].replace(',', '')) > 0, name  # bytes given a row
  assert lines['Trainer'][4] == '3,000 read'
  eval_rows = int(lines['Evaluator'][4].split()[0].replace(',', ''))
  assert lines['Evaluator'][4].endswith(' eval') and 100 < eval_rows < 400
  whole = next(row for name, row in lines.items() if name.startswith('whole run'))
  assert float(whole[7].rstrip(' |')) > 0.5  # peak RSS GiB
  # Month 4, which the run did not see: the model, both peers and the oracle.
  for name in ('model, month 3', 'logistic regression', 'gradient-boosted tree', 'oracle'):
    assert f'| 3,000 rows read, seed 7 | {name} | all | ' in text, name
  assert 'a uniform sample of 1,000 where there are more' in text
