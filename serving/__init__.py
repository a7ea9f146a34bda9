"""Serving pushed adclick models over TF Serving's REST API.

client.py         the internal API's client: validates an ad, calls :predict (newest version,
                  a version, a label, or a canary share), explains errors
predict.py        the CLI around the client (one ad, or a CSV of ads)
model_config.py   TF Serving's model config file (version policies, version labels)
labels.py         the canary flow: set, promote, remove labels in the model config file
rollback.py       rollback in one command: newer versions moved aside, with an audit record
capture.py        a sample of predictions with their inputs, for monitoring (client or server)
emulator/         a stand-in for tensorflow_model_server (make serve, tests); not production

The model name, ports and version layout are models/serving_layout.py's; pushes are made by
components/safe_pusher.py.
"""
import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
