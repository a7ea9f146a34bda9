"""One history of the served model: pipeline runs (from MLMD) and monitoring checks (from a
small JSON-lines store beside it, since MLMD does not hold them), grouped by month (span).

    MLMD (locally <output_root>/metadata.db)        pipeline runs, pushed versions, evaluations
    <output_root>/monitoring/checks/<time>.json     one file per check (check.py writes it)
    <output_root>/monitoring/report.html            report.py renders both
The root may be a local path or gs:// (one object per check: object stores cannot append).
"""
import dataclasses
import json
import time
from typing import Any, Dict, List, Optional

from apache_beam.io.filesystems import FileSystems

from monitoring import lineage as lineage_lib
from monitoring import quality
from monitoring.measures import Measure

MONITORING_DIR = 'monitoring'
CHECKS_DIR = 'checks'
REPORT_FILE = 'report.html'


def monitoring_dir(output_root: str) -> str:
  return f"{output_root.rstrip('/')}/{MONITORING_DIR}"


def report_path(output_root: str) -> str:
  return f'{monitoring_dir(output_root)}/{REPORT_FILE}'


@dataclasses.dataclass
class CheckRecord:
  """What one check saw: a span's captured traffic and, if it has arrived, its labels."""
  span: int
  served_version: Optional[str]
  captured: int  # rows written by the capture
  dropped: int  # rows the capture had to drop
  measures: List[Measure]
  lost: int = 0  # rows lost by killed capture processes, counted at the next start (capture.py)
  promised: Optional[Dict[str, float]] = None  # the served model's evaluation
  observed: Optional[Dict[str, float]] = None  # on the labelled month, when it has arrived
  mean_prediction: Optional[float] = None  # served traffic
  eval_mean_prediction: Optional[float] = None
  notes: List[str] = dataclasses.field(default_factory=list)
  time: float = dataclasses.field(default_factory=time.time)

  @property
  def broken(self) -> List[Measure]:
    return [m for m in self.measures if m.broken]

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True, allow_nan=True)

  @staticmethod
  def from_dict(values: Dict[str, Any]) -> 'CheckRecord':
    values = dict(values, measures=[Measure(**m) for m in values['measures']])
    return CheckRecord(**values)


def write_file(path: str, text: str) -> None:
  """Writes a whole file, local or gs:// (LocalFileSystem.create makes the folders)."""
  with FileSystems.create(path) as f:
    f.write(text.encode('utf-8'))


def append(output_root: str, record: CheckRecord) -> str:
  stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime(record.time))
  path = (f'{monitoring_dir(output_root)}/{CHECKS_DIR}/'
          f'{stamp}-{int(record.time * 1000) % 1000:03d}-span-{record.span}.json')
  write_file(path, record.to_json())
  return path


def checks(output_root: str) -> List[CheckRecord]:
  """Every check recorded under output_root, oldest first."""
  pattern = f'{monitoring_dir(output_root)}/{CHECKS_DIR}/*.json'
  records = []
  for match in FileSystems.match([pattern])[0].metadata_list:
    with FileSystems.open(match.path) as f:
      records.append(CheckRecord.from_dict(json.loads(f.read().decode('utf-8'))))
  return sorted(records, key=lambda r: r.time)


@dataclasses.dataclass
class Month:
  """Everything known about one span: its pipeline runs and its latest check."""
  span: int
  runs: List[lineage_lib.PipelineRun] = dataclasses.field(default_factory=list)
  promised_by_run: Dict[int, Optional[Dict[str, float]]] = dataclasses.field(
      default_factory=dict)
  check: Optional[CheckRecord] = None
  checks: int = 0


def months(output_root: str, lineage: Optional[lineage_lib.Lineage]) -> List[Month]:
  """The history by span, oldest first (pipeline runs only when there is an MLMD store)."""
  by_span: Dict[int, Month] = {}
  if lineage is not None:
    for run in lineage.runs():
      if run.span is None:
        continue
      month = by_span.setdefault(run.span, Month(run.span))
      month.runs.append(run)
      month.promised_by_run[run.run_id] = (quality.promised(run.evaluation_uri)
                                           if run.evaluation_uri else None)
  for record in checks(output_root):
    month = by_span.setdefault(record.span, Month(record.span))
    month.checks += 1
    if month.check is None or record.time >= month.check.time:
      month.check = record
  return [by_span[span] for span in sorted(by_span)]
