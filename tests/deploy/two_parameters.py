"""A tiny two-parameter search (m_X, m_Y) written as ROOT files, ingested and trained.

The trained points sit on a triangle, (500, 100), (1500, 100) and (1500, 1300) GeV, so a point
like (600, 1200) is inside the bounding box of the trained points but outside their convex
hull. The features follow the point: a network that uses its parameter inputs scores the same
events differently at different points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import write_config

NAMES = ["mX", "mY"]
TRIANGLE = [(500.0, 100.0), (1500.0, 100.0), (1500.0, 1300.0)]
FEATURES = ["x0", "x1", "x2"]
SIGNAL_EVENTS = 400
BACKGROUND_EVENTS = 2400


def tree_name(point: tuple[float, float]) -> str:
    return f"XtoYH_mX{point[0]:g}_mY{point[1]:g}"


def write_ntuples(folder: Path, seed: int = 11) -> tuple[Path, Path]:
    """``signal.root`` (one tree per trained point) and ``background.root`` (tree ``bkg``)."""
    import uproot

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    first = 1
    signal = folder / "signal.root"
    with uproot.recreate(signal) as f:
        for mx, my in TRIANGLE:
            n = SIGNAL_EVENTS
            f[tree_name((mx, my))] = {
                "x0": rng.normal(mx / 1000, 0.15, n), "x1": rng.normal(my / 1000, 0.15, n),
                "x2": rng.normal(1.0, 0.7, n), "weight": np.ones(n),
                "EventNumber": np.arange(first, first + n, dtype=np.int64)}
            first += n
    background = folder / "background.root"
    n = BACKGROUND_EVENTS
    with uproot.recreate(background) as f:
        f["bkg"] = {"x0": rng.uniform(0.2, 1.8, n), "x1": rng.uniform(0.0, 1.5, n),
                    "x2": rng.normal(0.0, 1.0, n), "weight": np.ones(n),
                    "EventNumber": np.arange(first, first + n, dtype=np.int64)}
    return signal, background


def config(folder: Path, conditioning: str, *, folds: int = 3, epochs: int = 3) -> dict:
    """A config of the two-parameter ntuples in ``folder/ntuples`` (run under ``folder``)."""
    data = folder / "ntuples"
    return {
        "name": f"xyh_{conditioning}",
        "output_dir": str(folder / "runs"),
        "seed": 5,
        "parameters": NAMES,
        "samples": {
            "signal": [{"name": tree_name(p), "files": str(data / "signal.root"),
                        "tree": tree_name(p), "parameters": dict(zip(NAMES, p, strict=True))}
                       for p in TRIANGLE],
            "background": [{"name": "bkg", "files": str(data / "background.root"),
                            "tree": "bkg"}],
        },
        "features": FEATURES,
        "preprocessing": {"folds": folds},
        "training": {"epochs": epochs, "batch_size": 128, "patience": epochs,
                     "layers": [16, 16], "conditioning": conditioning},
    }


def train_run(folder: Path, conditioning: str):
    """Write, ingest and train the two-parameter search; returns ``(config path, config)``."""
    from pnn.core.config import load_config
    from pnn.io import ingest
    from pnn.learn import train

    write_ntuples(folder / "ntuples")
    path = write_config(folder / "config.yaml", config(folder, conditioning))
    cfg = load_config(path)
    ingest.ingest(cfg)
    events, _ = ingest.load_events(cfg)
    train.train(cfg, events)
    return path, cfg
