"""``report.html``: one self-contained page with everything a run made, for the group.

Gathers the summary table (with uncertainties and limits when present), the Brazil plot,
the per-mass plots, the input diagnostics, the sanity checks, the training curves, the
config and the provenance record of every stage, then renders them with the Jinja2
template of :mod:`pnn.show.page`. Missing parts (no limits, no inspect yet) are left out
or named with the command that makes them.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pandas as pd

import pnn
from pnn.core import points, provenance
from pnn.core.atomic import write_text
from pnn.core.config import Config
from pnn.show import page

ERR = "_err"
MASS_PLOTS = (("evaluate", "scores.png", "score distributions, train (points) and test"),
              ("evaluate", "roc.png", "ROC curves and background rejection"),
              ("evaluate", "significance.png", "Z against the signal efficiency of the cut"),
              ("limits", "templates.png", "prefit templates of the PNN score"),
              ("limits", "cls.png", "CLs scan"))


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _figure(path: Path, caption: str) -> dict[str, str] | None:
    return {"src": page.data_uri(path), "caption": caption} if path.is_file() else None


def _point(rec: dict, names: list[str]) -> tuple[float, ...]:
    return tuple(float(rec[n]) for n in names)


def _heading(names: list[str], point: tuple[float, ...]) -> str:
    """The text a mass (``1000``) or a point (``mX = 1000, mY = 300``) is shown with."""
    if len(names) == 1:
        return f"{point[0]:g}"
    return points.describe(names, point).removesuffix(" GeV")


def _rows(table: pd.DataFrame, names: list[str] | None = None) -> tuple[list[str], list[dict]]:
    """Column names without the ``_err`` ones, and every row's cells as ``x ± err``."""
    names = names or [points.MASS]
    columns = [c for c in table.columns if not (c.endswith(ERR) and c[:-len(ERR)] in table)]
    rows = []
    for rec in table.astype(object).to_dict(orient="records"):
        cells = [page.number(rec[c], rec.get(c + ERR)) for c in columns]
        point = _point(rec, names)
        rows.append({"mass": _heading(names, point) if len(names) == 1 else points.label(names, point),
                     "trained": bool(rec["trained"]), "cells": cells})
    return columns, rows


def _masses(cfg: Config, table: pd.DataFrame) -> list[dict]:
    names = cfg.parameters
    out = []
    for rec in table.to_dict(orient="records"):
        point = _point(rec, names)
        label = points.label(names, point)
        m = _read(cfg.run_dir / "evaluate" / label / "metrics.json") or {}
        figures = [_figure(cfg.run_dir / stage / label / name, caption)
                   for stage, name, caption in MASS_PLOTS]
        out.append({"mass": _heading(names, point), "id": label, "trained": bool(rec["trained"]),
                    "warnings": m.get("warnings", []), "figures": [f for f in figures if f]})
    return out


def _inputs(cfg: Config) -> dict | None:
    folder = cfg.run_dir / "inputs"
    manifest = _read(folder / "inputs.json")
    if not isinstance(manifest, dict):
        return None
    table = pd.DataFrame(manifest.get("separation", []))
    masses = manifest.get("masses", [])
    separation = []
    for feat in manifest.get("features", []):
        rows = table[table["feature"] == feat] if len(table) else table
        by_mass = dict(zip(rows.get("mass", []), rows.get("separation", []), strict=True))
        separation.append((feat, [page.number(by_mass.get(m)) for m in masses]))
    data = {"none": "no data sample configured", "all": "shown (unblinded: limits.observed)",
            "sidebands": f"blinded: shown only in bins where no signal mass exceeds "
                         f"{manifest.get('blind_fraction', 0):.0%} of the expected events"}
    figures = [_figure(folder / name, name.removesuffix(".png").replace("_", " "))
               for name in manifest.get("plots", [])]
    return {"masses": [m if isinstance(m, str) else f"{m:g}" for m in masses],
            "separation": separation,
            "data": data.get(manifest.get("data"), manifest.get("data")),
            "figures": [f for f in figures if f]}


def _training(cfg: Config) -> tuple[list[dict], list[dict]]:
    mdir = cfg.run_dir / "model"
    meta = _read(mdir / "metadata.json") or {}
    folds = []
    for r in meta.get("fold_results", []):
        folds.append({k: page.number(r.get(k)) for k in
                      ("fold", "epochs_run", "best_epoch", "best_val_loss", "seconds")})
    figures = [_figure(p, f"loss and learning rate, {p.name.split('.')[0]}")
               for p in sorted(mdir.glob("fold*.loss.png"))]
    return folds, [f for f in figures if f]


def _checks(cfg: Config) -> list[dict]:
    checks = _read(cfg.run_dir / "evaluate" / "sanity.json") or []
    out = []
    for c in checks if isinstance(checks, list) else []:
        value = c.get("value")
        out.append({"name": c.get("name", "?"), "passed": bool(c.get("passed", not c.get("warning"))),
                    "value": page.number(value if isinstance(value, int | float) else None),
                    "warning": c.get("warning", "")})
    return out


def _records(cfg: Config) -> dict[str, dict | None]:
    """The provenance record of each stage's output, where it has one."""
    run = cfg.run_dir
    meta = _read(run / "model" / "metadata.json") or {}
    folds = [r.get(provenance.KEY) for r in meta.get("fold_results", [])]
    found = {
        "ingest": (_read(run / "events.json") or {}).get(provenance.KEY),
        "train": folds[0] if folds else None,
        "inspect": (_read(run / "inputs" / "inputs.json") or {}).get(provenance.KEY),
        "evaluate": (_read(run / "evaluate" / "index.json") or {}).get(provenance.KEY),
        "limits": _read(run / "limits" / "limits.provenance.json"),
    }
    return {k: v if isinstance(v, dict) else None for k, v in found.items()}


def _stages(cfg: Config, states: list, own: dict) -> list[dict]:
    records = {**_records(cfg), "report": own}
    rows = []
    for s in states:
        rec = records.get(s.stage) or {}
        state, detail = (("current", "this page") if s.stage == "report" else (s.state, s.detail))
        rows.append({"stage": s.stage, "state": state, "detail": detail,
                     "id": rec.get("id", "-"), "digest": rec.get("digest", "-"),
                     "version": rec.get("pnn_version", "-")})
    if records["limits"] and not any(s.stage == "limits" for s in states):
        rec = records["limits"]
        rows.append({"stage": "limits", "state": "current", "detail": "", "id": rec.get("id", "-"),
                     "digest": rec.get("digest", "-"), "version": rec.get("pnn_version", "-")})
    return rows


def context(cfg: Config, table: pd.DataFrame, warnings: list[str], comparison: list[str],
            summary_plot: Path, states: list, record: dict) -> dict[str, Any]:
    """Everything the page shows. ``states`` are the stage states of ``pnn status``,
    ``record`` the provenance of the report being written."""
    columns, rows = _rows(table, cfg.parameters)
    limits = cfg.run_dir / "limits"
    brazil = [_figure(limits / "brazil.png", "expected 95% CL limits on the signal strength"),
              _figure(limits / "brazil_fb.png", "expected 95% CL limits on the cross section")]
    beside = Path(summary_plot).parent  # the report's own figures, written with it
    heatmaps = [_figure(p, p.stem.replace("_", " ")) for p in
                sorted(beside.glob("heatmap_*.png")) + sorted(beside.glob("slices_*.png"))]
    folds, training = _training(cfg)
    source = Path(cfg.source)
    return {
        "name": cfg.name, "version": pnn.__version__,
        "made": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "config_path": cfg.source,
        "columns": columns, "rows": rows, "comparison": comparison, "warnings": warnings,
        "summary_plot": page.data_uri(summary_plot) if Path(summary_plot).is_file() else None,
        "brazil": [b for b in brazil if b], "masses": _masses(cfg, table),
        "heatmaps": [h for h in heatmaps if h], "parameters": cfg.parameters,
        "inputs": _inputs(cfg), "inspect_command": cfg.command("inspect"),
        "checks": _checks(cfg), "folds": folds, "training": training,
        "stages": _stages(cfg, states, record),
        "config_text": source.read_text() if source.is_file() else cfg.model_dump_json(indent=2),
    }


def write(path: Path, ctx: dict[str, Any]) -> None:
    """Render and write the page atomically."""
    write_text(path, page.render(ctx))


