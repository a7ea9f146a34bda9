"""The TalkingData sample as the pipeline reads it: click_time ("2017-11-07 9:30", UTC) as unix
seconds with the hour of day (0-23) beside it, attributed_time dropped (it is set only for
converted clicks: it leaks the label); one span per calendar day, 2017-11-06 .. 11-08 as
spans 1..3, and the last day, 11-09, held out (out of time by day).

    python -m examples.talkingdata.convert --out DIR
"""
import datetime
import os
from typing import Dict, List

from examples import layout

SOURCE_FILE = 'train_sample.csv'
HEADER = ('ip', 'app', 'device', 'os', 'channel', 'click_time', 'hour', 'is_attributed')
FIRST_DAY = datetime.date(2017, 11, 6)  # span 1
HELDOUT_DAY = datetime.date(2017, 11, 9)


def clicked_at(text: str) -> datetime.datetime:
  return datetime.datetime.strptime(text, '%Y-%m-%d %H:%M').replace(
      tzinfo=datetime.timezone.utc)


def convert(source: str, out: str) -> layout.Converted:
  header, *rows = layout.read_rows(os.path.join(source, SOURCE_FILE))
  column = {name: header.index(name) for name in header}
  days: Dict[datetime.date, List[List[str]]] = {}
  for row in rows:
    when = clicked_at(row[column['click_time']])
    values = {name: row[column[name]] for name in HEADER if name in column}
    values.update(click_time=str(int(when.timestamp())), hour=str(when.hour))
    days.setdefault(when.date(), []).append([values[name] for name in HEADER])
  spans = {(day - FIRST_DAY).days + 1: day_rows for day, day_rows in sorted(days.items())
           if day != HELDOUT_DAY}
  return layout.write(out, spans, days.get(HELDOUT_DAY, []), HEADER)


if __name__ == '__main__':
  layout.main('talkingdata', convert)
