"""Side-by-side throughput of pnn against the bare libraries, in one process on the same data.

* one training epoch of pnn (background masses redrawn, shuffled, weighted fit) against a
  bare ``model.fit`` of the same Keras model on the same in-memory arrays;
* ``pnn ingest`` (events per second) against a bare ``uproot.concatenate`` of the same
  branches;
* ``pnn ingest`` of jagged-reduced features (``Jet_pt[0]``, ``sum(Jet_pt)``, ...) against bare
  uproot + awkward doing the same reductions, once reading only and once also writing the
  same Parquet table;
* ``pnn apply`` (friend trees for every trained mass) against a bare loop: uproot read ->
  scale -> ``model.predict`` -> uproot write, over the same file, model and masses.

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

import awkward as ak
import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import uproot
import yaml

from pnn.core.config import load_config
from pnn.deploy import apply as pnn_apply
from pnn.io import ingest, toy
from pnn.learn import model as pnn_model
from pnn.learn import train as pnn_train
from pnn.learn.preprocess import InputScaler, PointPrior


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
            uproot.concatenate(dict(s.resolved_files()), branches, library="np")

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
    prior = PointPrior.from_signal(train.mass[sig], train.w[sig])
    scaler = InputScaler.fit(cfg.features, train.X, prior.points)
    x = scaler.transform(train.X, np.where(sig[:, None], train.mass, prior.points[0]))
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
    x_bare[bkg, -1:] = scaler.scale_points(prior.draw(rng, len(bkg)))
    pnn_times, bare_times = [], []
    for epoch in range(repeat):
        pnn_times.append(_time(lambda e=epoch: pnn_train.run_epoch(
            pnn_net, x, train.y, train.w, bkg, prior, scaler, rng, t.batch_size, e)))
        bare_times.append(_time(lambda: bare_net.fit(
            x_bare, train.y, sample_weight=train.w, batch_size=t.batch_size, epochs=1,
            shuffle=True, verbose=0)))
    p, b = statistics.median(pnn_times), statistics.median(bare_times)
    return {"events": len(train), "pnn_s": p, "bare_s": b, "ratio": b / p}


JAGGED = {"lead_jet_pt": "Jet_pt[0]", "sublead_jet_pt": "Jet_pt[1]", "jet_ht": "sum(Jet_pt)",
          "n_btag": "sum(Jet_btag > 0.5)", "n_jets": "count(Jet_pt)"}


def bench_jagged_ingest(cfg, repeat: int) -> dict:
    """pnn ingest of jagged reductions against bare uproot + awkward doing the same."""
    jcfg = cfg.model_copy(update={"name": "bench_jagged", "aliases": JAGGED,
                                  "features": ["FourBodyMass", "sT", *JAGGED]})
    samples = [*cfg.samples.signal, *cfg.samples.background]
    branches = ["FourBodyMass", "sT", "Jet_pt", "Jet_btag", "weight", "EventNumber"]

    def bare(write: bool, out: Path):
        writer = None
        for s in samples:
            for f, tree in s.resolved_files():
                for a in uproot.iterate({f: tree}, branches, step_size="16 MB", library="ak"):
                    pt = a["Jet_pt"]
                    padded = ak.pad_none(pt, 2, axis=1)
                    cols = {
                        "FourBodyMass": ak.to_numpy(a["FourBodyMass"]),
                        "sT": ak.to_numpy(a["sT"]),
                        "lead_jet_pt": ak.to_numpy(ak.fill_none(padded[:, 0], 0.0)),
                        "sublead_jet_pt": ak.to_numpy(ak.fill_none(padded[:, 1], 0.0)),
                        "jet_ht": ak.to_numpy(ak.sum(pt, axis=1)),
                        "n_btag": ak.to_numpy(ak.sum(a["Jet_btag"] > 0.5, axis=1)),
                        "n_jets": ak.to_numpy(ak.num(pt, axis=1)),
                        "weight": ak.to_numpy(a["weight"]),
                        "event_number": ak.to_numpy(a["EventNumber"]).astype(np.int64),
                    }
                    if write:
                        table = pa.table(cols)
                        if writer is None:
                            writer = pq.ParquetWriter(out, table.schema, compression="lz4",
                                                      use_dictionary=False, write_statistics=False)
                        writer.write_table(table)
        if writer is not None:
            writer.close()

    out = cfg.run_dir / "bare.parquet"
    pnn_times, read_times, write_times, n = [], [], [], 0
    for _ in range(repeat):
        read_times.append(_time(lambda: bare(False, out)))
        write_times.append(_time(lambda: bare(True, out)))
        start = time.perf_counter()
        n = ingest.ingest(jcfg).events
        pnn_times.append(time.perf_counter() - start)
    p = statistics.median(pnn_times)
    r, w = statistics.median(read_times), statistics.median(write_times)
    return {"events": n, "pnn_events_per_s": n / p, "bare_read_events_per_s": n / r,
            "bare_write_events_per_s": n / w, "ratio_read": r / p, "ratio_write": w / p}


def bench_apply(cfg, repeat: int) -> dict:
    """pnn apply against a bare read -> predict -> write loop over the same background file."""
    models = pnn_model.FoldModels.load(cfg.run_dir)
    masses = models.trained_masses
    features = models.features
    path = str(Path(cfg.samples.background[0].resolved_files()[0][0]))
    trees = [s.tree for s in cfg.samples.background]
    out_dir = cfg.run_dir / "bench_apply"
    bare_out = cfg.run_dir / "bare_friend.root"
    mdir = pnn_train.model_dir(cfg.run_dir)

    def bare():
        nets = [keras.saving.load_model(mdir / f"fold{i}.keras", compile=False)
                for i in range(models.k)]
        with uproot.recreate(bare_out) as fout:
            for tree in trees:
                t = None
                for a in uproot.iterate({path: tree}, [*features, "EventNumber"],
                                        step_size=pnn_apply.CHUNK_ENTRIES, library="np"):
                    X = np.column_stack([a[f] for f in features])
                    fold = a["EventNumber"].astype(np.int64) % models.k
                    cols = {"EventNumber": a["EventNumber"]}
                    for m in masses:
                        score = np.empty(len(X), dtype=np.float32)
                        for i, net in enumerate(nets):
                            sel = fold == i
                            x = models.scalers[i].transform(X[sel], m)
                            score[sel] = net.predict(x, batch_size=pnn_model.PREDICT_BATCH,
                                                     verbose=0).ravel()
                        cols[f"pnn_score_m{m:g}"] = score
                    if t is None:
                        t = fout.mktree(tree, {k: v.dtype for k, v in cols.items()})
                    t.extend(cols)

    n = sum(uproot.open(path)[t].num_entries for t in trees)
    pnn_times, bare_times = [], []
    for _ in range(repeat):
        bare_times.append(_time(bare))
        pnn_times.append(_time(lambda: pnn_apply.apply(cfg, [path], None, out_dir, True)))
    p, b = statistics.median(pnn_times), statistics.median(bare_times)
    return {"events": n, "masses": len(masses), "pnn_events_per_s": n / p,
            "bare_events_per_s": n / b, "ratio": b / p}


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
        toy.write(g.output, g.masses, g.signal_events, g.background_events, g.luminosity, cfg.seed,
                  objects=True)
        ing = bench_ingest(cfg, args.repeat)
        print(f"ingest  : {ing['events']} events, pnn {ing['pnn_events_per_s']:,.0f} ev/s, "
              f"bare uproot.concatenate {ing['bare_events_per_s']:,.0f} ev/s, "
              f"ratio {ing['ratio']:.2f}")
        ep = bench_epoch(cfg, args.repeat)
        print(f"epoch   : {ep['events']} events, pnn {ep['pnn_s']:.2f} s, bare model.fit "
              f"{ep['bare_s']:.2f} s, ratio {ep['ratio']:.2f}")
        jag = bench_jagged_ingest(cfg, args.repeat)
        print(f"jagged  : {jag['events']} events, pnn {jag['pnn_events_per_s']:,.0f} ev/s, "
              f"bare uproot+awkward read+reduce {jag['bare_read_events_per_s']:,.0f} ev/s "
              f"(ratio {jag['ratio_read']:.2f}), read+reduce+write Parquet "
              f"{jag['bare_write_events_per_s']:,.0f} ev/s (ratio {jag['ratio_write']:.2f})")
        events, _ = ingest.load_events(cfg)
        pnn_train.train(cfg.model_copy(update={"training": cfg.training.model_copy(
            update={"epochs": 1})}), events)
        ap = bench_apply(cfg, args.repeat)
        print(f"apply   : {ap['events']} events x {ap['masses']} masses, pnn "
              f"{ap['pnn_events_per_s']:,.0f} ev/s, bare read->predict->write "
              f"{ap['bare_events_per_s']:,.0f} ev/s, ratio {ap['ratio']:.2f}")


if __name__ == "__main__":
    main()
