"""The internal API's client for the click model behind TF Serving's REST API.

    client = Client('http://127.0.0.1:8501')
    client.predict({'ad_id': 'ad_00312', 'advertiser': 'adv_036', ..., 'image': png_bytes})
    -> {'success': True, 'message': '...',
        'prediction': {<signatures.PREDICTION_KEY>: 0.031, 'model_version': '1795273561'}}

An ad is checked against models/features.py, read at each call, before anything is sent, by
the rules of models/rows.py that ExampleGen applies too: required fields, types, defaults for
optional fields, finite numbers, ranges, closed domains and, where features.py has an image
field, a creative in one of rows.IMAGE_FORMATS that the model's own decoder decodes (that
check loads TensorFlow). Every problem comes back as success=False with a message that names
it, never as an exception.

Which version answers: the newest (default), `version=N`, or `label='stable'` (TF Serving's
version labels, serving/labels.py). With `canary_share=0.05`, 5% of the calls go to the
`canary` label and the rest to `stable`; a label the server does not have (no canary under
way, or no labels at all) or whose version is not loaded yet falls back to the `stable`
label, then to the newest version; a missing label is asked for again after LABEL_RETRY_S,
so a client can keep a canary share configured for good. The version a result names is the
one that answered: the client asks which version serves, then predicts on it by number
(Client._predict_on).
Every call to the server, with its answer, goes through Client._call.
"""
import base64
import json
import random
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, TYPE_CHECKING

import requests

from models import features
from models import rows
from models import serving_layout
from models import signatures

if TYPE_CHECKING:  # capture pulls in Beam's file systems: only callers that capture load it
  from serving import capture as capture_lib

DEFAULT_URL = f'http://127.0.0.1:{serving_layout.REST_PORT}'
VERSION_KEY = 'model_version'  # beside signatures.PREDICTION_KEY in a prediction
_BATCH_ROWS = 64  # ads per request in predict_many
LABEL_RETRY_S = 30.0  # how long a label the server lacks is not asked for again
_UNKNOWN_LABEL = 'Unrecognized servable version label: '  # TF Serving's words


class ServingError(Exception):
  """The server could not be reached or refused the request; the message says which."""


class UnknownLabel(ServingError):
  """The server has no such version label."""


class NotServed(ServingError):
  """The server does not serve that model, or that version (a label's may still be loading)."""


def validate(ad: Any) -> Tuple[Optional[Dict[str, Any]], List[str]]:
  """(the TF Serving instance, []) for a valid raw ad, else (None, the problems)."""
  if not isinstance(ad, Mapping):
    return None, [f'an ad must be an object of field: value pairs, not {type(ad).__name__}']
  fields = [f.name for f in features.serving_features()]
  problems = [f'unknown field {name!r} (the fields are {", ".join(fields)})'
              for name in ad if name not in fields]
  instance = {}
  for feature in features.serving_features():
    value = ad.get(feature.name)
    if value is None or value == '':
      if feature.required:
        problems.append(f'{feature.name} is missing ({feature.description})')
        continue
      value = feature.default
    try:
      instance[feature.name] = _coerce(feature, value)
    except ValueError as e:
      problems.append(str(e))
  return (None if problems else instance), problems


def _coerce(feature: features.Feature, value: Any) -> Any:
  """The value as the serving signature takes it; ValueError says what is wrong, in the words
  of models/rows.py, the rules ExampleGen and the server apply too."""
  if feature.dtype == 'bytes':
    if not isinstance(value, (bytes, bytearray)):
      raise ValueError(f'{feature.name}: must be the bytes of an image file '
                       f'({", ".join(rows.IMAGE_FORMATS)}), got {type(value).__name__}')
    refusal = rows.image_refusal(bytes(value))
    if refusal:
      raise ValueError(f'{feature.name}: {refusal}')
    return {'b64': base64.b64encode(value).decode('ascii')}
  if feature.dtype in ('int', 'float') and isinstance(value, str):
    value, refusal = rows.parse_cell(feature, value)  # numbers as text, as in a CSV
  else:
    refusal = rows.value_refusal(feature, value)
  if refusal:
    raise ValueError(refusal)
  return int(value) if feature.dtype == 'int' else value


def result(success: bool, message: str,
           prediction: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  return {'success': success, 'message': message, 'prediction': prediction}


class Client:
  """Calls `:predict` with a timeout, retrying a bounded number of times on 503 and on
  connection errors (a server starting up, a replica going away)."""

  def __init__(self, url: str = DEFAULT_URL, model_name: str = serving_layout.MODEL_NAME,
               timeout: float = 5.0, retries: int = 2, backoff: float = 0.2,
               label: Optional[str] = None, version: Optional[int] = None,
               canary_share: float = 0.0, seed: Optional[int] = None,
               capture: Optional['capture_lib.Capture'] = None):
    if sum(x is not None and x != 0 for x in (label, version, canary_share)) > 1:
      raise ValueError('give at most one of label, version and canary_share')
    if not 0 <= canary_share <= 1:
      raise ValueError(f'canary_share must be between 0 and 1, got {canary_share}')
    self.url = url.rstrip('/')
    self.model_name = model_name
    self.timeout = timeout
    self.retries = retries
    self.backoff = backoff
    self.label = label
    self.version = version
    self.canary_share = canary_share
    self._random = random.Random(seed)
    self._missing_labels: Dict[str, float] = {}  # label -> when to ask for it again
    self._session = requests.Session()
    self.capture = capture  # None (the default): nothing is captured (serving/capture.py)

  def predict(self, ad: Any) -> Dict[str, Any]:
    return self.predict_many([ad])[0]

  def predict_many(self, ads: Sequence[Any]) -> List[Dict[str, Any]]:
    """One result per ad; valid ads go to the server _BATCH_ROWS at a time."""
    results: List[Optional[Dict[str, Any]]] = [None] * len(ads)
    valid = []
    for i, ad in enumerate(ads):
      instance, problems = validate(ad)
      if problems:
        results[i] = result(False, 'invalid ad: ' + '; '.join(problems))
      else:
        valid.append((i, instance))
    for start in range(0, len(valid), _BATCH_ROWS):
      chunk = valid[start:start + _BATCH_ROWS]
      try:
        version, label, probabilities = self._predict_routed([instance for _, instance in chunk])
      except ServingError as e:
        for i, _ in chunk:
          results[i] = result(False, str(e))
        continue
      if self.capture is not None:
        self.capture.record([instance for _, instance in chunk], probabilities, version)
      via = f' (label {label})' if label else ''
      for (i, _), probability in zip(chunk, probabilities):
        results[i] = result(True, f'click probability {probability:.4f} from model '
                            f'{self.model_name} version {version}{via}',
                            {signatures.PREDICTION_KEY: probability, VERSION_KEY: version})
    return results

  def _routes(self) -> List[Optional[str]]:
    """The labels to try in order (None: the newest version), for one call."""
    if self.label is not None or self.version is not None:
      return [self.label]
    if not self.canary_share:
      return [None]
    first = (serving_layout.CANARY if self._random.random() < self.canary_share
             else serving_layout.STABLE)
    routes = [first, serving_layout.STABLE, None] if first == serving_layout.CANARY else [
        first, None]
    now = time.monotonic()
    return [r for r in routes if r is None or self._missing_labels.get(r, 0) <= now]

  def _predict_routed(self, instances) -> Tuple[str, Optional[str], List[float]]:
    """(version, label, probabilities) from the first route that has the label loaded."""
    *fallible, last = self._routes()
    for label in fallible:
      try:
        return self._predict_on(label, instances)
      except UnknownLabel:
        self._missing_labels[label] = time.monotonic() + LABEL_RETRY_S
      except NotServed:  # the label's version is still loading
        pass
    return self._predict_on(last, instances)

  def _predict_on(self, label: Optional[str], instances) -> Tuple[str, Optional[str], List[float]]:
    """(version, label, probabilities), the probabilities from that very version.

    TF Serving's predict answer does not name the version that gave it, and a separate
    status call can name another one while a new version takes over. So the client asks which
    version serves, then predicts on that version by number (`/versions/N:predict`). If N was
    unloaded in between, TF Serving answers 404 "Servable not found for request: Specific(...)";
    the client then asks once more and predicts on the version named now. A version given by
    number is not looked up, nor asked for again.
    """
    version = self.serving_version(label)
    try:
      return version, label, self._predict(instances, version)
    except NotServed:
      if self.version is not None:
        raise
    version = self.serving_version(label)
    return version, label, self._predict(instances, version)

  def _model_path(self, label: Optional[str] = None) -> str:
    path = f'/v1/models/{self.model_name}'
    return f'{path}/labels/{label}' if label else path

  def serving_version(self, label: Optional[str] = None) -> str:
    """The version to predict on: the one given, else the label's (from its metadata), else
    the newest available one (TF Serving's choice when a request names none)."""
    if self.version is not None:
      return str(self.version)
    if label:
      metadata = self._call('GET', self._model_path(label) + '/metadata')
      version = metadata.get('model_spec', {}).get('version')
      if not version:
        raise ServingError(f'unexpected answer from {self.url}: {str(metadata)[:200]}')
      return str(version)
    status = self._call('GET', self._model_path())
    available = [int(s['version']) for s in status.get('model_version_status', [])
                 if s.get('state') == 'AVAILABLE']
    if not available:
      raise ServingError(f'model {self.model_name} at {self.url} has no version ready yet')
    return str(max(available))

  def _predict(self, instances: List[Dict[str, Any]], version: str) -> List[float]:
    body = {'signature_name': signatures.SERVING_SIGNATURE, 'instances': instances}
    answer = self._call('POST', f'{self._model_path()}/versions/{version}:predict', body)
    predictions = answer.get('predictions')
    if not isinstance(predictions, list) or len(predictions) != len(instances):
      raise ServingError(f'unexpected answer from {self.url}: {str(answer)[:200]}')
    return [float(p) for p in predictions]

  def _call(self, method: str, path: str, body: Optional[dict] = None) -> Dict[str, Any]:
    """Every request to the server and its answer pass here."""
    url = self.url + path
    for attempt in range(self.retries + 1):
      if attempt:
        time.sleep(self.backoff * 2**(attempt - 1))
      try:
        response = self._session.request(method, url, data=_json(body), headers=_JSON_TYPE,
                                         timeout=self.timeout)
      except requests.ConnectionError as e:
        problem = f'cannot reach the model server at {self.url} ({_reason(e)})'
        continue
      except requests.Timeout:
        raise ServingError(f'the model server at {self.url} did not answer within '
                           f'{self.timeout:g} s') from None
      except requests.RequestException as e:
        raise ServingError(f'cannot call {url}: {e}') from None
      if response.status_code == 503:
        problem = f'the model server at {self.url} is unavailable: {_error(response)}'
        continue
      if response.status_code == 400 and _error(response).startswith(_UNKNOWN_LABEL):
        raise UnknownLabel(f'the model server at {self.url} has no version label '
                           f'{_error(response)[len(_UNKNOWN_LABEL):]!r} for model '
                           f'{self.model_name!r}')
      if response.status_code == 404:
        raise NotServed(f'the server at {self.url} does not serve model '
                        f'{self.model_name!r}: {_error(response)}')
      if response.status_code != 200:
        raise ServingError(f'the model server refused the request (HTTP '
                           f'{response.status_code}): {_error(response)}')
      try:
        return response.json()
      except ValueError:
        raise ServingError(f'{url} answered with something that is not JSON: '
                           f'{response.text[:200]!r}') from None
    raise ServingError(f'{problem}, after {self.retries + 1} attempts; is it running '
                       '(make serve)?')


_JSON_TYPE = {'Content-Type': 'application/json'}


def _json(body: Optional[dict]) -> Optional[str]:
  """The request's JSON. A missing value of a field with a missing indicator (features.py:
  an optional float without default) is NaN, which TF Serving's REST API reads as JSON's
  extension (its "JSON conformance": NaN, Infinity); requests' own json= refuses it."""
  return None if body is None else json.dumps(body)


def _error(response: requests.Response) -> str:
  try:
    return str(response.json()['error'])
  except (ValueError, KeyError, TypeError):
    return response.text[:200] or response.reason


def _reason(error: requests.ConnectionError) -> str:
  text = str(error)
  return 'connection refused' if 'refused' in text.lower() else text[:200]
