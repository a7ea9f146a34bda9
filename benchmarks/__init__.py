"""Benchmarks of the pipeline, serving and batch scoring (make bench; figures in docs/)."""
import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
