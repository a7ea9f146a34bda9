"""The monitoring check on generated months: a month-1 model is pushed (its lineage recorded in
MLMD as a pipeline run records it), its traffic is captured, and the check must pass a clean
month, name every field of a skewed stream, and flag the model's decay on a drifted month."""
import dataclasses

import numpy as np
import pytest
import yaml

from components import evaluation_results
from components.evaluation_results import AUC, CALIBRATION, EXAMPLE_COUNT, LOGLOSS, MEAN_LABEL
from components.evaluation_results import MEAN_PREDICTION
from datagen import generate
from models import data_layout
from models import features
from monitoring import check
from monitoring import fields
from monitoring import history
from monitoring import kfp_monitor
from monitoring import lineage as lineage_lib
from monitoring import quality
from monitoring import replay
from monitoring import summary_line
from monitoring.measures import DECAY, DRIFT, PREDICTION, SCHEMA, SKEW, Thresholds
from schema import generate as schema_lib
from serving import capture as capture_lib
from tests import monitoring_fakes

# Seeded months, large enough for the clean month's calibration to stay within its threshold
# (datagen is deterministic: with these, the drifted month raises the CTR by about 19 %).
ROWS, SEED, CLEAN, DRIFTED = 8000, 7, 2, 3
VERSION = '1700000000'


@dataclasses.dataclass
class World:
  data_root: str
  serving_root: str
  metadata: str
  model_dir: str

  def capture(self, capture_root: str, data_root: str, span: int, change=lambda row: row):
    """Sends the month's rows through the served model and a Capture, as the client does."""
    examples, _, _ = quality.labelled_examples(data_root, span)
    predictions = quality.score(self.model_dir, examples)
    writer = capture_lib.Capture(capture_root, span, flush_rows=3000)
    rows = [change(row) for row in replay.example_rows(examples)]
    for start in range(0, len(rows), 64):
      writer.record(rows[start:start + 64], predictions[start:start + 64], VERSION)
    assert writer.close()['written'] == len(rows)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
  root = tmp_path_factory.mktemp('monitoring')
  data_root = str(root / 'data')
  for span in (1, CLEAN):
    generate.generate_span(data_root, span, ROWS, seed=SEED)
  generate.generate_span(data_root, DRIFTED, ROWS, seed=SEED, drift=True)
  model_dir = monitoring_fakes.save_month_model(str(root / 'model'),
                                                data_layout.ads_csv(data_root, 1))
  examples, labels, _ = quality.labelled_examples(data_root, 1)
  measured = evaluation_results.figures(labels, quality.score(model_dir, examples))
  # TFMA's output holds no calibration: the reader derives it from the two means.
  promised = {name: value for name, value in measured.items() if name != CALIBRATION}
  schema = schema_lib.build_schema()
  training = fields.traffic(data_layout.ads_csv(data_root, 1), schema).statistics
  metadata = str(root / 'metadata.db')
  monitoring_fakes.pushed_run(str(root / 'pipeline'), monitoring_fakes.FakeStore(metadata), 1,
                              VERSION, model_dir, training, examples[-len(examples) // 5:],
                              promised, str(root / 'serving'))
  result = World(data_root, str(root / 'serving'), metadata, model_dir)
  result.capture(str(root / 'capture'), data_root, 1)
  return result


def _main(world, tmp_path, capture_root, span, capsys):
  code = check.main(['--output-root', str(tmp_path / 'out'), '--capture-root', capture_root,
                     '--data-root', world.data_root, '--serving-root', world.serving_root,
                     '--metadata-db', world.metadata, '--span', str(span)])
  return code, capsys.readouterr().out


@pytest.mark.sample_fields
def test_lineage_leads_from_the_served_version_to_its_training_data_and_evaluation(world):
  served = lineage_lib.Lineage(lineage_lib.sqlite_config(world.metadata)).served(VERSION)
  assert served.span == 1 and served.statistics_uri and served.eval_examples_uri
  promised = quality.promised(served.evaluation_uri)
  assert promised[EXAMPLE_COUNT] == ROWS and 0.5 < promised[AUC] < 1
  assert lineage_lib.Lineage(lineage_lib.sqlite_config(world.metadata)).served('42') is None


@pytest.mark.sample_fields
def test_the_lineage_command_says_what_trained_the_served_model(world, capsys):
  served = lineage_lib.Lineage(lineage_lib.sqlite_config(world.metadata)).served(VERSION)
  data, training = served.run.data, served.run.training
  assert data.spans == [1] and data.rows_read == data.rows_accepted + 1
  assert training.hparams == monitoring_fakes.TRAINED_WITH['hparams']
  assert served.run.evaluation.new[EXAMPLE_COUNT] == ROWS
  code = lineage_lib.main(['--output-root', 'unused', '--serving-root', world.serving_root,
                           '--metadata-db', world.metadata])
  out = capsys.readouterr().out
  assert code == 0, out
  assert out.startswith(f'Served version {VERSION}: pushed by pipeline run {served.run.run_id}')
  assert f'{data.rows_read:,} rows read' in out and 'learning_rate=0.01' in out, out
  assert lineage_lib.main(['--output-root', 'unused', '--serving-root', world.serving_root,
                           '--metadata-db', world.metadata, '--version', '42']) == 1


@pytest.mark.sample_fields
def test_a_clean_month_passes(world, tmp_path, capsys):
  capture_root = str(tmp_path / 'capture')
  world.capture(capture_root, world.data_root, 1)
  world.capture(capture_root, world.data_root, CLEAN)
  code, out = _main(world, tmp_path, capture_root, CLEAN, capsys)
  assert code == 0, out
  record = history.checks(str(tmp_path / 'out'))[-1]
  kinds = {(m.kind, m.name) for m in record.measures}
  assert {(SKEW, f) for f in fields.skew_names()} <= kinds
  assert {(DRIFT, 'category'), (PREDICTION, 'mean predicted CTR'), (DECAY, 'calibration')} <= kinds
  assert record.captured == ROWS and record.dropped == 0
  assert 'No threshold broken.' in out


@pytest.mark.sample_fields
def test_a_skewed_stream_is_detected_and_each_field_named(world, tmp_path):
  capture_root = str(tmp_path / 'capture')
  renamed = {'electronics': 'tech'}
  world.capture(capture_root, world.data_root, CLEAN, lambda row: dict(
      row, bid_price=row['bid_price'] / 1000,  # dollars, not CPM
      category=renamed.get(row['category'], row['category']),
      headline_length=40))  # always the default
  lineage = lineage_lib.Lineage(lineage_lib.sqlite_config(world.metadata))
  record = check.run(capture_root, CLEAN, None, lineage, world.serving_root)
  broken = {(m.kind, m.name): m for m in record.broken}
  assert {(SKEW, 'bid_price'), (SKEW, 'headline_length'), (SCHEMA, 'category'),
          (SCHEMA, 'bid_price')} <= set(broken), check.describe(record)
  assert 'Jensen-Shannon divergence' in broken[(SKEW, 'bid_price')].words
  assert 'threshold 0.1' in broken[(SKEW, 'headline_length')].words
  assert 'tech' in broken[(SCHEMA, 'category')].words
  untouched = [m for m in record.measures if m.kind == SKEW and m.name in ('device', 'hour')]
  assert len(untouched) == 2 and not any(m.broken for m in untouched)


@pytest.mark.sample_fields
def test_a_month_1_model_on_a_drifted_month_is_flagged(world, tmp_path, capsys):
  capture_root = str(tmp_path / 'capture')
  world.capture(capture_root, world.data_root, DRIFTED)
  code, out = _main(world, tmp_path, capture_root, DRIFTED, capsys)
  assert code == 1, out
  record = history.checks(str(tmp_path / 'out'))[-1]
  broken = {m.name for m in record.broken if m.kind == DECAY}
  assert 'calibration' in broken, out
  assert record.observed['mean_label'] > record.promised['mean_label'] * 1.1
  assert 'BROKEN decay      calibration:' in out and 'promised' in out
  assert (tmp_path / 'out' / 'monitoring' / 'report.html').exists()


@pytest.mark.sample_fields  # a captured line of the sample log's fields
@pytest.mark.parametrize('log_format', [features.CsvFormat(), features.CsvFormat(delimiter='\t')],
                         ids=['log-like-capture', 'tab-separated-log'])
def test_captured_lines_the_row_rules_refuse_are_left_out_and_counted(tmp_path, monkeypatch,
                                                                      log_format):
  """Lines that stopped tfdv.generate_statistics_from_csv: a row cut short, a NUL, and an
  advertiser with a newline, which the client and the server let through (open domain).
  Captured files keep their own format whatever the log's (features.CSV_FORMAT) is."""
  monkeypatch.setattr(features, 'CSV_FORMAT', log_format)
  ad = {'impression_id': 'imp', 'ad_id': 'ad', 'campaign_id': 'cmp', 'impression_time': 0,
        'advertiser': 'Acme', 'category': 'food', 'creative_format': 'banner_728x90',
        'placement': 'feed', 'device': 'mobile', 'country': 'US', 'hour': 3, 'day_of_week': 1,
        'bid_price': 1.5, 'headline_length': 40, 'image_path': ''}
  ads = [dict(ad, impression_id=f'imp-{i}') for i in range(5)]
  ads.append(dict(ad, advertiser='Acme\nCorp'))
  writer = capture_lib.Capture(str(tmp_path), span=4)
  writer.record(ads, [0.1] * len(ads), VERSION)
  assert writer.close()['written'] == len(ads)
  [path] = (tmp_path / 'span-4').glob(f'{capture_lib.FILE_PREFIX}*.csv')
  with open(path, 'ab') as f:
    f.write(b'imp-x,ad,cmp,0,Acme,food\n')  # 6 cells
    f.write(b'imp-y,ad,cmp,0,Ac\0me' + b',x' * 13 + b'\n')  # a NUL
  found = fields.traffic(capture_lib.file_pattern(str(tmp_path), 4), schema_lib.build_schema(),
                         capture_lib.CSV_FORMAT)
  assert found.rejected == 2
  assert found.statistics.datasets[0].num_examples == len(ads)
  # The check's own read of the predictions leaves out the same two lines, never fatal.
  predictions, versions, left_out = check.read_capture(str(tmp_path), 4)
  assert left_out == 2 and len(predictions) == len(ads) and set(versions) == {VERSION}


def test_prediction_drift_measures_the_distribution_and_the_mean():
  rng = np.random.default_rng(0)
  reference = rng.beta(2, 40, 5000)
  same = quality.prediction_drift(rng.beta(2, 40, 5000), reference, Thresholds())
  shifted = quality.prediction_drift(rng.beta(2, 40, 5000) * 2, reference, Thresholds())
  assert not any(m.broken for m in same)
  assert all(m.broken for m in shifted), [m.words for m in shifted]


def test_nothing_captured_is_said_and_exits_2(tmp_path, capsys):
  code = check.main(['--output-root', str(tmp_path), '--capture-root', str(tmp_path / 'none')])
  assert code == 2 and 'No captured traffic' in capsys.readouterr().out


def test_the_kubeflow_spec_of_the_check_compiles(tmp_path):
  path = kfp_monitor.compile_spec(str(tmp_path / 'monitor.yaml'), 'IMG', 'gs://B/adclick')
  with open(path) as f:
    spec = yaml.safe_load(f)
  assert spec['schemaVersion'] == '2.1.0' and spec['pipelineInfo']['name'] == 'adclick-monitor'
  (executor,) = spec['deploymentSpec']['executors'].values()
  container = executor['container']
  assert container['image'] == 'IMG'
  assert container['command'] == ['python', '-m', 'monitoring.check']
  args = container['args']
  assert args[args.index('--capture-root') + 1] == 'gs://B/adclick/capture'
  parsed = check.parse_args(args)  # the check accepts every argument the spec passes
  assert parsed.output_root == 'gs://B/adclick' and parsed.metadata_grpc
  assert len(kfp_monitor.DAILY_CRON.split()) == 6


@pytest.mark.sample_fields
def test_the_run_summary_line_compares_the_served_model_with_its_promise(world, tmp_path):
  served = lineage_lib.Lineage(lineage_lib.sqlite_config(world.metadata)).served(VERSION)
  promised = quality.promised(served.evaluation_uri)
  config = lineage_lib.sqlite_config(world.metadata)

  def line(calibration):
    evaluation = str(tmp_path / f'evaluation-{calibration}')
    monitoring_fakes.write_evaluation(evaluation, {
        AUC: promised[AUC] - 0.01, LOGLOSS: promised[LOGLOSS],
        MEAN_PREDICTION: promised[MEAN_LABEL] * calibration,
        MEAN_LABEL: promised[MEAN_LABEL], EXAMPLE_COUNT: 800}, model_name='baseline')
    return summary_line.served_on_new_month(config, evaluation, int(VERSION))

  steady, decayed = line(1.0), line(0.7)
  assert f'version {VERSION}' in steady and 'no decay' in steady
  assert f"AUC {promised[AUC] - 0.01:.4f} (promised {promised[AUC]:.4f})" in steady
  assert 'DECAYED: calibration beyond the thresholds' in decayed
  assert 'none is served' in summary_line.served_on_new_month(config, 'unused', None)


def test_decay_is_a_worse_auc_log_loss_or_calibration_than_promised():
  promised = {AUC: 0.72, LOGLOSS: 0.17, CALIBRATION: 0.88}

  def broken(**observed):
    values = dict(promised, **{MEAN_PREDICTION: 0.05, MEAN_LABEL: 0.05}, **observed)
    return {m.name for m in quality.decay(values, promised, Thresholds()) if m.broken}

  assert broken() == set()
  assert broken(**{AUC: 0.68, LOGLOSS: 0.19}) == {'AUC', 'log-loss'}
  assert broken(**{AUC: 0.80, LOGLOSS: 0.15}) == set()  # better than promised is not decay
  assert broken(**{CALIBRATION: 1.0}) == set()  # closer to 1 than promised
  assert broken(**{CALIBRATION: 0.75}) == {'calibration'}
  assert broken(**{CALIBRATION: 1.25}) == {'calibration'}
