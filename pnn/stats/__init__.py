"""Metrics, per-mass evaluation, sanity checks and the summary report."""
