"""pnn: parametrised neural networks for resonance searches, from ROOT ntuples to per-mass
sensitivity. Stages: toy -> ingest -> preprocess -> model/train -> evaluate -> report."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pnn")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
