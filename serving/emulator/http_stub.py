"""A stand-in for a remote JSON API, served on 127.0.0.1 from a thread (benchmark, tests).

    class Api(http_stub.JsonHandler):
      def do_GET(self):
        self.reply({'ok': True})

    with http_stub.serving(Api) as (url, server):
      ...  # requests to url; server.shutdown() follows on leaving
"""
import contextlib
import http.server
import json
import threading
from typing import Any, Iterator, Tuple, Type


class JsonHandler(http.server.BaseHTTPRequestHandler):
  """A request handler that answers with reply() and logs nothing (the caller's output is
  its own)."""

  def log_message(self, *args):  # pylint: disable=arguments-differ
    pass

  def reply(self, body: Any, status: int = 200) -> None:
    data = json.dumps(body).encode()
    self.send_response(status)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    self.wfile.write(data)


@contextlib.contextmanager
def serving(handler: Type[http.server.BaseHTTPRequestHandler]
            ) -> Iterator[Tuple[str, http.server.ThreadingHTTPServer]]:
  """(its URL, the server) while `handler` answers on a free port of 127.0.0.1."""
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  # A short poll, so that shutdown() returns at once rather than after the default 0.5 s.
  threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
  try:
    yield f'http://127.0.0.1:{server.server_address[1]}', server
  finally:
    server.shutdown()
    server.server_close()
