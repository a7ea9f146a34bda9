"""The monitoring report: a self-contained HTML file whose charts a real headless Chromium
(Debian's `chromium`, installed by `make test`) renders."""
import os
import shutil
import subprocess

from PIL import Image
import pytest

from components.evaluation_results import AUC, CALIBRATION, LOGLOSS
from monitoring import history
from monitoring import report
from monitoring.measures import DECAY, DRIFT, PREDICTION, SKEW, Measure

CHROMIUM = shutil.which('chromium')


def _record(span, auc, calibration, category_skew, dropped, lost=0):
  measures = [
      Measure(SKEW, 'category', category_skew, 0.1, category_skew > 0.1, 'L-infinity'),
      Measure(SKEW, 'bid_price', 0.02, 0.1, False, 'JSD'),
      Measure(DRIFT, 'device', 0.01 * span, 0.1, False, 'L-infinity'),
      Measure(PREDICTION, 'mean predicted CTR', 0.05, 0.2, False, 'mean'),
      Measure(DECAY, 'calibration', calibration, 0.1, abs(calibration - 1) > 0.1, 'words',
              reference=1.0),
  ]
  return history.CheckRecord(
      span=span, served_version=str(100 + span // 3), captured=1000 * span, dropped=dropped,
      lost=lost, measures=measures, promised={AUC: 0.72, LOGLOSS: 0.17, CALIBRATION: 1.0},
      observed={AUC: auc, LOGLOSS: 0.18, CALIBRATION: calibration},
      mean_prediction=0.05, eval_mean_prediction=0.048, time=1.7e9 + span)


@pytest.fixture
def report_path(tmp_path):
  root = str(tmp_path)
  for args in ((2, 0.71, 1.02, 0.03, 0), (3, 0.70, 0.97, 0.05, 12), (4, 0.64, 0.8, 0.31, 250, 17)):
    history.append(root, _record(*args))
  return report.write(root, lineage=None)


def _chromium(*args):
  if CHROMIUM is None:
    pytest.fail('Debian\'s chromium is not installed: `make test` (or apt-get install chromium)')
  return subprocess.run([CHROMIUM, '--headless', '--disable-gpu', '--no-sandbox',
                         '--hide-scrollbars', *args], capture_output=True, timeout=120,
                        check=True)


def test_the_report_is_self_contained_and_names_what_broke(report_path):
  with open(report_path) as f:
    text = f.read()
  assert 'http://' not in text and 'https://' not in text and '<script' not in text
  assert 'calibration' in text and 'span 4' in text
  assert text.count('class="broken"') == 1  # only span 4 broke thresholds
  assert 'skew of category: 0.31 (threshold 0.1)' in text
  assert 'decay of calibration: 0.8 (promised 1)' in text
  # span 4's row: captured, dropped, and the rows a killed capture process lost
  assert '<td>4000</td><td>250</td><td>17</td>' in text


def test_chromium_renders_every_chart(report_path):
  dom = _chromium('--dump-dom', f'file://{report_path}').stdout.decode()
  for title in ('AUC', 'log-loss', 'calibration (mean prediction / mean label)',
                'skew per field', 'drift per field', 'mean predicted CTR',
                'rows captured and dropped'):
    assert f'data-chart="{title}"' in dom, title
  assert dom.count('<svg') == 7
  assert dom.count('class="series"') == 8  # promised and observed in 4 line charts
  assert dom.count('class="cell"') == 2 * 3 + 1 * 3  # skew: 2 fields, drift: 1, 3 months
  assert dom.count('class="bar"') == 6
  assert 'category, span 4: 0.310' in dom


def test_chromium_screenshot_shows_the_charts(report_path, tmp_path):
  png = str(tmp_path / 'report.png')
  _chromium(f'--screenshot={png}', '--window-size=1400,1500', f'file://{report_path}')
  assert os.path.getsize(png) > 10000
  image = Image.open(png).convert('RGB')
  colours = set(image.getdata())
  # The promised (blue) and observed (red) series are drawn in their colours.
  assert (0x1f, 0x77, 0xb4) in colours and (0xd6, 0x27, 0x28) in colours
