"""Serving pushed adclick models over TF Serving's REST API.

model_server.py   local server speaking the REST API (the real one cannot be installed here),
                  built from rest_json.py (the wire format), versions.py (finding, checking and
                  loading versions) and batching.py (concurrent calls as batched model
                  calls, two side by side)
client.py         the internal API's client: validates an ad, calls :predict (newest version,
                  a version, a label, or a canary share), explains errors
predict.py        the CLI around the client (one ad, or a CSV of ads)
server_process.py runs a server as a child process (tests, benchmark)
model_config.py   TF Serving's model config file (version policies, version labels)
labels.py         the canary flow: set, promote, remove labels in the model config file
rollback.py       rollback in one command: newer versions moved aside, with an audit record

The model name, ports and version layout are models/serving_layout.py's; pushes are made by
components/safe_pusher.py.
"""
