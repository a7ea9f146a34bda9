"""Watches the served model: skew and drift of captured traffic, prediction drift, decay on
a new labelled month, one history of checks and pipeline runs, and its HTML report."""
import models  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
