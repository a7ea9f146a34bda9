"""The row rules: what makes one value, one CSV line or one creative acceptable.

The one home of these rules, derived from models/features.py and free of TFX imports, so that
ExampleGen, DataGate, batch scoring, `check_csv`, monitoring, the client and the local server
all accept and refuse exactly the same things. Every function returns a refusal in words (or
None), never raises on bad input: one bad value costs one row or one request, never a run.
"""
import math
from typing import Any, Optional, Tuple

from models import features


def parse_cell(feature: features.Feature, cell: str) -> Tuple[Any, Optional[str]]:
  """A CSV cell as the field's value: (value, None), or (None, reason) when unusable.

  An empty optional cell takes the field's default; a parsed value must also pass
  value_refusal (finite, in range, in the closed domain, a valid label)."""
  if not cell:
    if feature.required:
      return None, f'{feature.name}: required value is empty'
    return feature.default, None
  if feature.dtype == 'int':
    try:
      value = int(cell)
    except ValueError:
      return None, f'{feature.name}: {cell!r} is not an integer'
  elif feature.dtype == 'float':
    try:
      value = float(cell)
    except ValueError:
      return None, f'{feature.name}: {cell!r} is not a number'
  else:
    value = cell
  refusal = value_refusal(feature, value)
  return (None, refusal) if refusal else (value, None)


def value_refusal(feature: features.Feature, value: Any) -> Optional[str]:
  """Why a typed value (from a CSV cell or a JSON request) is not acceptable, or None.

  Numbers must be finite and within `value_range`; strings within a closed `domain`."""
  if feature.dtype in ('int', 'float'):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return f'{feature.name}: {value!r} is not a number'
    if not math.isfinite(value):
      return f'{feature.name}: {value!r} is not a finite number'
    if feature.dtype == 'int' and not float(value).is_integer():
      return f'{feature.name}: {value!r} is not a whole number'
    if feature.value_range:
      low, high = feature.value_range
      if not low <= value <= high:
        return f'{feature.name}: {value!r} is outside [{low:g}, {high:g}]'
    return None
  if feature.dtype == 'string':
    if not isinstance(value, str):
      return f'{feature.name}: {value!r} is not text'
    if feature.domain and value not in feature.domain:
      return f'{feature.name}: {value!r} is not one of {", ".join(feature.domain)}'
  return None
