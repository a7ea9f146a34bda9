"""Batch scoring of a month of ads on Beam (score.py) and its Kubeflow schedule (kfp_batch.py)."""
import os

# The pipeline's models need Keras 2 (tf-keras); must be set before TensorFlow is first imported.
os.environ.setdefault('TF_USE_LEGACY_KERAS', '1')
