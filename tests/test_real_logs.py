"""The real-log benchmark's parts on a few rows (no pipeline run): each log's conversion into
spans and a held-out file, the tuned LR's choice of C on its validation part, and the
figures and verdict of issue 22's criteria."""
import csv
import datetime
import os

import numpy as np
import pandas as pd
import pytest

from benchmarks import peers
from benchmarks import real_logs
from components import evaluation_results
from components.evaluation_results import Estimate
from examples import layout
from examples.avazu import convert as avazu
from examples.criteo import convert as criteo
from examples.talkingdata import convert as talkingdata
from models import data_layout
from models import features


def _source(name: str) -> str:
  source = os.path.join(layout.SHARED_DATA, f'{name}-sample')
  if not os.path.isdir(source):
    pytest.skip(f'the real log {source} is not beside this checkout')
  return source


def _head(path: str, lines: int) -> list:
  with open(path, newline='') as f:
    return [next(f) for _ in range(lines)]


def _write_lines(path: str, lines) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', newline='') as f:
    f.writelines(lines)


def _read(path: str, delimiter: str = ','):
  with open(path, newline='') as f:
    return list(csv.reader(f, delimiter=delimiter))


def _spans(converted):
  return {span: data_layout.ads_csv(converted.data_root, span) for span in converted.spans}


def test_criteo_keeps_the_raw_rows_in_file_order_and_holds_out_the_last_third(tmp_path):
  source = _source('criteo')
  raw = []
  for name, count in zip(criteo.FILES, (6, 2, 1)):  # 9 real rows: train, dev, test
    lines = _head(os.path.join(source, name), count)
    _write_lines(str(tmp_path / 'raw' / name), lines)
    raw += lines
  converted = criteo.convert(str(tmp_path / 'raw'), str(tmp_path / 'out'))
  assert converted.spans == [1, 2]
  written = [open(path).read() for path in _spans(converted).values()]
  assert written == [''.join(raw[:3]), ''.join(raw[3:6])]  # tab-separated, no header
  with open(converted.heldout) as f:
    assert f.read() == ''.join(raw[6:])


def test_avazu_writes_a_header_everywhere_and_holds_out_a_seeded_random_third(tmp_path):
  source = _source('avazu')
  _write_lines(str(tmp_path / 'raw' / 'train.csv'),
               _head(os.path.join(source, 'train.csv'), 10))  # header and 9 rows
  for name in ('dev.csv', 'test.csv'):  # no header
    _write_lines(str(tmp_path / 'raw' / name), _head(os.path.join(source, name), 3))
  converted = avazu.convert(str(tmp_path / 'raw'), str(tmp_path / 'out'))
  header = _read(os.path.join(source, 'train.csv'))[0]
  files = list(_spans(converted).values()) + [converted.heldout]
  tables = [_read(path) for path in files]
  assert all(table[0] == header for table in tables)
  ids = [[row[0] for row in table[1:]] for table in tables]
  assert [len(i) for i in ids] == [5, 5, 5]
  everything = [row[0] for row in _read(str(tmp_path / 'raw' / 'train.csv'))[1:]]
  everything += [row[0] for name in ('dev.csv', 'test.csv')
                 for row in _read(str(tmp_path / 'raw' / name))]
  assert sorted(sum(ids, [])) == sorted(everything)  # every row once: disjoint, none lost
  again = avazu.convert(str(tmp_path / 'raw'), str(tmp_path / 'again'))
  assert [row[0] for row in _read(again.heldout)[1:]] == ids[-1]  # seeded


def test_talkingdata_is_one_span_a_day_with_unix_time_and_hour_and_no_attributed_time(
    tmp_path):
  source = _source('talkingdata')
  header, *rows = _read(os.path.join(source, talkingdata.SOURCE_FILE))
  picked = {}
  for row in rows:  # two rows of each day, the first converted click among them
    day = row[5][:10]
    if len(picked.setdefault(day, [])) < 2 and (picked[day] or row[7] == '1' or
                                                day == '2017-11-06'):
      picked[day].append(row)
    if sum(len(p) for p in picked.values()) == 8:
      break
  raw = tmp_path / 'raw' / talkingdata.SOURCE_FILE
  os.makedirs(raw.parent)
  with open(raw, 'w', newline='') as f:
    csv.writer(f).writerows([header] + [row for day in sorted(picked) for row in picked[day]])
  converted = talkingdata.convert(str(tmp_path / 'raw'), str(tmp_path / 'out'))
  assert converted.spans == [1, 2, 3]
  days = dict(zip(['2017-11-06', '2017-11-07', '2017-11-08', '2017-11-09'],
                  list(_spans(converted).values()) + [converted.heldout]))
  assert any(row[7] == '1' for day in picked.values() for row in day)
  for day, path in days.items():
    written_header, *written = _read(path)
    assert written_header == list(talkingdata.HEADER)
    assert 'attributed_time' not in written_header
    assert len(written) == 2
    for row, original in zip(written, picked[day]):
      when = datetime.datetime.fromtimestamp(int(row[5]), datetime.timezone.utc)
      assert when.strftime('%Y-%m-%d %-H:%M') == original[5]
      assert when.date().isoformat() == day and int(row[6]) == when.hour
      assert row[:5] + row[7:] == original[:5] + original[7:]
  assert talkingdata.clicked_at('2017-11-07 9:30').timestamp() == 1510047000


def _tabular(rng, n: int) -> pd.DataFrame:
  """The sample's tabular fields at random, a time, and a label depending on one field."""
  frame = {}
  for feature in peers.tabular_features():
    if feature.role == features.CATEGORICAL:
      frame[feature.name] = rng.choice(feature.domain or ('x1', 'x2', 'x3', 'x4'), n)
    elif feature.role == features.INTEGER:
      frame[feature.name] = rng.integers(feature.value_range[0], feature.value_range[1] + 1, n)
    else:
      frame[feature.name] = rng.uniform(*feature.value_range, n)
  frame = pd.DataFrame(frame)
  frame[features.time_feature().name] = rng.permutation(n)
  numeric = features.with_role(features.NUMERIC)[0].name
  frame.loc[rng.random(n) < 0.2, numeric] = np.nan  # missing values: the LR's indicator
  signal = next(f for f in features.with_role(features.CATEGORICAL) if f.domain)
  logit = -1.0 + 1.5 * (frame[signal.name] == signal.domain[0])
  labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
  return frame, labels


@pytest.mark.sample_fields  # _tabular draws the sample's fields
def test_the_validation_part_is_the_latest_tenth_by_time_else_a_seeded_random_tenth():
  frame, _ = _tabular(np.random.default_rng(0), 200)
  time = frame[features.time_feature().name]
  chosen = peers.validation_rows(frame)
  assert chosen.sum() == 20 and set(time[chosen]) == set(range(180, 200))
  timeless = frame.drop(columns=features.time_feature().name)
  random = peers.validation_rows(timeless)
  assert random.sum() == 20 and (random == peers.validation_rows(timeless)).all()
  assert set(time[random]) != set(range(180, 200))


@pytest.mark.sample_fields  # _tabular draws the sample's fields
def test_the_tuned_lr_picks_c_by_log_loss_on_the_validation_part_and_refits_on_all():
  frame, labels = _tabular(np.random.default_rng(1), 400)
  chosen = peers.validation_rows(frame)
  losses = {}
  for c in peers.C_GRID:
    fitted = peers.logistic_pipeline(c).fit(frame[~chosen], labels[~chosen])
    losses[c] = evaluation_results.log_loss(labels[chosen],
                                            fitted.predict_proba(frame[chosen])[:, 1])
  assert len({round(loss, 6) for loss in losses.values()}) > 1  # the choice matters
  tuned = peers.TunedLogistic().fit(frame, labels)
  assert tuned.c == min(losses, key=losses.get)
  refit = peers.logistic_pipeline(tuned.c).fit(frame, labels)
  assert tuned.predict_proba(frame) == pytest.approx(refit.predict_proba(frame))


def _scorer(name, auc=0.7, gap=None, logloss=0.45, calibration=1.0):
  return real_logs.Scorer(name, Estimate(auc, auc - 0.02, auc + 0.02), logloss, calibration,
                          gap)


def test_the_verdict_names_each_criterion_missed():
  lr = _scorer(peers.LOGISTIC, logloss=0.46)
  met = _scorer(real_logs.MODEL, gap=Estimate(-0.01, -0.03, 0.0), calibration=1.1)
  assert real_logs.verdict(met, lr) == []  # the interval reaches 0; calibration at the edge
  missed = real_logs.verdict(
      _scorer(real_logs.MODEL, gap=Estimate(-0.02, -0.035, -0.004), logloss=0.47,
              calibration=0.88), lr)
  assert [words.split(' ')[0] for words in missed] == ['AUC', 'log-loss', 'calibration']
  assert 'log-loss 0.4700 > LR 0.4600' in missed


def test_measure_gives_each_scorer_its_figures_and_the_model_its_gap_to_the_best_peer():
  rng = np.random.default_rng(2)
  labels = (rng.random(600) < 0.3).astype(int)
  noise = rng.normal(size=600)
  good = labels + noise  # the GBDT here: the best peer
  scores = {real_logs.MODEL: 1 / (1 + np.exp(-good)), peers.LOGISTIC: 1 / (1 + np.exp(-labels - 2 * noise)),
            peers.GBDT: good, real_logs.BASE_RATE: np.full(600, 0.3)}
  measured = real_logs.measure(labels, scores)
  assert real_logs.best_peer(measured) == peers.GBDT
  model = measured[real_logs.MODEL]
  assert model.auc.value == pytest.approx(evaluation_results.auc(labels, good))
  assert model.auc.lower < model.auc.value < model.auc.upper
  assert (model.gap.value, model.gap.lower, model.gap.upper) == pytest.approx((0, 0, 0))
  assert measured[real_logs.BASE_RATE].auc.value == 0.5
  assert measured[peers.LOGISTIC].gap is None
  lines = real_logs.table_lines('avazu', labels, measured,
                                {'pushed': False, 'lr_c': 0.1})
  assert lines[0][0] == f'avazu (600, {labels.sum()})'
  assert 'NOT pushed' in lines[0][1] and lines[0][6].startswith('NOT met: calibration')
  assert lines[2][1] == f'{peers.GBDT} (best peer)'
  assert real_logs.markdown(lines).count('\n') == len(lines) + 1
