"""models package: the feature registry, the model, its training and its interface.

TF_USE_LEGACY_KERAS is set here and nowhere else in the code. TFX 1.16 (Transform, TFMA, the
Trainer) needs Keras 2 (tf-keras), and TensorFlow picks its Keras when it is first imported,
so the variable must be set before that in every process. This is the lowest package: every
entry point imports it first. The runners and tests/conftest.py import it (through
`pipeline`, or directly) before anything that loads TensorFlow; every package with
`python -m` entry points (batch, benchmarks, monitoring, pipeline, serving) imports it in its
__init__.py, which Python runs before the entry module's own imports. The pipeline image sets
it too (Dockerfile ENV): there TFX's executor entrypoint and Beam's workers import TensorFlow
before any of this code. tests/test_legacy_keras.py fails on a second copy, or on an entry
point that imports TensorFlow before this runs.
"""
import os

os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
