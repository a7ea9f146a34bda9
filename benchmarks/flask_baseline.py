"""The serving pattern tutorials show, for comparison: a Flask app calling the model per request.

    python -m benchmarks.flask_baseline MODEL_DIR

Flask's own threaded development server (what app.run() starts, request log included) on a
free port of 127.0.0.1; the model loaded with tf.saved_model.load and its serving signature
called once per request. It takes TF Serving's row format and parses it with the model server's
code, so what differs is how the model is served: here one TF2 signature call and one thread
per request; there, batched calls into the SavedModel's graph loaded in a Session (as TF Serving
loads it) from an event loop.
"""
import sys

import flask
import tensorflow as tf
from werkzeug import serving as werkzeug_serving

from models import signatures
from serving.emulator import rest_json
from serving.emulator import versions

app = flask.Flask(__name__)
_model = {}


@app.post('/v1/models/<name>:predict')
def predict(name):
  del name  # one model
  _, arrays = rest_json.request_tensors(flask.request.get_json(), _model['inputs'])
  outputs = _model['serve'](**{k: tf.constant(v) for k, v in arrays.items()})
  return flask.jsonify({'predictions': next(iter(outputs.values())).numpy().tolist()})


def main():
  serve = tf.saved_model.load(sys.argv[1]).signatures[signatures.SERVING_SIGNATURE]
  _model['serve'] = serve
  _model['inputs'] = {k: versions.dtype_name(spec.dtype)
                      for k, spec in serve.structured_input_signature[1].items()}
  server = werkzeug_serving.make_server('127.0.0.1', 0, app, threaded=True)
  print(f'Listening on http://127.0.0.1:{server.server_port}', flush=True)
  server.serve_forever()


if __name__ == '__main__':
  main()
