"""Preprocessing, the Keras model and the training of the fold models."""
