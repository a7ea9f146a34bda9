"""A local model server that speaks TF Serving's REST API.

    python -m serving.model_server --model-base-path outputs/serving [--model-name adclick]

tensorflow_model_server cannot be installed on these machines; production runs the
tensorflow/serving image (deploy/). This server answers the same requests with the same bytes:
  GET  /v1/models/{name}[/versions/{N}]            status of each version
  GET  /v1/models/{name}[/versions/{N}]/metadata   signatures
  POST /v1/models/{name}[/versions/{N}]:predict    row ("instances") or columnar ("inputs")
and errors as {"error": "..."} with TF Serving's status codes and messages.

Like the tensorflow/serving image it serves `<model-base-path>/<model-name>/<version>/`
(models/serving_layout.py), the newest complete version (see versions.py), polling for new
ones. A new version takes over once it has loaded and answered a warmup request; requests
under way finish on the version they started on. A version that fails to load shows in
status as END with its error, and the previous version keeps serving. Concurrent predict calls
are batched (batching.py).
"""
import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import urllib.parse
from typing import Dict, Optional, Tuple

from aiohttp import web
import tensorflow as tf

from models import serving_layout
from serving import batching
from serving import rest_json
from serving import versions

# The paths TF Serving's REST handler accepts (model_servers/http_rest_api_util.cc).
_PREDICT_PATH = re.compile(
    r'/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)',
    re.IGNORECASE)
_STATUS_PATH = re.compile(
    r'/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?',
    re.IGNORECASE)
_MAX_REQUEST_BYTES = 64 << 20  # aiohttp's default is 1 MB, too little for a batch of creatives
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
  """The versions of one model: polls its base path and serves the newest complete one."""

  def __init__(self, base_path: str, name: str, poll_seconds: float):
    self.base_path = base_path
    self.name = name
    self.poll_seconds = poll_seconds
    self.serving: Optional[versions.LoadedModel] = None
    self.states: Dict[int, Tuple[str, str, str]] = {}  # version -> state, error code, message
    self._last_seen: Dict[int, Optional[versions.Snapshot]] = {}
    self._failed: Dict[int, versions.Snapshot] = {}  # retried once their files change

  async def poll_forever(self):
    while True:
      try:
        await self.poll()
      except Exception:  # pylint: disable=broad-except
        logging.exception('Polling %s failed; trying again', self.base_path)
      await asyncio.sleep(self.poll_seconds)

  async def poll(self):
    """Loads the newest version whose files are complete and unchanged since the last poll."""
    seen = await asyncio.get_running_loop().run_in_executor(None, self._scan)
    ready = [v for v, files in seen.items()
             if files and self._last_seen.get(v) == files and self._failed.get(v) != files]
    self._last_seen = seen
    if not ready:
      return
    newest = max(ready)
    current = self.serving.version if self.serving else None
    if newest == current or (current in seen and newest < current):
      return
    await self._load(newest, seen[newest])

  def _scan(self) -> Dict[int, Optional[versions.Snapshot]]:
    return {v: versions.snapshot(self._path(v)) for v in versions.list_versions(self.base_path)}

  def _path(self, version: int) -> str:
    return serving_layout.version_dir(self.base_path, version)

  async def _load(self, version: int, files: versions.Snapshot):
    self.states[version] = ('LOADING', 'OK', '')
    try:
      model = await asyncio.get_running_loop().run_in_executor(
          None, versions.load, self._path(version), version)
    except Exception as e:  # pylint: disable=broad-except
      self._failed[version] = files
      error = _rest_error(e)
      self.states[version] = ('END', error.code, error.message)
      still = f'still serving version {self.serving.version}' if self.serving else 'no version'
      print(f'Version {version} failed to load ({error}); {still}.', flush=True)
      return
    previous, self.serving = self.serving, model
    self.states[version] = ('AVAILABLE', 'OK', '')
    if previous:  # requests that hold it finish first; then it is garbage
      self.states[previous.version] = ('END', 'OK', '')
    print(f'Serving model {self.name} version {version} from {model.path}', flush=True)


class RestApi:
  """TF Serving's REST handler (model_servers/http_rest_api_handler.cc) for one model."""

  def __init__(self, models: ModelVersions, batcher: batching.Batcher):
    self._models = models
    self._batcher = batcher

  async def handle(self, request: web.Request) -> web.Response:
    path = request.raw_path.split('?', 1)[0]
    try:
      if request.method == 'POST' and (match := _PREDICT_PATH.fullmatch(path)):
        body = await self._predict(match, await request.read())
      elif request.method == 'GET' and (match := _STATUS_PATH.fullmatch(path)):
        body = self._metadata(match) if match.group(4) else self._status(match)
      else:
        raise rest_json.invalid(f'Malformed request: {request.method} {path}')
      status = 200
    except Exception as e:  # pylint: disable=broad-except
      error = _rest_error(e)
      if error.code == 'INTERNAL':
        logging.exception('Request %s %s failed', request.method, path)
      status, body = error.http_status, rest_json.error_body(error.message)
    return web.Response(body=body, status=status, headers={'Content-Type': 'application/json'})

  def _status(self, match: re.Match) -> bytes:
    name, version = match.group(1), match.group(2)  # TF Serving ignores a label here
    if not name:
      raise rest_json.invalid('Missing model name in request.')
    name = urllib.parse.unquote(name)
    states = self._models.states if name == self._models.name else {}
    if version is not None:
      number = _version(version)
      if number not in states:
        raise rest_json.RestError('NOT_FOUND', f'Could not find version {number} of model {name}')
      return rest_json.status_body([(number, *states[number])])
    if not states:
      raise rest_json.RestError('NOT_FOUND', f'Could not find any versions of model {name}')
    return rest_json.status_body([(v, *states[v]) for v in sorted(states, reverse=True)])

  def _metadata(self, match: re.Match) -> bytes:
    model = self._servable(*match.group(1, 2, 3))
    return rest_json.metadata_body(self._models.name, model.version, model.signature_defs)

  async def _predict(self, match: re.Match, body: bytes) -> bytes:
    name, version, label, method = match.groups()
    if method != 'predict':
      raise rest_json.RestError('UNIMPLEMENTED', f'Only :predict is served here, not :{method}')
    doc = rest_json.parse(body)
    # TF Serving's default is TF's default key, whatever the model (ours is signatures.py's).
    signature = (rest_json.signature_name(doc) or
                 tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY)
    model = self._servable(name, version, label)
    if signature not in model.inputs:
      raise rest_json.invalid(f'Serving signature name: "{signature}" not found in signature def')
    request_format, inputs = rest_json.request_tensors(doc, model.inputs[signature])
    outputs = await self._batcher.run(model.signatures[signature], inputs)
    return rest_json.predict_body(outputs, request_format)

  def _servable(self, name: str, version: Optional[str],
                label: Optional[str]) -> versions.LoadedModel:
    """The version a request asks for (the newest when none), as ServerCore finds it."""
    name = urllib.parse.unquote(name)
    if label is not None:
      raise rest_json.invalid(
          f'Unrecognized servable version label: {urllib.parse.unquote(label)}')
    model = self._models.serving if name == self._models.name else None
    if version is None:
      if model is None:
        raise rest_json.RestError('NOT_FOUND', f'Servable not found for request: Latest({name})')
      return model
    number = _version(version)
    if model is None or model.version != number:
      raise rest_json.RestError('NOT_FOUND',
                                f'Servable not found for request: Specific({name}, {number})')
    return model


def _version(text: str) -> int:
  if int(text) >= 2**63:
    raise rest_json.invalid(f'Failed to convert version: {text} to numeric.')
  return int(text)


async def serve(args: argparse.Namespace):
  models = ModelVersions(serving_layout.model_root(args.model_base_path, args.model_name),
                         args.model_name, args.poll_seconds)
  # Two polls, so that a version still being written is not taken for a complete one.
  await models.poll()
  await asyncio.sleep(args.poll_seconds)
  await models.poll()
  if not models.serving:
    print(f'No complete version under {models.base_path} yet; polling every '
          f'{args.poll_seconds:g} s.', flush=True)
  batcher = batching.Batcher(args.max_batch_size, args.num_batch_threads,
                            args.batch_timeout_micros / 1e6)
  app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
  app.router.add_route('*', '/v1/{tail:.*}', RestApi(models, batcher).handle)
  runner = web.AppRunner(app, access_log=None)
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
  poller = asyncio.create_task(models.poll_forever())
  await stop.wait()
  poller.cancel()
  await runner.cleanup()
  batcher.close()
  print('Stopped.', flush=True)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--model-base-path', default='outputs/serving',
                      help='the serving root; the model is served from <this>/<model-name>')
  parser.add_argument('--model-name', default=serving_layout.MODEL_NAME)
  parser.add_argument('--host', default='127.0.0.1')
  parser.add_argument('--port', type=int, default=serving_layout.REST_PORT,
                      help='0 picks a free port')
  parser.add_argument('--poll-seconds', type=float, default=1.0,
                      help="TF Serving's --file_system_poll_wait_seconds")
  # The batching flags are named after TF Serving's BatchingParameters.
  parser.add_argument('--max-batch-size', type=int, default=64,
                      help='most rows of concurrent requests run as one model call')
  parser.add_argument('--num-batch-threads', type=int, default=os.cpu_count() or 1,
                      help='batches run side by side, each on one core (default: every core)')
  parser.add_argument('--batch-timeout-micros', type=int, default=500,
                      help='while a batch runs, how long a request waits for others to join it')
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING)
  # Quiets the v1 loader's deprecation notice: loading into a Session is how TF Serving loads.
  logging.getLogger('tensorflow').setLevel(logging.ERROR)
  try:
    asyncio.run(serve(args))
  except KeyboardInterrupt:  # Ctrl-C while the first version was still loading
    print('Stopped.', flush=True)


if __name__ == '__main__':
  main()
