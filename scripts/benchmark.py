"""Side-by-side throughput of pnn against the bare libraries, in one process on the same data.

* one training epoch of pnn (background masses redrawn, shuffled, weighted fit) against a
  bare ``model.fit`` of the same Keras model on the same in-memory arrays;
* ``pnn ingest`` (events per second) against a bare ``uproot.concatenate`` of the same
  branches.

Each comparison alternates the two contenders ``--repeat`` times and compares medians, so
machine load affects both alike. A ratio of 1 means pnn is as fast as the bare library.

    python scripts/benchmark.py [--events-per-mass 40000] [--background 400000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import uproot
import yaml

from pnn import ingest, toy
from pnn import model as pnn_model
from pnn import train as pnn_train
from pnn.config import load_config
from pnn.preprocess import InputScaler, MassPrior


def _config(tmp: Path, masses: list[float], events: int, background: int) -> Path:
    data = tmp / "ntuples"
    raw = {
        "name": "bench", "output_dir": str(tmp / "runs"), "seed": 1,
        "generate": {"output": str(data), "masses": masses, "offgrid_masses": [],
                     "signal_events": events, "background_events": background},
        "samples": {
            "signal": [{"name": f"X{m:g}", "files": str(data / "signal.root"),
                        "tree": toy.signal_tree_name(m), "mass": m} for m in masses],
            "background": [{"name": p.name, "files": str(data / "background.root"),
                            "tree": p.name} for p in toy.BACKGROUNDS],
        },
        "features": ["FourBodyMass", "Jet0CorrTLV", "sT", "sTNoMet", "Btag"],
    }
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _time(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def bench_ingest(cfg, repeat: int) -> dict:
    samples = [*cfg.samples.signal, *cfg.samples.background]
    branches = sorted({*cfg.features, *toy.BRANCHES, "weight", "EventNumber"})

    def bare():
        for s in samples:
            uproot.concatenate({f: s.tree for f in s.resolved_files()}, branches, library="np")

    pnn_times, bare_times, n = [], [], 0
    for _ in range(repeat):
        bare_times.append(_time(bare))
        start = time.perf_counter()
        n = ingest.ingest(cfg).events
        pnn_times.append(time.perf_counter() - start)
    p, b = statistics.median(pnn_times), statistics.median(bare_times)
    return {"events": n, "pnn_events_per_s": n / p, "bare_events_per_s": n / b, "ratio": b / p}


def bench_epoch(cfg, repeat: int) -> dict:
    events, _ = ingest.load_events(cfg)
    events = pnn_train.training_events(cfg, events)
    train, _ = pnn_train.split_fold(cfg, events, 0)
    sig = train.y == 1
    prior = MassPrior.from_signal(train.mass[sig], train.w[sig])
    scaler = InputScaler.fit(cfg.features, train.X, prior.masses)
    x = scaler.transform(train.X, np.where(sig, train.mass, prior.masses[0]))
    bkg = np.flatnonzero(~sig)
    rng = np.random.default_rng(0)
    t = cfg.training

    def fresh():
        net = pnn_model.build_model(x.shape[1], t.layers, t.activation, seed=1)
        pnn_model.compile_model(net, t)
        net.fit(x[:t.batch_size], train.y[:t.batch_size], verbose=0)  # build the train step
        return net

    pnn_net, bare_net = fresh(), fresh()
    x_bare = x.copy()
    x_bare[bkg, -1] = scaler.scale_mass(prior.draw(rng, len(bkg)))
    pnn_times, bare_times = [], []
    for epoch in range(repeat):
        pnn_times.append(_time(lambda e=epoch: pnn_train.run_epoch(
            pnn_net, x, train.y, train.w, bkg, prior, scaler, rng, t.batch_size, e)))
        bare_times.append(_time(lambda: bare_net.fit(
            x_bare, train.y, sample_weight=train.w, batch_size=t.batch_size, epochs=1,
            shuffle=True, verbose=0)))
    p, b = statistics.median(pnn_times), statistics.median(bare_times)
    return {"events": len(train), "pnn_s": p, "bare_s": b, "ratio": b / p}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events-per-mass", type=int, default=40_000)
    parser.add_argument("--background", type=int, default=400_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        masses = [500.0, 750.0, 1000.0, 1250.0, 1500.0]
        cfg = load_config(_config(Path(tmp), masses, args.events_per_mass, args.background))
        g = cfg.generate
        toy.write(g.output, g.masses, g.signal_events, g.background_events, g.luminosity, cfg.seed)
        ing = bench_ingest(cfg, args.repeat)
        print(f"ingest  : {ing['events']} events, pnn {ing['pnn_events_per_s']:,.0f} ev/s, "
              f"bare uproot.concatenate {ing['bare_events_per_s']:,.0f} ev/s, "
              f"ratio {ing['ratio']:.2f}")
        ep = bench_epoch(cfg, args.repeat)
        print(f"epoch   : {ep['events']} events, pnn {ep['pnn_s']:.2f} s, bare model.fit "
              f"{ep['bare_s']:.2f} s, ratio {ep['ratio']:.2f}")


if __name__ == "__main__":
    main()
