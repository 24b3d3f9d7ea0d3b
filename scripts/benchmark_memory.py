"""Peak memory of ``pnn ingest`` on a large file: it must not grow with the file size.

Writes an ntuple with ``--events`` events (flat branches and a jagged jet collection, in
chunks, so writing it stays small too), then runs ``pnn ingest`` with jagged-reduced features
in a child process and reports that child's peak resident set size from
``resource.getrusage(RUSAGE_CHILDREN)``. Target: under 2 GB for 5 million events.

    python scripts/benchmark_memory.py [--events 5000000]
"""

from __future__ import annotations

import argparse
import resource
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "big.root"
        start = time.perf_counter()
        write_file(root, args.events)
        size = root.stat().st_size / 1e6
        print(f"wrote {args.events:,} events ({size:.0f} MB) in {time.perf_counter() - start:.0f} s")
        raw = {
            "name": "memory", "output_dir": str(Path(tmp) / "runs"),
            "samples": {"signal": [{"name": "sig", "files": str(root), "tree": "signal", "mass": 500}],
                        "background": [{"name": "bkg", "files": str(root), "tree": "background"}]},
            "features": ["met", "mjj", "Jet_pt[0]", "Jet_pt[1]", "count(Jet_pt)", "sum(Jet_pt)"],
            "selection": "count(Jet_pt) >= 1",
        }
        config = Path(tmp) / "memory.yaml"
        config.write_text(yaml.safe_dump(raw))
        pnn = Path(sys.executable).with_name("pnn")
        start = time.perf_counter()
        subprocess.run([str(pnn), "-q", "ingest", str(config)], check=True)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # kB on Linux
        verdict = "under" if peak_mb < 2048 else "OVER"
        print(f"pnn ingest: {args.events:,} events in {seconds:.0f} s, peak RSS {peak_mb:.0f} MB "
              f"({verdict} the 2 GB target)")


if __name__ == "__main__":
    main()
