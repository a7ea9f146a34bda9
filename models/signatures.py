"""The exported SavedModel's interface: its signature names and its output.

Defined once, apart from trainer.py, so that the serving client and the benchmarks can name
them without importing TFX (~15 s).
  serving_default     raw JSON-friendly features (strings, numbers, image bytes) -> probability;
                      what the TF Serving REST API and the internal client call.
  serving_examples    serialized tf.Example -> probability; what TFMA (Evaluator) calls.
  transform_features  serialized tf.Example -> transformed features (TFMA preprocessing).
"""
PREDICTION_KEY = 'click_probability'
SERVING_SIGNATURE = 'serving_default'
EXAMPLES_SIGNATURE = 'serving_examples'
TRANSFORM_SIGNATURE = 'transform_features'
