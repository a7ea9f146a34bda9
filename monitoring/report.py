"""`<output_root>/monitoring/report.html`: the history month by month, as charts a person reads
at a glance. One self-contained file: inline SVG and CSS, no script, nothing fetched.

Per month (span): the served version and the pipeline run's outcome; AUC, log-loss and
calibration promised vs observed; skew and drift per field (a heat map of value / threshold);
the mean predicted CTR served vs on the eval data; rows captured, dropped and lost (by a
capture process that was killed).
"""
import argparse
import html
import math
import os
from typing import Dict, Optional, Sequence, Tuple

from components import evaluation_results
from monitoring import history
from monitoring import lineage as lineage_lib
from monitoring.measures import DECAY, DRIFT, SKEW

_W, _H, _PAD = 380, 210, 44
_PROMISED, _OBSERVED = '#1f77b4', '#d62728'
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; border: 1px solid #ddd; padding: 8px; }
figcaption { font-size: 13px; font-weight: 600; margin-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
.broken { color: #b00; font-weight: 600; } .ok { color: #070; }
svg text { font-size: 11px; }
"""


def _esc(value) -> str:
  return html.escape(str(value))


def _finite(value) -> bool:
  return value is not None and not (isinstance(value, float) and math.isnan(value))


def _legend(n: int, label: str, colour: str, series) -> str:
  """Legend entry n, after the labels before it (about 7 px a character)."""
  left = _PAD + sum(30 + 7 * len(s[0]) for s in series[:n])
  return (f'<rect x="{left}" y="4" width="10" height="10" fill="{colour}"/>'
          f'<text x="{left + 14}" y="13">{_esc(label)}</text>')


def line_chart(title: str, months: Sequence[int],
               series: Sequence[Tuple[str, str, Sequence[Optional[float]]]]) -> str:
  """An SVG line chart; series are (label, colour, one value or None per month)."""
  values = [v for _, _, vs in series for v in vs if _finite(v)]
  parts = [f'<figure class="chart" data-chart="{_esc(title)}"><figcaption>{_esc(title)}'
           '</figcaption>', f'<svg width="{_W}" height="{_H}" role="img">']
  if not values:
    parts.append(f'<text x="{_PAD}" y="{_H / 2}">no data yet</text></svg></figure>')
    return ''.join(parts)
  low, high = min(values), max(values)
  pad = (high - low) * 0.15 or abs(high) * 0.1 or 1
  low, high = low - pad, high + pad
  x = lambda i: _PAD + (i + 0.5) * (_W - 2 * _PAD) / max(1, len(months))
  y = lambda v: _H - _PAD + 10 - (v - low) / (high - low) * (_H - 2 * _PAD)
  for tick in range(5):
    value = low + (high - low) * tick / 4
    parts.append(f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                 f'stroke="#eee"/><text x="2" y="{y(value) + 4:.1f}">{value:.3g}</text>')
  for i, span in enumerate(months):
    parts.append(f'<text x="{x(i) - 14:.1f}" y="{_H - 8}">span {span}</text>')
  for n, (label, colour, vs) in enumerate(series):
    points = [(x(i), y(v)) for i, v in enumerate(vs) if _finite(v)]
    if len(points) > 1:
      parts.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
                   f'points="{" ".join(f"{px:.1f},{py:.1f}" for px, py in points)}"/>')
    parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}"/>'
              for px, py in points]
    parts.append(_legend(n, label, colour, series))
  parts.append('</svg></figure>')
  return ''.join(parts)


def bar_chart(title: str, months: Sequence[int],
              series: Sequence[Tuple[str, str, Sequence[float]]]) -> str:
  """Grouped bars, one group per month."""
  top = max([v for _, _, vs in series for v in vs] + [1])
  group = (_W - 2 * _PAD) / max(1, len(months))
  width = group * 0.8 / len(series)
  parts = [f'<figure class="chart" data-chart="{_esc(title)}"><figcaption>{_esc(title)}'
           f'</figcaption><svg width="{_W}" height="{_H}" role="img">']
  for n, (label, colour, vs) in enumerate(series):
    for i, value in enumerate(vs):
      height = value / top * (_H - 2 * _PAD)
      left = _PAD + i * group + group * 0.1 + n * width
      parts.append(f'<rect class="bar" x="{left:.1f}" y="{_H - _PAD - height:.1f}" '
                   f'width="{width:.1f}" height="{height:.1f}" fill="{colour}">'
                   f'<title>{_esc(label)}: {value:g}</title></rect>'
                   f'<text x="{left:.1f}" y="{_H - _PAD - height - 3:.1f}">{value:g}</text>')
    parts.append(_legend(n, label, colour, series))
  for i, span in enumerate(months):
    parts.append(f'<text x="{_PAD + i * group + group / 2 - 14:.1f}" y="{_H - _PAD + 16}">'
                 f'span {span}</text>')
  parts.append('</svg></figure>')
  return ''.join(parts)


def _heat(ratio: Optional[float]) -> str:
  if ratio is None:
    return '#f4f4f4'
  ratio = min(ratio, 2.0) / 2.0  # white at 0, orange at the threshold, red at twice it
  return f'rgb(255,{int(255 - 190 * ratio)},{int(255 - 235 * ratio)})'


def heat_map(title: str, months: Sequence[int],
             values: Dict[str, Dict[int, Tuple[float, float]]]) -> str:
  """Fields x months; each cell is value (threshold), coloured by value / threshold."""
  names = sorted(values)
  cell_w, cell_h, left = 64, 20, 120
  width, height = left + cell_w * max(1, len(months)) + 8, 28 + cell_h * max(1, len(names))
  parts = [f'<figure class="chart" data-chart="{_esc(title)}"><figcaption>{_esc(title)}'
           f'</figcaption><svg width="{width}" height="{height}" role="img">']
  for i, span in enumerate(months):
    parts.append(f'<text x="{left + i * cell_w + 12}" y="14">span {span}</text>')
  if not names:
    parts.append('<text x="4" y="40">not measured yet</text>')
  for r, name in enumerate(names):
    y = 20 + r * cell_h
    parts.append(f'<text x="4" y="{y + 14}">{_esc(name)}</text>')
    for i, span in enumerate(months):
      value, threshold = values[name].get(span, (None, None))
      ratio = value / threshold if value is not None and threshold else None
      label = '' if value is None else f'{value:.3f}'
      parts.append(f'<rect class="cell" x="{left + i * cell_w}" y="{y}" width="{cell_w - 2}" '
                   f'height="{cell_h - 2}" fill="{_heat(ratio)}"><title>{_esc(name)}, span '
                   f'{span}: {label} (threshold {threshold})</title></rect>'
                   f'<text x="{left + i * cell_w + 8}" y="{y + 14}">{label}</text>')
  parts.append('</svg></figure>')
  return ''.join(parts)


def _quality(month: history.Month, which: str, metric: str) -> Optional[float]:
  check = month.check
  if check is not None:
    values = check.promised if which == 'promised' else check.observed
    if values:
      return values.get(metric)
  if which == 'promised':  # no check yet: what the month's pushed model promised
    for run in reversed(month.runs):
      promised = month.promised_by_run.get(run.run_id)
      if run.pushed_version and promised:
        return promised.get(metric)
  return None


def _field_values(months: Sequence[history.Month], kind: str):
  values: Dict[str, Dict[int, Tuple[float, float]]] = {}
  for month in months:
    for m in month.check.measures if month.check else []:
      if m.kind == kind and m.value is not None:
        values.setdefault(m.name, {})[month.span] = (m.value, m.threshold)
  return values


def _run_words(month: history.Month) -> str:
  if not month.runs:
    return '-'
  run = month.runs[-1]
  if run.pushed_version:
    return f'pushed version {run.pushed_version}'
  return 'completed, not pushed' if run.completed else 'stopped'


def _short(measure) -> str:
  """'skew of category: 0.406 (threshold 0.1)'; the full sentence is the cell's tooltip."""
  if measure.value is None:
    return f'{measure.kind} of {measure.name}: {measure.words.split(":")[0]}'
  against = (f'promised {measure.reference:.3g}' if measure.reference is not None else
             f'threshold {measure.threshold:g}')
  return f'{measure.kind} of {measure.name}: {measure.value:.3g} ({against})'


def _table(months: Sequence[history.Month]) -> str:
  rows = ['<table id="months"><tr><th>span</th><th>served version</th><th>pipeline run</th>'
          '<th>captured</th><th>dropped</th><th>lost</th><th>check</th></tr>']
  for month in months:
    check = month.check
    if check is None:
      verdict = '-'
    elif check.broken:
      verdict = '<span class="broken">' + '<br>'.join(
          f'<span title="{_esc(m.words)}">{_esc(_short(m))}</span>' for m in check.broken
      ) + '</span>'
    else:
      verdict = '<span class="ok">no threshold broken</span>'
    rows.append(f'<tr><td>{month.span}</td><td>{_esc(check.served_version if check else "-")}'
                f'</td><td>{_esc(_run_words(month))}</td>'
                f'<td>{check.captured if check else "-"}</td>'
                f'<td>{check.dropped if check else "-"}</td>'
                f'<td>{check.lost if check else "-"}</td><td>{verdict}</td></tr>')
  rows.append('</table>')
  return ''.join(rows)


def render(months: Sequence[history.Month]) -> str:
  spans = [m.span for m in months]
  quality_charts = [
      line_chart(title, spans, [
          ('promised', _PROMISED, [_quality(m, 'promised', metric) for m in months]),
          ('observed', _OBSERVED, [_quality(m, 'observed', metric) for m in months])])
      for title, metric in (('AUC', evaluation_results.AUC),
                            ('log-loss', evaluation_results.LOGLOSS),
                            ('calibration (mean prediction / mean label)',
                             evaluation_results.CALIBRATION))]
  checked = [m for m in months if m.check]
  traffic = [
      line_chart('mean predicted CTR', spans, [
          ('eval data of the served model', _PROMISED,
           [m.check.eval_mean_prediction if m.check else None for m in months]),
          ('served traffic', _OBSERVED,
           [m.check.mean_prediction if m.check else None for m in months])]),
      bar_chart('rows captured and dropped', [m.span for m in checked], [
          ('captured', '#2ca02c', [m.check.captured for m in checked]),
          ('dropped', '#ff7f0e', [m.check.dropped for m in checked])]),
  ]
  broken = sum(bool(m.check and m.check.broken) for m in months)
  return (
      '<!DOCTYPE html><html><head><meta charset="utf-8"><title>adclick monitoring</title>'
      f'<style>{_STYLE}</style></head><body><h1>adclick: the served model month by month</h1>'
      f'<p>{len(months)} months, {len(checked)} checked, {broken} with a broken threshold. '
      'Promised: the served model\'s evaluation when it was pushed; observed: the same model '
      'on the month\'s labelled data.</p>'
      f'<h2>Months</h2>{_table(months)}'
      f'<h2>Quality ({DECAY}): promised vs observed</h2><div class="charts">'
      f'{"".join(quality_charts)}</div>'
      f'<h2>Fields: {SKEW} against the training data and {DRIFT} against the previous month '
      '(value; colour: value / threshold, red at twice it)</h2><div class="charts">'
      f'{heat_map(f"{SKEW} per field", spans, _field_values(months, SKEW))}'
      f'{heat_map(f"{DRIFT} per field", spans, _field_values(months, DRIFT))}</div>'
      f'<h2>Predictions and capture</h2><div class="charts">{"".join(traffic)}</div>'
      '</body></html>\n')


def write(output_root: str, lineage) -> str:
  """Renders the whole history to <output_root>/monitoring/report.html; returns its path."""
  path = history.report_path(output_root)
  history.write_file(path, render(history.months(output_root, lineage)))
  return path




def main(argv=None):
  parser = argparse.ArgumentParser(description='Renders ' + history.REPORT_FILE + ' again.')
  parser.add_argument('--output-root', default='outputs')
  args = parser.parse_args(argv)
  metadata = f"{args.output_root.rstrip('/')}/metadata.db"
  lineage = (lineage_lib.Lineage(lineage_lib.sqlite_config(metadata))
             if os.path.exists(metadata) else None)
  print(write(args.output_root, lineage))


if __name__ == '__main__':
  main()
