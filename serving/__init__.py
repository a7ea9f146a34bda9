"""Serving pushed adclick models over TF Serving's REST API.

model_server.py   local server speaking the REST API (the real one cannot be installed here),
                  built from rest_json.py (the wire format), versions.py (finding, checking and
                  loading versions) and batching.py (concurrent calls as batched model
                  calls, two side by side)
client.py         the internal API's client: validates an ad, calls :predict, explains errors
predict.py        the CLI around the client (one ad, or a CSV of ads)
server_process.py runs a server as a child process (tests, benchmark)

The model name, ports and version layout are models/serving_layout.py's; pushes are made by
components/safe_pusher.py.
"""
