"""pipeline package."""
import os

# TFX 1.16 needs Keras 2 (tf-keras); must be set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
