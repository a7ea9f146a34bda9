"""The stand-in for tensorflow_model_server: a local server that speaks TF Serving's REST API.

    python -m serving.emulator.model_server --model-base-path outputs/serving \
        [--model-name adclick]
    python -m serving.emulator.model_server --model_config_file models.config \
        --model_config_file_poll_wait_seconds 5 [--allow_version_labels_for_unavailable_models]

tensorflow_model_server cannot be installed on these machines; production runs the
tensorflow/serving image (deploy/). This server answers the same requests with the same bytes:
  GET  /v1/models/{name}[/versions/{N}|/labels/{L}]            status of each version
  GET  /v1/models/{name}[/versions/{N}|/labels/{L}]/metadata   signatures
  POST /v1/models/{name}[/versions/{N}|/labels/{L}]:predict    row or columnar request
and errors as {"error": "..."} with TF Serving's status codes and messages; a request it
cannot take is a 4xx, never a 5xx (:classify and :regress get TF Serving's signature checks).

Like the tensorflow/serving image it serves `<model-base-path>/<model-name>/<version>/`
(models/serving_layout.py), the newest complete version (see versions.py), polling for new
ones; or the models of a model config file (serving/model_config.py), each with its version
policy (latest N, specific, all) and version labels, under TF Serving's rules: a label may
point only at a loaded version, unless the flag allows a *new* label to point at one still
loading, and a config whose labels break that rule changes nothing. A new version takes over
once it has loaded and answered a warmup request; requests under way finish on the version
they started on. A version that fails to load shows in status as END with its error, and the
previous version keeps serving. Concurrent predict calls are batched (batching.py).

No client can starve the others (RestApi, Limits): bodies over 16 KiB are parsed, converted
and checked on worker threads, a body over 1 MiB on its own thread; a request of more rows than
production's max_batch_size gets TF Serving's "Task size N is larger than maximum input batch
size M"; a body must arrive within --rest_api_timeout_in_ms (408), be at most 64 MiB (413,
refused before it is read when its length says so), and wait behind at most
--max-enqueued-batches others (503); a connection without a request for --idle-timeout-seconds
is closed, and at --max-connections a new one closes the one idle the longest. Values that
features.py does not allow (NaN, Infinity, out of range or domain) get 400, as the client
refuses them (models/rows.py). Kept from TF Serving on purpose: invalid UTF-8 inside a JSON
string is refused, as every reader of the project refuses it (TF Serving takes it).
"""
import argparse
import asyncio
import contextlib
from concurrent import futures
import dataclasses
import http
import logging
import math
import os
import re
import resource
import signal
import socket
import urllib.parse
from typing import Dict, Optional, Tuple

from aiohttp import web
from aiohttp import web_protocol
import async_timeout
import numpy as np
import tensorflow as tf

from models import features
from models import rows
from models import serving_layout
from models import signatures
from models import storage
from serving import capture as capture_lib
from serving import model_config
from serving.emulator import batching
from serving.emulator import rest_json
from serving.emulator import versions

# The paths TF Serving's REST handler accepts (model_servers/http_rest_api_util.cc), matched
# against the path *and* query, as TF Serving matches them: a query makes a predict path
# malformed. Its HTTP server hands the handler whatever matches (?i)/v1/.* (kPathRegex).
_API_PATH = re.compile(r'/v1/', re.IGNORECASE)
_PREDICT_PATH = re.compile(
    r'/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)',
    re.IGNORECASE)
_STATUS_PATH = re.compile(
    r'/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?',
    re.IGNORECASE)
MAX_REQUEST_BYTES = 64 << 20  # a body above this gets 413 (aiohttp's 1 MB is too little)
# Where a body is decoded (parsed, converted, checked) and its answer written: up to
# INLINE_BODY_BYTES on the event loop, since a thread hop costs more than its worst case (16 KiB
# of numbers: ~5 ms; one ad with its creative: well under 1 ms); up to SMALL_BODY_BYTES on
# the "decode" threads; larger ones on the one "decode-large" thread, one at a time, so that
# small requests never wait behind a large one.
INLINE_BODY_BYTES = 16 << 10
SMALL_BODY_BYTES = 1 << 20
# Bodies held at once (being read or waiting to be decoded): past it, 503 until some finish.
BUFFERED_BODY_BYTES = 4 * MAX_REQUEST_BYTES
# tf.errors codes by number, as TF Serving names them in status and maps them to HTTP.
_CODES = ('OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
          'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION',
          'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS',
          'UNAUTHENTICATED')


def _rest_error(error: Exception) -> rest_json.RestError:
  """A model or load failure as TF Serving reports it."""
  if isinstance(error, rest_json.RestError):
    return error
  code = getattr(error, 'error_code', None)  # tf.errors.OpError
  if code is not None:
    return rest_json.RestError(_CODES[code] if code < len(_CODES) else 'UNKNOWN', error.message)
  if isinstance(error, (TypeError, ValueError)):  # inputs the signature does not take
    return rest_json.invalid(str(error))
  return rest_json.RestError('INTERNAL', f'{type(error).__name__}: {error}')


class ModelVersions:
  """The versions of one model: polls its base path and keeps loaded the versions its policy
  names (TF Serving's FileSystemStoragePathSource and AvailabilityPreservingPolicy)."""

  def __init__(self, config: model_config.ModelConfig, poll_seconds: float):
    self.name = config.name
    self.config = config
    self.poll_seconds = poll_seconds
    self.loaded: Dict[int, versions.LoadedModel] = {}
    self.states: Dict[int, Tuple[str, str, str]] = {}  # version -> state, error code, message
    self._last_seen: Dict[int, Optional[versions.Snapshot]] = {}
    self._failed: Dict[int, versions.Snapshot] = {}  # retried once their files change

  @property
  def base_path(self) -> str:
    return self.config.base_path

  @property
  def latest(self) -> Optional[versions.LoadedModel]:
    """What a request without a version gets: the newest loaded version."""
    return self.loaded[max(self.loaded)] if self.loaded else None

  async def poll_forever(self):
    while True:
      try:
        await self.poll()
      except Exception:  # pylint: disable=broad-except
        logging.exception('Polling %s failed; trying again', self.base_path)
      await asyncio.sleep(self.poll_seconds)

  async def poll(self):
    """Loads the versions the policy names among those whose files are complete and unchanged
    since the last poll; then unloads the others, but never the last available one while
    none of the versions it names has loaded (a new version that fails to load, say)."""
    seen = await asyncio.get_running_loop().run_in_executor(None, self._scan)
    self._note_changed_files(seen)
    ready = {v for v, files in seen.items()
             if v in self.loaded or (files and self._last_seen.get(v) == files and
                                     self._failed.get(v) != files)}
    self._last_seen = seen
    aspired = versions.aspired(self.config.model_version_policy, ready)
    for version in sorted(aspired - set(self.loaded), reverse=True):
      await self._load(version, seen[version])
    unwanted = set(self.loaded) - aspired
    if unwanted and (not aspired or aspired & set(self.loaded)):
      for version in sorted(unwanted):
        del self.loaded[version]  # requests that hold it finish first; then it is garbage
        self.states[version] = ('END', 'OK', '')
        print(f'Unloaded model {self.name} version {version}', flush=True)

  def _scan(self) -> Dict[int, Optional[versions.Snapshot]]:
    return {v: versions.snapshot(self._path(v)) for v in storage.version_numbers(self.base_path)}

  def _note_changed_files(self, seen: Dict[int, Optional[versions.Snapshot]]):
    """Logs, once per change, a loaded version whose files are not those it was loaded from:
    it keeps serving what it loaded into memory (versions.py)."""
    for version, model in self.loaded.items():
      if seen.get(version) != model.files:
        print(f'Model {self.name} version {version}: its files changed since it was loaded; '
              'still serving what it loaded into memory.', flush=True)
        model.files = seen.get(version)

  def _path(self, version: int) -> str:
    return serving_layout.version_dir(self.base_path, version)

  async def _load(self, version: int, files: versions.Snapshot):
    self.states[version] = ('LOADING', 'OK', '')
    try:
      model = await asyncio.get_running_loop().run_in_executor(
          None, versions.load, self._path(version), version, files)
    except Exception as e:  # pylint: disable=broad-except
      self._failed[version] = files
      error = _rest_error(e)
      self.states[version] = ('END', error.code, error.message)
      still = (f'still serving version {", ".join(map(str, sorted(self.loaded)))}'
               if self.loaded else 'no version')
      print(f'Version {version} failed to load ({error}); {still}.', flush=True)
      return
    self.loaded[version] = model
    self.states[version] = ('AVAILABLE', 'OK', '')
    print(f'Serving model {self.name} version {version} from {model.path}', flush=True)


class ServerCore:
  """The models of a ModelServerConfig and their version labels (TF Serving's ServerCore)."""

  def __init__(self, poll_seconds: float, allow_labels_for_unavailable: bool = False):
    self.poll_seconds = poll_seconds
    self.allow_labels_for_unavailable = allow_labels_for_unavailable
    self.models: Dict[str, ModelVersions] = {}
    self.labels: Dict[str, Dict[str, int]] = {}  # model -> label -> version
    self._pollers: Dict[str, asyncio.Task] = {}

  def reload(self, config: model_config.ModelServerConfig):
    """ReloadConfig: the labels are checked against what is loaded *before* the models
    change, and a config whose labels fail changes nothing (server_core.cc)."""
    if config.WhichOneof('config') != 'model_config_list':
      raise rest_json.RestError('FAILED_PRECONDITION',
                                'Only a model_config_list is served here')
    self.labels = self._label_map(config)
    wanted = {c.name: c for c in config.model_config_list.config}
    for name, model in list(self.models.items()):
      if name not in wanted or wanted[name].base_path != model.base_path:  # gone, or moved
        if name in self._pollers:
          self._pollers.pop(name).cancel()
        del self.models[name]
    for name, entry in wanted.items():
      if name in self.models:
        self.models[name].config = entry  # a new policy applies from the next poll
      else:
        self.models[name] = ModelVersions(entry, self.poll_seconds)

  def _label_map(self, config) -> Dict[str, Dict[str, int]]:
    labels = {}
    for entry in config.model_config_list.config:
      model = self.models.get(entry.name)
      for label, version in entry.version_labels.items():
        # The flag lets a new label (or one that stays put) point at a version still loading;
        # moving a label needs the new version loaded, so its traffic never hits a gap.
        existing = self.labels.get(entry.name, {}).get(label)
        allowed = self.allow_labels_for_unavailable and existing in (None, version)
        if not allowed and (model is None or version not in model.loaded):
          raise rest_json.RestError(
              'FAILED_PRECONDITION', f'Request to assign label to version {version} of model '
              f'{entry.name}, which is not currently available for inference')
        labels.setdefault(entry.name, {})[label] = version
    return labels

  async def poll_all(self):
    await asyncio.gather(*(model.poll() for model in self.models.values()))

  def start_polling(self):
    """Polls every model that is not polled yet (those a reload added, too)."""
    for name, model in self.models.items():
      if name not in self._pollers:
        self._pollers[name] = asyncio.create_task(model.poll_forever())

  def stop_polling(self):
    for poller in self._pollers.values():
      poller.cancel()

  def servable(self, name: str, version: Optional[str],
               label: Optional[str]) -> versions.LoadedModel:
    """The version a request asks for (the newest when none), as ServerCore finds it."""
    if label is not None:
      label = urllib.parse.unquote(label)
      if label not in self.labels.get(name, {}):
        raise rest_json.invalid(f'Unrecognized servable version label: {label}')
      version = str(self.labels[name][label])
    model = self.models.get(name)
    if version is None:
      if model is None or model.latest is None:
        raise rest_json.RestError('NOT_FOUND', f'Servable not found for request: Latest({name})')
      return model.latest
    number = _version(version)
    if model is None or number not in model.loaded:
      raise rest_json.RestError('NOT_FOUND',
                                f'Servable not found for request: Specific({name}, {number})')
    return model.loaded[number]


@dataclasses.dataclass(frozen=True)
class Limits:
  """What one client may take of the server (the flags of the same names set them)."""
  # Reading a request's body must end within this (TF Serving's --rest_api_timeout_in_ms).
  body_timeout: float = 30.0
  # A connection closes unless a request's headers are complete this long after it opened or
  # after its previous answer: the idle timeout is the header timeout too (aiohttp's
  # keep-alive timer, which no trickle of bytes extends).
  idle_timeout: float = 30.0
  # Open connections; at the limit a new one closes the longest-idle one (or itself).
  max_connections: int = 4096
  # Requests with a body under way at once (read, queued, decoded or predicted); past it, 503.
  max_pending: int = dataclasses.field(
      default_factory=lambda: batching.parameters()['max_enqueued_batches'])


class _Refusal(Exception):
  """A request refused before TF Serving's handler would see it: status and message."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


class _ClientGone(Exception):
  """The client closed its connection before its request had arrived."""


class _Admission:
  """Bounds the requests under way and the body bytes they hold: past either, a request
  gets TF Serving's answer for a full batch queue (503 UNAVAILABLE) before its body is read."""

  def __init__(self, max_pending: int, max_bytes: int):
    self._max_pending = max_pending
    self._max_bytes = max_bytes
    self._pending = 0
    self._bytes = 0

  @contextlib.contextmanager
  def admit(self, declared: Optional[int]):
    size = MAX_REQUEST_BYTES if declared is None else min(declared, MAX_REQUEST_BYTES)
    if self._pending >= self._max_pending or self._bytes + size > self._max_bytes:
      raise rest_json.RestError(
          'UNAVAILABLE', 'The batch scheduling queue to which this task was submitted is full')
    self._pending += 1
    self._bytes += size
    try:
      yield
    finally:
      self._pending -= 1
      self._bytes -= size


class RestApi:
  """TF Serving's REST handler (model_servers/http_rest_api_handler.cc). Bodies are read
  under the limits, then decoded (parsed, converted and checked) on worker threads: the
  event loop only moves bytes, so no request can stall the others."""

  def __init__(self, core: ServerCore, batcher: batching.Batcher,
               capture: Optional[capture_lib.Capture] = None, limits: Limits = Limits()):
    self._core = core
    self._batcher = batcher
    self._capture = capture  # None: nothing is captured
    self._limits = limits
    self._admission = _Admission(limits.max_pending, BUFFERED_BODY_BYTES)
    self._small = futures.ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix='decode')
    self._large = futures.ThreadPoolExecutor(1, thread_name_prefix='decode-large')

  def close(self):
    self._small.shutdown(wait=False, cancel_futures=True)
    self._large.shutdown(wait=False, cancel_futures=True)

  async def handle(self, request: web.BaseRequest) -> web.Response:
    """Every request and its answer pass here (one place to observe both)."""
    path = request.raw_path  # with its query: TF Serving's paths are matched with it
    connection = request.protocol
    connection.request_started()
    close = False
    try:
      body = await self._answer(request, path)
      status = 200
    except _ClientGone:
      return web.Response(status=499)  # nobody reads it; aiohttp drops the connection
    except _Refusal as e:
      status, body, close = e.status, rest_json.error_body(e.message), True
    except Exception as e:  # pylint: disable=broad-except
      error = _rest_error(e)
      if error.code == 'INTERNAL':
        logging.exception('Request %s %s failed', request.method, path)
      status, body = error.http_status, rest_json.error_body(error.message)
    finally:
      connection.request_finished()
    response = web.Response(body=body, status=status,
                            headers={'Content-Type': 'application/json'})
    if close:  # the body was not read to its end: this connection carries no more requests
      response.force_close()
    return response

  async def _answer(self, request: web.BaseRequest, path: str) -> bytes:
    if not _API_PATH.match(path):  # TF Serving's HTTP server routes only /v1/ to the API
      raise rest_json.RestError('NOT_FOUND', f'Not found: {request.method} {path}')
    if request.method == 'POST' and (match := _PREDICT_PATH.fullmatch(path)):
      name, version, label, method = match.groups()
      with self._admission.admit(request.content_length):
        body = await self._read_body(request, path)
        if method == 'predict':
          return await self._predict(name, version, label, body)
        if method in ('classify', 'regress'):  # compared as written, as TF Serving does
          return await self._off_loop(len(body), self._classify_or_regress, method, body,
                                      self._lookup(name, version, label))
    elif request.method == 'GET' and (match := _STATUS_PATH.fullmatch(path)):
      return self._metadata(match) if match.group(4) else self._status(match)
    raise rest_json.invalid(f'Malformed request: {request.method} {path}')

  async def _read_body(self, request: web.BaseRequest, path: str) -> bytes:
    """The whole body, decompressed, within body_timeout and MAX_REQUEST_BYTES."""
    declared = request.content_length
    if declared is not None and declared > MAX_REQUEST_BYTES:  # refused before it is read
      raise _Refusal(413, f'Maximum request body size {MAX_REQUEST_BYTES} exceeded.')
    chunks = []
    received = 0
    try:
      async with async_timeout.timeout(self._limits.body_timeout):  # asyncio.timeout in 3.11
        async for chunk in request.content.iter_any():  # a gzip body comes decompressed
          received += len(chunk)
          if received > MAX_REQUEST_BYTES:
            raise _Refusal(413, f'Maximum request body size {MAX_REQUEST_BYTES} exceeded.')
          chunks.append(chunk)
    except asyncio.TimeoutError:
      request.content.feed_eof()  # the rest is not waited for: the answer closes the connection
      raise _Refusal(408, f'Timed out after {self._limits.body_timeout:g} s reading the '
                     f'request body ({received} of {declared or "?"} bytes arrived)') from None
    except ConnectionError:
      logging.warning('Client %s disconnected after %d of %s body bytes of %s %s',
                      request.remote, received, declared or '?', request.method, path)
      raise _ClientGone() from None
    return b''.join(chunks)

  async def _off_loop(self, size: int, function, *args):
    """function(*args) where a body of `size` bytes is decoded (see INLINE_BODY_BYTES)."""
    if size <= INLINE_BODY_BYTES:
      return function(*args)
    executor = self._small if size <= SMALL_BODY_BYTES else self._large
    return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

  def _lookup(self, name: str, version: Optional[str], label: Optional[str]):
    """The servable a request names, or the error TF Serving reports once the body parsed."""
    try:
      return self._core.servable(urllib.parse.unquote(name), version, label)
    except rest_json.RestError as e:
      return e

  def _status(self, match: re.Match) -> bytes:
    # GetModelStatus looks at the version only: with a label it lists every version.
    name, version = match.group(1), match.group(2)
    if not name:
      raise rest_json.invalid('Missing model name in request.')
    name = urllib.parse.unquote(name)
    model = self._core.models.get(name)
    states = model.states if model else {}
    if version is not None:
      number = _version(version)
      if number not in states:
        raise rest_json.RestError('NOT_FOUND', f'Could not find version {number} of model {name}')
      return rest_json.status_body([(number, *states[number])])
    if not states:
      raise rest_json.RestError('NOT_FOUND', f'Could not find any versions of model {name}')
    return rest_json.status_body([(v, *states[v]) for v in sorted(states, reverse=True)])

  def _metadata(self, match: re.Match) -> bytes:
    name = urllib.parse.unquote(match.group(1) or '')
    if not name:
      raise rest_json.invalid('Missing model name in request.')
    model = self._core.servable(name, *match.group(2, 3))
    return rest_json.metadata_body(name, model.version, model.signature_defs)

  @staticmethod
  def _request(body: bytes, servable) -> Tuple[Dict, str, versions.LoadedModel]:
    """What a :predict, :classify or :regress call asks for, checked in TF Serving's order:
    its document, the signature it names and the servable (a model or its lookup error)."""
    doc = rest_json.parse(body)
    # TF Serving's default is TF's default key, whatever the model (ours is signatures.py's).
    signature = (rest_json.signature_name(doc) or
                 tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY)
    if isinstance(servable, rest_json.RestError):
      raise servable
    return doc, signature, servable

  def _decode(self, body: bytes, servable) -> Tuple[str, str, Dict[str, np.ndarray]]:
    """(signature, request format, input arrays) of a predict body; runs on a worker thread.
    The row count is checked before the conversion, whose cost grows with it."""
    doc, signature, model = self._request(body, servable)
    if signature not in model.inputs:
      raise rest_json.invalid(f'Serving signature name: "{signature}" not found in signature def')
    self._batcher.check_size(rest_json.batch_size(doc))
    request_format, inputs = rest_json.request_tensors(doc, model.inputs[signature])
    _check_values(request_format, inputs)
    return signature, request_format, inputs

  async def _predict(self, name: str, version: Optional[str], label: Optional[str],
                     body: bytes) -> bytes:
    model = self._lookup(name, version, label)
    signature, request_format, inputs = await self._off_loop(len(body), self._decode, body,
                                                             model)
    outputs = await self._batcher.run(model.signatures[signature], inputs)
    if self._capture is not None and signature == signatures.SERVING_SIGNATURE:
      self._capture.record(inputs, outputs[signatures.PREDICTION_KEY], model.version)
    return await self._off_loop(len(body), rest_json.predict_body, outputs, request_format)

  def _classify_or_regress(self, method: str, body: bytes, servable) -> bytes:
    """TF Serving's checks of the signature a :classify or :regress call names; a model
    whose signature passes them all is not served here (the adclick models have none)."""
    _, signature, model = self._request(body, servable)
    if signature not in model.signature_defs:
      raise rest_json.invalid(f'No signature was found with the name: {signature}')
    rest_json.check_signature_for(method, model.signature_defs[signature])
    raise rest_json.RestError('UNIMPLEMENTED', f'Only :predict is served here, not :{method}')


def _check_values(request_format: str, inputs: Dict[str, np.ndarray]) -> None:
  """Refuses values that features.py does not allow (models/rows.py's rule): NaN, Infinity,
  out of range, out of the domain. The earliest bad row is named, as TF Serving names one."""
  found = []
  for feature in features.serving_features():
    if feature.name in inputs and (feature.dtype in ('int', 'float') or feature.domain):
      bad = _first_refused(feature, inputs[feature.name])
      if bad is not None:
        found.append((bad[0], feature.name, bad[1]))
  if found:
    row, name, reason = min(found)
    where = (f"element: {row} key: {name} of 'instances' list" if request_format == rest_json.ROW
             else f"element: {row} of 'inputs' key: {name}")
    raise rest_json.invalid(f'Failed to process {where}. Error: INVALID_ARGUMENT: {reason}')


def _first_refused(feature: features.Feature, array: np.ndarray) -> Optional[Tuple[int, str]]:
  """(row, reason) of the first value of `array` (rows first) that the feature refuses.
  Numbers are compared in the tensor's precision (float32(0.01) is the minimum 0.01) and
  only a refused one is handed to rows.value_refusal, as the request wrote it."""
  table = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
  if table.dtype.kind in 'fiu':
    decimal = table.dtype.kind == 'f'
    low, high = np.array(feature.value_range or (-np.inf, np.inf),
                         table.dtype if decimal else np.float64).tolist()
    for row, values in enumerate(table.tolist()):
      for value in values:
        if not (math.isfinite(value) and low <= value <= high):
          reason = rows.value_refusal(
              feature, float(str(table.dtype.type(value))) if decimal else value)
          if reason:
            return row, reason
    return None
  for row, values in enumerate(table.tolist()):
    for value in values:
      reason = rows.value_refusal(
          feature, value.decode('utf-8', 'replace') if isinstance(value, bytes) else value)
      if reason:
        return row, reason
  return None


class _Connection(web_protocol.RequestHandler):
  """One client connection, as aiohttp runs it, with what eviction needs to know, and JSON
  for requests too malformed to reach the API."""

  def __init__(self, manager: '_HttpServer', **kwargs):
    super().__init__(manager, **kwargs)
    self.busy = False  # a request of this connection is being answered
    self.last_active = self._loop.time()

  def request_started(self):
    self.busy = True

  def request_finished(self):
    self.busy = False
    self.last_active = self._loop.time()

  def handle_error(self, request, status: int = 500, exc=None, message=None):
    """A request that is not HTTP enough to reach the API (bad request line or headers):
    aiohttp's status, with the error as JSON, as every other answer; logged in one line."""
    if status >= 500:  # a failure of this server, not of the request: with its traceback
      logging.error('Request from %s failed', request.remote, exc_info=exc)
    else:
      logging.info('Malformed HTTP request from %s: %s', request.remote, message or exc)
    reason = (message or str(exc) or '').strip().splitlines()
    text = http.HTTPStatus(status).phrase + (f': {reason[0].rstrip(":")}' if reason else '')
    response = web.Response(status=status, body=rest_json.error_body(text),
                            headers={'Content-Type': 'application/json'})
    response.force_close()
    return response


class _HttpServer(web.Server):
  """aiohttp's server with _Connection and a cap on connections: at the cap, a new one
  closes the connection idle the longest, or is closed itself when all are busy, so that
  idle clients can never hold every file descriptor (nor lock out the model polling)."""

  def __init__(self, handler, limits: Limits, **kwargs):
    super().__init__(handler, keepalive_timeout=limits.idle_timeout, access_log=None,
                     **kwargs)
    self._limits = limits

  def __call__(self) -> _Connection:
    return _Connection(self, loop=self._loop, **self._kwargs)

  def connection_made(self, handler: _Connection, transport: asyncio.Transport) -> None:
    super().connection_made(handler, transport)
    open_ = [c for c in self._connections if c.transport is not None]  # not closing already
    if len(open_) > self._limits.max_connections:
      idle = [c for c in open_ if not c.busy and c is not handler]
      (min(idle, key=lambda c: c.last_active) if idle else handler).force_close()


def max_connections(wanted: int) -> int:
  """`wanted`, or fewer where the file-descriptor limit would not leave room for the model
  files, the polling and the capture (64 descriptors)."""
  soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
  return wanted if soft == resource.RLIM_INFINITY else max(1, min(wanted, soft - 64))


def _version(text: str) -> int:
  if int(text) >= 2**63:
    raise rest_json.invalid(f'Failed to convert version: {text} to numeric.')
  return int(text)


def _read_config(args: argparse.Namespace) -> model_config.ModelServerConfig:
  if args.model_config_file:
    return model_config.read(args.model_config_file)
  return model_config.single_model(
      args.model_name, serving_layout.model_root(args.model_base_path, args.model_name))


async def _poll_config(core: ServerCore, path: str, seconds: float):
  """--model_config_file_poll_wait_seconds: re-reads the file and reloads it, as
  Server::PollFilesystemAndReloadConfig does (a failure is logged and tried next time)."""
  while True:
    await asyncio.sleep(seconds)
    try:
      config = model_config.read(path)
    except model_config.ConfigError as e:
      print(f'Failed to read ModelServerConfig file: {e}', flush=True)
      continue
    try:
      core.reload(config)
    except rest_json.RestError as e:
      print(f'PollFilesystemAndReloadConfig failed to ReloadConfig: {e.message}', flush=True)
      continue
    core.start_polling()


async def serve(args: argparse.Namespace, capture: Optional[capture_lib.Capture] = None):
  core = ServerCore(args.poll_seconds, args.allow_version_labels_for_unavailable_models)
  try:
    core.reload(_read_config(args))
  except (model_config.ConfigError, rest_json.RestError) as e:
    raise SystemExit(f'Cannot serve the model config: {e}') from None
  # Two polls, so that a version still being written is not taken for a complete one.
  await core.poll_all()
  await asyncio.sleep(args.poll_seconds)
  await core.poll_all()
  for model in core.models.values():
    if not model.loaded:
      print(f'No complete version under {model.base_path} yet; polling every '
            f'{args.poll_seconds:g} s.', flush=True)
  batcher = batching.Batcher(args.max_batch_size, args.num_batch_threads,
                            args.batch_timeout_micros / 1e6)
  limits = Limits(body_timeout=args.rest_api_timeout_in_ms / 1e3,
                  idle_timeout=args.idle_timeout_seconds,
                  max_connections=max_connections(args.max_connections),
                  max_pending=args.max_enqueued_batches)
  api = RestApi(core, batcher, capture, limits)
  runner = web.ServerRunner(_HttpServer(api.handle, limits))
  await runner.setup()
  sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  try:
    sock.bind((args.host, args.port))
  except OSError as e:
    raise SystemExit(f'Cannot listen on {args.host}:{args.port}: {e.strerror} (another '
                     'server running? pass --port)') from None
  await web.SockSite(runner, sock).start()
  host, port = sock.getsockname()[:2]
  print(f'Listening on http://{host}:{port} (TF Serving REST API; try '
        f'curl http://{host}:{port}/v1/models/{args.model_name})', flush=True)

  stop = asyncio.Event()
  for signum in (signal.SIGINT, signal.SIGTERM):
    asyncio.get_running_loop().add_signal_handler(signum, stop.set)
  core.start_polling()
  config_poller = (asyncio.create_task(_poll_config(core, args.model_config_file,
                                                    args.model_config_file_poll_wait_seconds))
                   if args.model_config_file and args.model_config_file_poll_wait_seconds > 0
                   else None)
  await stop.wait()
  core.stop_polling()
  if config_poller:
    config_poller.cancel()
  await runner.cleanup()
  api.close()
  batcher.close()
  if capture is not None:
    print(f'Capture: {capture.close()}', flush=True)  # writes every row it accepted
  print('Stopped.', flush=True)


def _add_batching_and_limit_flags(parser: argparse.ArgumentParser) -> None:
  # The batching flags are named after TF Serving's BatchingParameters; the row limit and
  # the queue bound are production's (deploy/batching-config.yaml, see batching.py).
  defaults = Limits()
  parser.add_argument('--max-batch-size', type=int,
                      default=batching.parameters()['max_batch_size'],
                      help='most rows of one request, and of concurrent requests run as one '
                      'model call (default: deploy/batching-config.yaml)')
  parser.add_argument('--max-enqueued-batches', type=int, default=defaults.max_pending,
                      help='most requests under way at once; more get 503 (default: '
                      'deploy/batching-config.yaml)')
  parser.add_argument('--num-batch-threads', type=int, default=os.cpu_count() or 1,
                      help='batches run side by side, each on one core (default: every core)')
  parser.add_argument('--batch-timeout-micros', type=int, default=500,
                      help='while a batch runs, how long a request waits for others to join it')
  # What one client may take; TF Serving's REST timeout is the reference for the body.
  parser.add_argument('--rest_api_timeout_in_ms', '--rest-api-timeout-in-ms', type=int,
                      default=int(defaults.body_timeout * 1e3),
                      help="a request's body must arrive within this, or 408")
  parser.add_argument('--idle-timeout-seconds', type=float, default=defaults.idle_timeout,
                      help="a connection is closed unless a request's headers are complete "
                      'this long after it opened or after its previous answer')
  parser.add_argument('--max-connections', type=int, default=defaults.max_connections,
                      help='open connections (fewer if the file-descriptor limit is lower); '
                      'at the limit a new one closes the one idle the longest')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--model-base-path', default='outputs/serving',
                      help='the serving root; the model is served from <this>/<model-name>')
  parser.add_argument('--model-name', default=serving_layout.MODEL_NAME)
  parser.add_argument('--host', default='127.0.0.1')
  parser.add_argument('--port', type=int, default=serving_layout.REST_PORT,
                      help='0 picks a free port')
  parser.add_argument('--poll-seconds', '--file_system_poll_wait_seconds', type=float,
                      default=1.0, help='how often model base paths are polled')
  # TF Serving's own flags for the model config file, spelled as it spells them.
  parser.add_argument('--model_config_file', '--model-config-file',
                      help='a text ModelServerConfig (serving/model_config.py); when given, '
                      '--model-base-path and --model-name are ignored, as TF Serving does')
  parser.add_argument('--model_config_file_poll_wait_seconds',
                      '--model-config-file-poll-wait-seconds', type=float, default=0,
                      help='re-read the model config file this often (0: never)')
  parser.add_argument('--allow_version_labels_for_unavailable_models',
                      '--allow-version-labels-for-unavailable-models',
                      type=lambda text: text.lower() in ('1', 'true', 'yes'), nargs='?',
                      const=True, default=False,
                      help='let a new label point at a version that has not loaded yet')
  _add_batching_and_limit_flags(parser)
  capture_lib.add_flags(parser)
  args = parser.parse_args(argv)
  capture = capture_lib.from_flags(parser, args)
  logging.basicConfig(level=logging.WARNING)
  # Quiets the v1 loader's deprecation notice: loading into a Session is how TF Serving loads.
  logging.getLogger('tensorflow').setLevel(logging.ERROR)
  try:
    asyncio.run(serve(args, capture))
  except KeyboardInterrupt:  # Ctrl-C while the first version was still loading
    if capture is not None:
      print(f'Capture: {capture.close()}', flush=True)
    print('Stopped.', flush=True)


if __name__ == '__main__':
  main()
