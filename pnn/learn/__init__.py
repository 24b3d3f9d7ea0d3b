"""Preprocessing, the Keras model and the training of the fold models."""

from pnn.core import inputs

# Every module here may import TensorFlow: the XRootD client, when installed, loads first.
inputs.load_before_tensorflow()
