"""`evaluation_report.html` beside evaluation_report.md: the same evaluation as charts a person
reads at a glance, then the Markdown report's words and tables.

One self-contained file: matplotlib's SVG inline and CSS, no script, nothing fetched when it
opens. Under the verdict, the model's AUC margin over its challenger (a logistic regression on
the same rows) with its paired interval; its table is among the figures. The charts, each
the new model against the served one when there is one:
* the reliability diagram: the observed click rate per bin of predictions, with its 95 %
  interval, against the diagonal a calibrated model follows (from TFMA's CalibrationPlot);
* calibration (mean prediction / observed click rate) overall, per cohort and per slice, with
  the interval chance alone allows on those rows (from the metrics every evaluation has);
* AUC per cohort (new vs established ads) and per slice, with TFMA's 95 % intervals; a group
  without clicks or without non-clicks has no AUC and says so.
Intervals are clipped to [0, 1], where AUC and click rates live; calibration's at 3.
"""
import html
import io
from typing import List, Optional, Sequence, Tuple

import markdown
import matplotlib
from matplotlib.figure import Figure

from components import evaluation_report
from components.evaluation_results import AUC, CALIBRATION, OVERALL, Estimate
from components.evaluation_results import Results

HTML_FILE = 'evaluation_report.html'
NEW, SERVED = 'new model', 'served model'
COLOURS = {NEW: '#1f77b4', SERVED: '#ff7f0e'}
RELIABILITY_BINS = 10
# What the group charts draw: metric -> (axis words, reference line, the axis' range, where
# intervals are cut).
GROUP_METRICS = {
    AUC: ('AUC (95 % interval); 0.5 is chance', 0.5, (0.0, 1.0)),
    CALIBRATION: ('mean prediction / click rate (95 % interval, cut at 3); 1 is calibrated',
                  1.0, (0.0, 3.0)),
}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; border: 1px solid #ddd; padding: 8px; }
figcaption { font-size: 13px; font-weight: 600; margin-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 3px 7px; text-align: left; }
.blessed p:last-of-type { color: #070; font-weight: 600; }
.refused p:last-of-type, .refused li { color: #b00; }
"""


def models(results: Results) -> List[Tuple[str, str]]:
  """(words, TFMA model name) of the new model and, when there was one, the served model."""
  pairs = [(NEW, results.candidate)]
  if results.baseline is not None:
    pairs.append((SERVED, results.baseline))
  return pairs


def _clipped(estimate: Estimate, bounds: Tuple[float, float]) -> Tuple[float, float]:
  """The interval's distances below and above the value, inside bounds."""
  lower = estimate.value if estimate.lower is None else max(bounds[0], estimate.lower)
  upper = estimate.value if estimate.upper is None else min(bounds[1], estimate.upper)
  return max(0.0, estimate.value - lower), max(0.0, upper - estimate.value)


def _gid(*parts: str) -> str:
  """An SVG id for a drawn series (what the tests count); ids hold no spaces."""
  return ':'.join(parts).replace(' ', '_')


def svg(figure: Figure) -> str:
  """The figure as an inline <svg> element, text as text (searchable, no font paths)."""
  buffer = io.StringIO()
  with matplotlib.rc_context({'svg.fonttype': 'none', 'svg.hashsalt': HTML_FILE}):
    figure.savefig(buffer, format='svg', bbox_inches='tight',
                   metadata={'Date': None, 'Creator': None})
  text = buffer.getvalue()
  return text[text.index('<svg'):]


def reliability_figure(results: Results, slice_name: str = OVERALL) -> Optional[Figure]:
  """The reliability diagram of each model in a slice; None without a CalibrationPlot."""
  curves = [(words, results.reliability(slice_name, model, RELIABILITY_BINS))
            for words, model in models(results)]
  curves = [(words, bins) for words, bins in curves if bins]
  if not curves:
    return None
  figure = Figure(figsize=(5.4, 4.4))
  axes = figure.add_subplot()
  top = 0.0
  for words, bins in curves:
    x = [b.mean_prediction for b in bins]
    y = [b.click_rate.value for b in bins]
    errors = list(zip(*[_clipped(b.click_rate, (0.0, 1.0)) for b in bins]))
    drawn = axes.errorbar(x, y, yerr=errors, fmt='o-', color=COLOURS[words], capsize=3,
                          markersize=4, label=f'{words}: {len(bins)} bins')
    drawn.lines[0].set_gid(_gid('reliability', words))
    top = max(top, max(x), max(b.click_rate.upper for b in bins))
  top = min(1.0, top * 1.08)
  axes.plot([0, top], [0, top], '--', color='#888', linewidth=1, label='calibrated')
  axes.set(xlim=(0, top), ylim=(0, top), xlabel='mean prediction in the bin',
           ylabel='observed click rate (95 % interval)')
  axes.legend(loc='upper left', fontsize=8)
  axes.grid(alpha=0.3)
  return figure


def group_figure(results: Results, slice_names: Sequence[str], chart: str,
                 metric: str = AUC) -> Figure:
  """A metric with its interval per group and model, one row per group; `chart` names the
  drawn series' ids. A group without clicks or without non-clicks is n/a."""
  axis, reference, bounds = GROUP_METRICS[metric]
  pairs = models(results)
  figure = Figure(figsize=(6.4, 1.0 + 0.22 * len(slice_names) * len(pairs)))
  axes = figure.add_subplot()
  step = 0.8 / len(pairs)
  for row, slice_name in enumerate(slice_names):
    for n, (words, _) in enumerate(pairs):
      y = row + (n - (len(pairs) - 1) / 2) * step
      estimate = (results.new if words == NEW else results.served)(slice_name, metric)
      if estimate is None or not results.ranks(slice_name):
        axes.text(sum(bounds) / 2, y, f'{words}: n/a (no clicks or no non-clicks)',
                  fontsize=7, va='center', ha='center', color=COLOURS[words])
        continue
      lower, upper = _clipped(estimate, bounds)
      drawn = axes.errorbar([estimate.value], [y], xerr=[[lower], [upper]], fmt='o',
                            color=COLOURS[words], capsize=3, markersize=4,
                            label=words if row == 0 else None)
      drawn.lines[0].set_gid(_gid(chart, words, slice_name))
  axes.axvline(reference, color='#888', linestyle='--', linewidth=1)
  rows, clicks = zip(*[results.rows_and_clicks(s) for s in slice_names])
  axes.set_yticks(range(len(slice_names)), [
      f'{s or "all eval rows"} ({r:.0f} rows, {c:.0f} clicks)'
      for s, r, c in zip(slice_names, rows, clicks)], fontsize=8)
  margin = (bounds[1] - bounds[0]) / 100
  axes.set(xlim=(bounds[0] - margin, bounds[1] + margin),
           ylim=(len(slice_names) - 0.5, -0.5), xlabel=axis)
  axes.grid(axis='x', alpha=0.3)
  if axes.get_legend_handles_labels()[0]:  # above the rows, which fill the axes
    axes.legend(loc='lower left', bbox_to_anchor=(0, 1), ncol=2, fontsize=8, frameon=False)
  return figure


def _html(markdown_text: str) -> str:
  return markdown.markdown(markdown_text, extensions=['tables'])


def _figure_html(title: str, figure: Optional[Figure], missing: str = '') -> str:
  body = svg(figure) if figure is not None else f'<p>{html.escape(missing)}</p>'
  return (f'<figure class="chart" data-chart="{html.escape(title)}">'
          f'<figcaption>{html.escape(title)}</figcaption>{body}</figure>')


def render(results: Results, gate, eval_fraction: float, served: Optional[str],
           blessed: bool, reasons: List[str]) -> str:
  """The page: the verdict, the charts, the tables; the arguments of evaluation_report.render,
  whose words it shows."""
  cohorts, others = evaluation_report.groups(results)
  charts = [_figure_html('reliability diagram, all eval rows', reliability_figure(results),
                         'No calibration plot in this evaluation (the eval config has no '
                         'CalibrationPlot metric).')]
  charts.append(_figure_html('calibration per cohort and slice', group_figure(
      results, [OVERALL] + cohorts + others, 'calibration', CALIBRATION)))
  if cohorts:
    charts.append(_figure_html('AUC per cohort', group_figure(results, cohorts, 'cohort')))
  if others:
    charts.append(_figure_html('AUC per slice', group_figure(results, others, 'slice')))
  compared = ('the new model against the served model' if results.baseline is not None
              else 'the new model; no model was served to compare with')
  words = evaluation_report.verdict(gate, eval_fraction, served, blessed, reasons)
  return ('<!doctype html><html><head><meta charset="utf-8">'
          f'<title>{evaluation_report.TITLE}</title><style>{_STYLE}</style></head><body>'
          f'<h1>{evaluation_report.TITLE}</h1>'
          f'<div class="{"blessed" if blessed else "refused"}">{_html(words)}</div>'
          f'<p class="challenger">{html.escape(evaluation_report.challenger_line(results))}'
          '</p>'
          f'<h2>Charts: {compared}</h2><div class="charts">{"".join(charts)}</div>'
          f'<h2>Figures</h2>{_html(evaluation_report.tables(results))}</body></html>\n')
