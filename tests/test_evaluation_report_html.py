"""The evaluation report as a page: self-contained, its charts drawn by a real headless
Chromium from a real (tiny) evaluation, the served model beside the new one when there is one."""
import os

from PIL import Image
import pytest
import tensorflow as tf

from components import evaluation_report_html
from components import evaluation_results
from components.evaluation_results import AUC, CALIBRATION, EXAMPLE_COUNT, LOGLOSS, MEAN_LABEL
from components.evaluation_results import MEAN_PREDICTION, Estimate
from models import features
from pipeline import config as config_lib
from pipeline import pipeline as pipeline_lib
from tests import evaluator_inputs
from tests import fake_models
from tests.evaluator_inputs import COHORTS, SLICES
from tests.test_evaluation_results import _model_rows, _write, write_plots
from tests.test_monitoring_report import _chromium
from tests.test_served_baseline import GATE


def _ids(dom: str, *parts: str) -> int:
  """How many drawn series' ids start with these parts (evaluation_report_html._gid)."""
  return dom.count('id="' + ':'.join(parts).replace(' ', '_'))


def _assert_self_contained(page: str):
  assert '<script' not in page and '<link' not in page and 'src=' not in page
  assert 'href="http' not in page  # only in-page references (#id) remain


def _render(results, blessed=True, served=None):
  return evaluation_report_html.render(results, GATE, 0.2, served, blessed,
                                       [] if blessed else ['the AUC change may be below -0.01'])


def test_a_lone_model_without_a_calibration_plot(tmp_path):
  """TFMA output written by hand: no served model, no CalibrationPlot, a slice with no clicks."""
  uri = str(tmp_path / 'evaluation')
  no_clicks = [('device', 'tablet', '', m, False, Estimate(v)) for m, v in (
      (AUC, 0.0), (LOGLOSS, 0.01), (MEAN_PREDICTION, 0.04), (MEAN_LABEL, 0.0),
      (EXAMPLE_COUNT, 30))]
  _write(uri, _model_rows(None, None, '', 0.71, 0.06) +
         _model_rows('device', 'mobile', '', 0.68, 0.05) + no_clicks)
  page = _render(evaluation_results.Results(uri))
  _assert_self_contained(page)
  assert 'No calibration plot in this evaluation' in page
  assert page.count('<svg') == 2 and 'data-chart="AUC per slice"' in page
  assert _ids(page, 'slice', 'new model', 'device=mobile') == 1
  assert _ids(page, 'slice', 'new model') == 1  # tablet has no AUC: written, not drawn
  assert _ids(page, 'calibration', 'new model') == 2  # overall and mobile; not tablet
  assert page.count('new model: n/a (no clicks or no non-clicks)') == 2
  charts = page.split('<div class="charts">')[1].split('<h2>Figures')[0]
  assert 'served model' not in charts and 'served_model' not in charts
  assert 'Decision: BLESSED' in page and '<table>' in page


def test_the_margin_over_the_challenger_is_under_the_verdict_and_in_the_figures(tmp_path):
  uri = str(tmp_path / 'evaluation')
  _write(uri, _model_rows(None, None, '', 0.71, 0.06))
  assert 'model vs challenger (LR): n/a' in _render(evaluation_results.Results(uri))
  evaluation_results.write_challenger(uri, evaluation_results.ChallengerComparison(
      name='logistic regression',
      model={AUC: 0.71, LOGLOSS: 0.160, CALIBRATION: 1.01},
      challenger={AUC: 0.69, LOGLOSS: 0.163, CALIBRATION: 0.98},
      change={AUC: Estimate(0.02, 0.004, 0.036), LOGLOSS: Estimate(-0.003, -0.005, -0.001)},
      resampled='ads (ad_id)', seconds=1.0))
  page = _render(evaluation_results.Results(uri))
  verdict, figures = page.split('<h2>Charts')[0], page.split('<h2>Figures')[1]
  assert ('model vs challenger (LR): +0.0200 [+0.0040, +0.0360] AUC, paired on the same eval '
          'rows, 95 % interval resampling ads (ad_id)') in verdict
  assert '<td>0.7100</td>\n<td>0.6900</td>\n<td>+0.0200 [+0.0040, +0.0360]</td>' in figures
  assert '<td>-0.0030 [-0.0050, -0.0010]</td>' in figures


def test_intervals_are_clipped_to_what_auc_can_be(tmp_path):
  uri = str(tmp_path / 'evaluation')
  _write(uri, _model_rows(None, None, '', 0.71, 0.06) +
         [('device', 'mobile', '', m, False, e) for m, e in (
             (AUC, Estimate(0.99, 0.97, 1.03)), (MEAN_LABEL, Estimate(0.05)),
             (EXAMPLE_COUNT, Estimate(800)))] +
         [('device', 'tablet', '', m, False, Estimate(v)) for m, v in (
             (MEAN_PREDICTION, 0.2), (MEAN_LABEL, 0.1), (EXAMPLE_COUNT, 20))])  # 2 clicks
  write_plots(uri, {(None, None, ''): [(0.5, 1, 0.3, 2), (float('inf'), 2, 1.9, 2)]})
  results = evaluation_results.Results(uri)
  figure = evaluation_report_html.group_figure(results, ['device=mobile'], 'slice')
  bars = figure.axes[0].collections[0].get_segments()[0]  # the interval's line
  assert bars[0][0] == pytest.approx(0.97) and bars[1][0] == 1.0
  calibration = evaluation_report_html.group_figure(results, ['device=tablet'], 'calibration',
                                                    CALIBRATION)
  bars = calibration.axes[0].collections[0].get_segments()[0]
  estimate = results.new('device=tablet', CALIBRATION)  # 2.0, interval up to about 7
  assert estimate.upper > 3
  assert bars[0][0] == pytest.approx(estimate.lower) and bars[1][0] == 3.0  # cut at 3
  reliability = evaluation_report_html.reliability_figure(results)
  for segment in reliability.axes[0].collections[0].get_segments():
    assert 0 <= segment[0][1] <= segment[1][1] <= 1  # the Wilson interval, inside [0, 1]


def _save_graded(path):
  """A test stand-in for a trained model: predictions spread over [0.03, 0.53], higher for
  clicks, so the reliability diagram has all its bins and AUC is between chance and 1."""
  return fake_models.save(path, lambda label: 0.03 + 0.2 * label + 0.3 * (
      tf.random.stateless_uniform(tf.shape(label), seed=[7, 1])))


def _eval_config():
  """The pipeline's eval config, with the CalibrationPlot the reliability diagram reads."""
  config = pipeline_lib.eval_config(config_lib.PipelineConfig(gate=GATE))
  metrics = config.metrics_specs[0].metrics
  if not any(m.class_name == 'CalibrationPlot' for m in metrics):
    metrics.add(class_name='CalibrationPlot', config='{"num_buckets": 1000}')
  return config


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
  """The Evaluator's executor on tiny rows: the graded stand-in against a served model that
  reads the label; returns the HTML report's path."""
  tmp = tmp_path_factory.mktemp('evaluated')
  baseline = evaluator_inputs.served(
      evaluator_inputs.model_artifact(tmp / 'baseline', fake_models.save_peeking))
  model = evaluator_inputs.model_artifact(tmp / 'model', _save_graded)
  evaluation = evaluator_inputs.evaluate(tmp, model, baseline, _eval_config(), GATE).evaluation
  return os.path.join(evaluation.uri, evaluation_report_html.HTML_FILE)


@pytest.mark.slow
def test_chromium_renders_every_chart_new_against_served(evaluated):
  with open(evaluated) as f:
    _assert_self_contained(f.read())
  dom = _chromium('--dump-dom', f'file://{evaluated}').stdout.decode()
  # The rows' cohorts and slices are those features.py declares (tests/evaluator_inputs.py).
  cohorts = COHORTS if features.cohort_feature() else ()
  titles = ['reliability diagram, all eval rows', 'calibration per cohort and slice']
  if cohorts:
    titles.append('AUC per cohort')
  if SLICES:
    titles.append('AUC per slice')
  for title in titles:
    assert f'data-chart="{title}"' in dom, title
  assert dom.count('<svg') == len(titles)
  slices = sum(len(values) for values in SLICES.values())
  for words in (evaluation_report_html.NEW, evaluation_report_html.SERVED):
    assert _ids(dom, 'reliability', words) == 1, words
    assert _ids(dom, 'slice', words) == slices, words
    assert _ids(dom, 'cohort', words) == len(cohorts), words
    assert _ids(dom, 'calibration', words) == 1 + len(cohorts) + slices, words
    for name, values in SLICES.items():
      for value in values:
        assert _ids(dom, 'slice', words, f'{name}={value}') == 1, (words, name, value)
  assert f'{evaluation_report_html.NEW}: {evaluation_report_html.RELIABILITY_BINS} bins' in dom
  assert f'{evaluation_report_html.SERVED}: 2 bins' in dom  # it predicts 0.02 or 0.98
  assert 'Charts: the new model against the served model' in dom
  assert (f'Baseline: the served model, version {evaluator_inputs.SERVED_VERSION} '
          f'({evaluator_inputs.SERVED_PATH}).') in dom


@pytest.mark.slow
def test_chromium_screenshot_shows_both_models(evaluated, tmp_path):
  png = str(tmp_path / 'report.png')
  _chromium(f'--screenshot={png}', '--window-size=1300,1400', f'file://{evaluated}')
  colours = set(Image.open(png).convert('RGB').getdata())
  for colour in evaluation_report_html.COLOURS.values():
    assert tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)) in colours, colour
