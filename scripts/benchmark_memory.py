"""Peak memory and time of ``pnn ingest`` and ``pnn evaluate`` on large inputs.

``ingest``: writes an ntuple with ``--events`` events (flat branches and a jagged jet
collection, in chunks, so writing it stays small too), then runs ``pnn ingest`` with
jagged-reduced features in a child process and reports that child's peak resident set size.
Target: under 2 GB for 5 million events.

``evaluate``: generates the embedded toy (the demo's masses; ``--scale 1`` is the demo's size,
about 760k events, ``--scale 13`` about 10 million), ingests it and trains a tiny network for
one epoch (only evaluation is measured), then runs ``pnn evaluate`` (every mass, bootstrap
uncertainties included) in a child process. Target: under 3 GB for 10 million events, time
linear in events. Every stage runs in its own child process; each one's peak RSS comes from
``os.wait4``, so a stage is never charged for another.

    python scripts/benchmark_memory.py ingest [--events 5000000]
    python scripts/benchmark_memory.py evaluate [--scale 1] [--scratch DIR] [--masses 500 1500]

With ``--scratch`` the toy, events table and model stay there, and a later run of the same
size reuses them (delete the folder when done).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np
import uproot
import yaml

CHUNK = 500_000
DEMO_MASSES = [500, 750, 1000, 1250, 1500]
DEMO_OFFGRID = [625, 875, 1125, 1375]
DEMO_SIGNAL, DEMO_BACKGROUND = 40_000, 400_000  # per mass, in all (configs/demo.yaml)


def write_file(path: Path, events: int, seed: int = 1) -> None:
    """Signal (a fifth) and background trees with flat and jagged branches, written in chunks."""
    rng = np.random.default_rng(seed)
    with uproot.recreate(path) as f:
        for tree, n, scale in (("signal", events // 5, 80.0), ("background", events - events // 5, 50.0)):
            out = None
            for start in range(0, n, CHUNK):
                m = min(CHUNK, n - start)
                counts = rng.poisson(3, m)
                jets = ak.zip({
                    "pt": ak.unflatten(rng.exponential(scale, counts.sum()).astype(np.float32), counts),
                    "eta": ak.unflatten(rng.normal(0, 1.5, counts.sum()).astype(np.float32), counts),
                })
                cols = {"EventNumber": np.arange(start, start + m, dtype=np.int64),
                        "met": rng.exponential(scale, m).astype(np.float32),
                        "mjj": rng.normal(500, 50, m).astype(np.float32),
                        "weight": np.ones(m), "Jet": jets}
                if out is None:
                    out = f.mktree(tree, {k: (v.type if k == "Jet" else v.dtype) for k, v in cols.items()})
                out.extend(cols)


def run_child(args: list[str]) -> tuple[float, float, float]:
    """Run one command; return its wall time (s), CPU time (s, user + system: on a shared
    machine the wall time also measures the others' load) and its own peak RSS (MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"'{' '.join(args)}' failed with exit code {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return time.perf_counter() - start, cpu, usage.ru_maxrss / 1024  # kB on Linux


def pnn_command() -> str:
    return str(Path(sys.executable).with_name("pnn"))


def bench_ingest(events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "big.root"
        start = time.perf_counter()
        write_file(root, events)
        size = root.stat().st_size / 1e6
        print(f"wrote {events:,} events ({size:.0f} MB) in {time.perf_counter() - start:.0f} s")
        raw = {
            "name": "memory", "output_dir": str(Path(tmp) / "runs"),
            "samples": {"signal": [{"name": "sig", "files": str(root), "tree": "signal", "mass": 500}],
                        "background": [{"name": "bkg", "files": str(root), "tree": "background"}]},
            "features": ["met", "mjj", "Jet_pt[0]", "Jet_pt[1]", "count(Jet_pt)", "sum(Jet_pt)"],
            "selection": "count(Jet_pt) >= 1",
        }
        config = Path(tmp) / "memory.yaml"
        config.write_text(yaml.safe_dump(raw))
        seconds, _, peak_mb = run_child([pnn_command(), "-q", "ingest", str(config)])
        verdict = "under" if peak_mb < 2048 else "OVER"
        print(f"pnn ingest: {events:,} events in {seconds:.0f} s, peak RSS {peak_mb:.0f} MB "
              f"({verdict} the 2 GB target)")


def toy_config(folder: Path, scale: float, masses: list[float] | None = None) -> dict:
    """The demo's toy (masses, samples, features) at ``scale`` times its size, with a tiny
    network trained for one epoch; ``masses`` restricts the evaluation."""
    data = folder / "ntuples"
    every = sorted(DEMO_MASSES + DEMO_OFFGRID)
    return {
        "name": "memory", "output_dir": str(folder / "runs"), "seed": 42,
        "generate": {"output": str(data), "masses": DEMO_MASSES, "offgrid_masses": DEMO_OFFGRID,
                     "signal_events": round(DEMO_SIGNAL * scale),
                     "background_events": round(DEMO_BACKGROUND * scale)},
        "samples": {
            "signal": [{"name": f"Xtohh{m}", "files": str(data / "signal.root"),
                        "tree": f"Xtohh{m}", "mass": m, "train": m in DEMO_MASSES} for m in every],
            "background": [{"name": p, "files": str(data / "background.root"), "tree": p}
                           for p in ("ttbar", "multijet")],
        },
        "features": ["FourBodyMass", "Jet0CorrTLV", "sT", "sTNoMet", "Btag"],
        "training": {"layers": [16, 16], "epochs": 1, "batch_size": 8192, "patience": 1},
        "evaluation": {"masses": sorted(masses) if masses else None},
    }


def bench_evaluate(scale: float, scratch: Path, masses: list[float] | None = None) -> None:
    config = scratch / "memory.yaml"
    raw = toy_config(scratch, scale, masses)
    old = yaml.safe_load(config.read_text()) if config.is_file() else {}
    # The evaluated masses change neither the toy, nor the events table, nor the model.
    fresh = {k: v for k, v in old.items() if k != "evaluation"} != \
        {k: v for k, v in raw.items() if k != "evaluation"}
    config.write_text(yaml.safe_dump(raw))
    pnn = pnn_command()
    run = scratch / "runs" / "memory"
    stages = [("generate", fresh or not (scratch / "ntuples" / "toy.json").is_file()),
              ("ingest", fresh or not (run / "events.parquet").is_file()),
              ("train", fresh or not (run / "model" / "metadata.json").is_file())]
    for stage, needed in stages:
        if needed:
            seconds, cpu, peak = run_child([pnn, "-q", stage, str(config)])
            print(f"pnn {stage}: {seconds:.0f} s ({cpu:.0f} s CPU), peak RSS {peak:.0f} MB")
    events = json.loads((run / "events.json").read_text())["events"]
    seconds, cpu, peak_mb = run_child([pnn, "-q", "evaluate", str(config)])
    masses = len(json.loads((run / "evaluate" / "index.json").read_text())["masses"])
    verdict = "under" if peak_mb < 3072 else "OVER"
    print(f"pnn evaluate: {events:,} events, {masses} masses in {seconds:.0f} s, {cpu:.0f} s CPU "
          f"({cpu / events * 1e6:.1f} us CPU per event), peak RSS {peak_mb:.0f} MB "
          f"({verdict} the 3 GB target)")
    seconds, cpu, peak_mb = run_child([pnn, "-q", "report", str(config)])
    print(f"pnn report: {seconds:.0f} s ({cpu:.0f} s CPU), peak RSS {peak_mb:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="stage")
    ingest = sub.add_parser("ingest", help="peak memory of pnn ingest on a jagged ntuple")
    ingest.add_argument("--events", type=int, default=5_000_000)
    evaluate = sub.add_parser("evaluate", help="peak memory of pnn evaluate on the toy")
    evaluate.add_argument("--scale", type=float, default=1.0,
                          help="toy size in units of the demo (13: about 10 million events)")
    evaluate.add_argument("--scratch", type=Path, default=None,
                          help="folder for the toy and the run (default: a temporary one); "
                          "a toy, events table and model already there for the same size are reused")
    evaluate.add_argument("--masses", type=float, nargs="+", default=None,
                          help="evaluate only these masses (default: all 9)")
    args = parser.parse_args()
    if args.stage == "evaluate":
        if args.scratch is None:
            with tempfile.TemporaryDirectory() as tmp:
                bench_evaluate(args.scale, Path(tmp), args.masses)
        else:
            args.scratch.mkdir(parents=True, exist_ok=True)
            bench_evaluate(args.scale, args.scratch, args.masses)
    else:
        bench_ingest(getattr(args, "events", 5_000_000))


if __name__ == "__main__":
    main()
