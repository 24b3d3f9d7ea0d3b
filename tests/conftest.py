"""Shared fixtures: tiny toy ntuples written with uproot and a matching config."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from pnn.io import toy

SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata"


@pytest.fixture(scope="session")
def shared_testdata() -> Path:
    """The real ROOT files beside the project; under CI they must be there."""
    if not SHARED.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the shared test data is missing at {SHARED}")
        pytest.skip("shared ROOT test files not present (they live beside the project)")
    return SHARED


def toy_config(tmp: Path, *, masses=(500, 1000, 1500), offgrid=(750,), signal_events=3000,
               background_events=30000, epochs=4, **extra) -> dict:
    """A config dict for a small toy under ``tmp``."""
    data = tmp / "ntuples"
    signal = [
        {"name": f"X{m}", "files": str(data / "signal.root"), "tree": toy.signal_tree_name(m),
         "mass": m, "train": m not in offgrid}
        for m in sorted((*masses, *offgrid))
    ]
    cfg = {
        "name": "small",
        "output_dir": str(tmp / "runs"),
        "seed": 7,
        "generate": {"output": str(data), "masses": list(masses), "offgrid_masses": list(offgrid),
                     "signal_events": signal_events, "background_events": background_events},
        "samples": {
            "signal": signal,
            "background": [{"name": p.name, "files": str(data / "background.root"),
                            "tree": p.name} for p in toy.BACKGROUNDS],
        },
        "features": ["FourBodyMass", "Jet0CorrTLV", "sT", "sTNoMet", "Btag"],
        "training": {"epochs": epochs, "batch_size": 256, "patience": 3},
    }
    cfg.update(extra)
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def small_toy(tmp_path: Path) -> Path:
    """Config path of a small generated toy (ntuples written, nothing else run)."""
    cfg = toy_config(tmp_path)
    g = cfg["generate"]
    toy.write(g["output"], g["masses"] + g["offgrid_masses"], g["signal_events"],
              g["background_events"], 140.0, cfg["seed"])
    return write_config(tmp_path / "config.yaml", cfg)


@pytest.fixture
def toy_events(small_toy):
    """``(config, events table)`` of the small toy, ingested."""
    from pnn.core.config import load_config
    from pnn.io import ingest

    cfg = load_config(small_toy)
    ingest.ingest(cfg)
    events, _ = ingest.load_events(cfg)
    return cfg, events


def echo_models(features: list[str], column: int):
    """Two fold models whose score is one scaled input (-1: the mass, as every event gets it).

    Planted networks with a known answer: echoing the mass shows which mass each event is
    given; echoing a feature gives a network that ignores the mass.
    """
    import keras

    from pnn.learn.model import FoldModels
    from pnn.learn.preprocess import InputScaler

    n = len(features) + 1
    models = []
    for _ in range(2):
        inp = keras.Input(shape=(n,))
        out = keras.layers.Dense(1, activation="linear")(inp)
        model = keras.Model(inp, out)
        kernel = np.zeros((n, 1), np.float32)
        kernel[column, 0] = 1.0
        model.layers[-1].set_weights([kernel, np.zeros(1, np.float32)])
        models.append(model)
    scaler = InputScaler(features, np.zeros(len(features)), np.ones(len(features)), 500.0, 1500.0)
    return FoldModels(models, [scaler, scaler], {"features": features, "masses": [500, 1000, 1500]})


def plant_model(cfg, events_id: str) -> dict:
    """Planted fold records of ``cfg``'s model (no networks) trained on ``events_id``, so
    report-level tests pass the provenance checks. Returns the ``inputs`` that metrics of this
    model record."""
    import json

    from pnn.core import provenance

    folds = [{"fold": f, "files": {}, provenance.KEY: provenance.record(
        cfg, "train", {"events": events_id})} for f in range(cfg.preprocessing.folds)]
    (cfg.run_dir / "model").mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "model" / "metadata.json").write_text(json.dumps({"fold_results": folds}))
    return {"model": provenance.combine([f[provenance.KEY]["id"] for f in folds]),
            "events": events_id}


def plant_run(cfg) -> dict:
    """Planted events table and model records of ``cfg``'s run, made from ``cfg`` (no real
    events or networks). Returns the provenance record a metrics.json of this model carries."""
    import json

    from pnn.core import provenance

    run = cfg.run_dir
    run.mkdir(parents=True, exist_ok=True)
    (run / "events.parquet").write_bytes(b"")
    events = provenance.record(cfg, "ingest")
    (run / "events.json").write_text(json.dumps({"events": 0, provenance.KEY: events}))
    return provenance.record(cfg, "evaluate", plant_model(cfg, events["id"]))
