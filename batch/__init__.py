"""Batch scoring of a month of ads on Beam (score.py) and its Kubeflow schedule (kfp_batch.py)."""
import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
