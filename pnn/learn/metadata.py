"""What a trained model says about itself (``model/metadata.json``), readable without
TensorFlow: the features, the signal parameters and the trained points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

import numpy as np

from pnn.core.errors import PnnError
from pnn.learn.train import model_dir

T = TypeVar("T", bound="ModelInfo")


def read_metadata(path: Path) -> dict:
    """``metadata.json`` of a model directory, refusing one that is not JSON or lacks keys."""
    fix = "rerun 'pnn train'"
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PnnError(f"model metadata '{path}' is not readable JSON ({type(exc).__name__}): "
                       f"{fix}") from None
    if not isinstance(meta, dict):
        raise PnnError(f"model metadata '{path}' is not a JSON object: {fix}")
    missing = [k for k in ("folds", "features", "masses") if k not in meta]
    if missing:
        raise PnnError(f"model metadata '{path}' lacks the key '{missing[0]}': {fix}")
    folds_ = meta["folds"]
    if not isinstance(folds_, int) or isinstance(folds_, bool) or folds_ < 1:
        raise PnnError(f"model metadata '{path}': 'folds' is {folds_!r}, not a positive "
                       f"integer: {fix}")
    if not isinstance(meta["features"], list) or not all(isinstance(f, str) for f in meta["features"]):
        raise PnnError(f"model metadata '{path}': 'features' is not a list of names: {fix}")
    masses = meta["masses"]
    names = meta.get("parameters", ["mass"])  # metadata from before parameters: the mass
    width = len(names) if isinstance(names, list) else 0
    if not width:
        raise PnnError(f"model metadata '{path}': 'parameters' is not a list of names: {fix}")

    def finite(m: object) -> bool:
        return isinstance(m, int | float) and not isinstance(m, bool) and bool(np.isfinite(m))

    def point_ok(m: object) -> bool:
        if width == 1:
            return finite(m)
        return isinstance(m, list) and len(m) == width and all(finite(v) for v in m)

    if not isinstance(masses, list) or not all(point_ok(m) for m in masses):
        what = "finite numbers" if width == 1 else f"points of {width} finite numbers"
        raise PnnError(f"model metadata '{path}': 'masses' is not a list of {what}: {fix}")
    if not masses and meta.get("parametric", True):
        raise PnnError(f"model metadata '{path}' lists no trained mass, so the mass input "
                       f"cannot be scaled: {fix}")
    return meta



def read_model_metadata(mdir: Path) -> dict:
    """The checked ``metadata.json`` of the model directory ``mdir``."""
    path = Path(mdir) / "metadata.json"
    if not path.is_file():
        raise PnnError(f"no trained model in '{mdir}': run 'pnn train' first")
    return read_metadata(path)


class ModelInfo:
    """The metadata of a run's fold models: enough to check a request against the trained
    points and features before any network is loaded."""

    def __init__(self, metadata: dict, mdir: Path | None = None) -> None:
        self.metadata = metadata
        self.model_dir = Path(mdir) if mdir is not None else None
        self.k = int(metadata.get("folds", 0))

    @classmethod
    def load(cls: type[T], run_dir: Path) -> T:
        """The PNN of a run (``<run>/model``)."""
        return cls.load_dir(model_dir(run_dir))

    @classmethod
    def load_dir(cls: type[T], mdir: Path) -> T:
        """The metadata of the models in ``mdir``."""
        return cls(read_model_metadata(mdir), mdir)

    @property
    def features(self) -> list[str]:
        return list(self.metadata["features"])

    @property
    def parametric(self) -> bool:
        return bool(self.metadata.get("parametric", True))

    @property
    def parameters(self) -> list[str]:
        return list(self.metadata.get("parameters", ["mass"]))

    @property
    def trained_masses(self) -> list[float]:
        """The trained masses (one-parameter models)."""
        return [float(m) for m in self.metadata["masses"] if not isinstance(m, list)]

    @property
    def trained_points(self) -> list[tuple[float, ...]]:
        """Every trained point, as a tuple of parameter values."""
        return [tuple(float(v) for v in (m if isinstance(m, list) else [m]))
                for m in self.metadata["masses"]]
