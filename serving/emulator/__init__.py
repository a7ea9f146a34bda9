"""A stand-in for `tensorflow_model_server`, for local runs (`make serve`) and tests.

Production runs the tensorflow/serving image (deploy/); its binary cannot be installed on these
machines, so this package answers its REST API instead, with the same requests, bytes, status
codes and error messages, so that the client, the canary labels, rollback and capture are
tested against the behaviour they meet in production. Nothing in serving/ outside this package
imports it; it imports production's model config file (serving/model_config.py) and capture.

model_server.py   the server: python -m serving.emulator.model_server (TF Serving's flags where
                  it has them)
rest_json.py      TF Serving's REST JSON: request bodies to arrays, answers to bytes
versions.py       versions under a base path: which may load, which a version policy serves,
                  and loading one
batching.py       concurrent predict calls as batched model calls (deploy/'s parameters)
server_process.py the server as a child process until it listens (tests, benchmarks)
http_stub.py      a stand-in for any remote JSON API from a thread (tests, benchmarks)

What it does not do: the gRPC API (port 8500), SSL, the Prometheus monitoring endpoint,
platforms other than TensorFlow SavedModels, and warmup from assets.extra/ (it warms a
version up with one request built from models/features.py). Its figures (latency,
throughput, memory) are its own, not the tensorflow/serving image's.
"""
