"""Report: per-mass metrics -> summary.csv, summary.json, a Markdown table and summary plots."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pnn.core import points, provenance
from pnn.core.atomic import Staging, atomic_path, read_json, write_json
from pnn.core.config import Config
from pnn.core.errors import PnnError
from pnn.core.locks import task_lock
from pnn.show import plots
from pnn.show.style import Style
from pnn.stats import evaluate, page, sanity

log = logging.getLogger(__name__)

ERR = "_err"  # a column '<name>_err' is the bootstrap standard deviation of '<name>'
COLUMNS = ["mass", "trained", "auc", "auc_optimal", "auc_window", "z", "z_optimal", "z_window",
           "z_ratio", "bkg_eff_sig80", "bkg_eff_sig95", "s_over_sqrt_b"]
COLUMNS += [c + ERR for c in COLUMNS[2:-1]]


@dataclass
class Report:
    table: pd.DataFrame
    markdown: str
    warnings: list[str]
    paths: dict[str, Path]


def _point_of(m: dict, names: list[str]) -> tuple[float, ...]:
    """The point of one metrics record (``mass`` alone, or every parameter)."""
    if names == [points.MASS]:
        return (float(m["mass"]),)
    return tuple(float(m.get("point", {}).get(n, float("nan"))) for n in names)


def columns(names: list[str]) -> list[str]:
    """The summary's columns: one per parameter ('mass' alone), then the figures of merit."""
    return [*names, *COLUMNS[1:]]


def _row(m: dict, names: list[str] | None = None) -> dict:
    methods = m["methods"]
    nan = float("nan")
    names = names or [points.MASS]
    row = {**points.as_dict(names, _point_of(m, names)), "trained": bool(m["trained"])}
    for method, suffix in (("pnn", ""), ("optimal", "_optimal"), ("window", "_window")):
        got = methods.get(method, {})
        for key in ("auc", "z"):
            row[key + suffix] = got.get(key, nan)
            row[key + suffix + ERR] = got.get(key + ERR, nan)
    zo = row["z_optimal"]
    row["z_ratio"] = m.get("z_ratio", row["z"] / zo if zo and not math.isnan(zo) else nan)
    row["z_ratio_err"] = m.get("z_ratio_err", nan)
    for key in ("bkg_eff_sig80", "bkg_eff_sig95"):
        row[key] = methods["pnn"][key]
        row[key + ERR] = methods["pnn"].get(key + ERR, nan)
    row["s_over_sqrt_b"] = methods["pnn"]["s_over_sqrt_b"]
    return row


def evaluated(cfg: Config) -> list[tuple[Path, dict]]:
    """Every per-mass ``metrics.json`` (restricted to ``evaluation.masses`` when set), each
    checked to come from the current model and evaluation settings."""
    base = cfg.run_dir / "evaluate"
    names = cfg.parameters
    pairs = [(p, read_json(p, cfg.command("evaluate"))) for p in sorted(base.glob("*/metrics.json"))
             if points.from_label(p.parent.name, names) is not None]
    wanted = cfg.evaluation_points()
    if wanted:
        pairs = [(p, m) for p, m in pairs
                 if any(points.mask(np.array([_point_of(m, names)]), w)[0] for w in wanted)]
    evaluate.require_metrics(cfg, pairs)
    return pairs


def collect(cfg: Config) -> tuple[pd.DataFrame, list[str]]:
    """Rows of every evaluated mass (restricted to ``evaluation.masses`` when set)."""
    base = cfg.run_dir / "evaluate"
    found = [m for _, m in evaluated(cfg)]
    if not found:
        raise PnnError(f"no evaluated mass under '{base}': run 'pnn evaluate' first")
    names = cfg.parameters
    found.sort(key=lambda m: _point_of(m, names))
    checks_file = base / "sanity.json"
    checks = read_json(checks_file, cfg.command("evaluate")) if checks_file.is_file() else []
    warnings = [c["warning"] for c in checks if c["warning"]]
    warnings += [f"{points.describe(names, _point_of(m, names))}: {w}" for m in found
                 for w in m.get("warnings", [])]
    table = pd.DataFrame([_row(m, names) for m in found], columns=columns(names))
    from pnn.stats.limits import summary_columns  # pyhf and hist only when limits are read

    limit_cols = summary_columns(cfg) if (cfg.run_dir / "limits" / "limits.json").is_file() else {}
    keys = [p[0] if len(p) == 1 else p for p in table[names].itertuples(index=False, name=None)]
    if limit_cols:
        for name in ("limit_pnn", "limit_window", "limit_optimal"):
            values = [limit_cols.get(k, {}).get(name, float("nan")) for k in keys]
            if not all(math.isnan(v) for v in values):
                table[name] = values
    same = sanity.identical_auc(dict(zip(keys, table["auc"], strict=True)))
    if same.warning:
        warnings.insert(0, same.warning)
    return table, warnings


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        return f"{v:g}" if v >= 100 else f"{v:.4f}"
    return str(v)


def markdown(table: pd.DataFrame) -> str:
    """The summary as a Markdown table; a value with a known uncertainty reads 'value ± err'."""
    shown = [c for c in table.columns if not (c.endswith(ERR) and c[:-len(ERR)] in table)]
    cols = list(table.columns)
    keys = set(cols[:cols.index("trained")]) if "trained" in cols else set()  # the parameters

    def cell(row: dict, col: str) -> str:
        if col in keys and isinstance(row[col], float) and not math.isnan(row[col]):
            return f"{row[col]:g}"
        err = row.get(col + ERR)
        if isinstance(err, float) and not math.isnan(err) and not math.isnan(row[col]):
            return f"{_fmt(row[col])} ± {err:.2g}"
        return _fmt(row[col])

    head = "| " + " | ".join(shown) + " |"
    rule = "|" + "|".join("---:" for _ in shown) + "|"
    body = ["| " + " | ".join(cell(row, c) for c in shown) + " |"
            for row in table.astype(object).to_dict(orient="records")]
    return "\n".join([head, rule, *body])


def _where(table: pd.DataFrame, i: int) -> str:
    """The point of row ``i`` in words (the parameters are the columns before 'trained')."""
    names = list(table.columns[:list(table.columns).index("trained")])
    return points.describe(names, tuple(float(table[n][i]) for n in names)).replace("m = ", "")


def comparison(table: pd.DataFrame) -> list[str]:
    """One-line comparisons of the PNN with the optimum and the mass window, from the numbers."""
    lines = []
    if table["auc_optimal"].notna().any():
        gap = table["auc_optimal"] - table["auc"]
        ratio = table["z"] / table["z_optimal"]
        i, j = gap.idxmax(), ratio.idxmin()
        lines.append(
            f"PNN vs optimal: largest AUC gap {gap[i]:.4f} at {_where(table, i)}, "
            f"smallest Z ratio {ratio[j]:.3f} at {_where(table, j)}"
        )
    if table["z_window"].notna().any():
        ratio = table["z"] / table["z_window"]
        j = ratio.idxmin()
        lines.append(f"PNN vs mass window: smallest Z ratio {ratio[j]:.3f} at {_where(table, j)}")
    return lines


def write_table(table: pd.DataFrame, base: Path) -> tuple[Path, Path]:
    """``base.csv`` and ``base.json`` (one record per row, NaN as null), written atomically."""
    csv, js = base.with_suffix(".csv"), base.with_suffix(".json")
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
               for r in table.astype(object).to_dict(orient="records")]
    write_json(js, records)
    return csv, js


def report(cfg: Config) -> Report:
    """Write summary.csv, summary.json, summary.png and report.html in the run directory."""
    table, warnings = collect(cfg)
    run = cfg.run_dir
    plot = run / ("summary.png" if len(cfg.parameters) == 1 else "heatmap_auc.png")
    paths = {"csv": run / "summary.csv", "json": run / "summary.json", "plot": plot,
             "html": run / "report.html"}
    with task_lock(run, "report"), Staging(run, "report") as staged:
        write_table(table, staged.path("summary"))
        style = Style.of(cfg)
        if len(cfg.parameters) == 1:
            plots.summary(table, staged.path("summary.png"), style)
        else:  # maps over the first two parameters, and slices at fixed values of the second
            x, y = cfg.parameters[:2]
            plots.parameter_heatmaps(table, x, y, staged.dir, style=style)
            plots.parameter_slices(table, x, y, staged.dir, style=style)
        rec = provenance.record(cfg, "report", {"metrics": provenance.combine(
            [m[provenance.KEY]["id"] for _, m in evaluated(cfg)])})
        page.write(staged.path("report.html"), page.context(
            cfg, table, warnings, comparison(table), staged.path("summary.png"), stage_states(cfg),
            rec))
        write_json(staged.path("summary.provenance.json"), rec)
        staged.publish(last=["summary.provenance.json"])
    text = "\n".join([markdown(table), "", *comparison(table)]).rstrip()
    return Report(table, text, warnings, paths)


@dataclass
class StageState:
    stage: str
    state: str  # current, stale or missing
    detail: str


def stage_states(cfg: Config) -> list[StageState]:
    """Whether the outputs of each stage of the run are current, stale or missing, judged by
    their provenance against the config (``pnn status CONFIG``)."""
    from pnn.io.ingest import events_identity, events_path
    from pnn.learn.train import require_model

    run = cfg.run_dir
    checks = [
        ("ingest", events_path(cfg).exists() or (run / "events.d").is_dir(),
         lambda: events_identity(cfg)),
        ("train", (run / "model" / "metadata.json").exists(), lambda: require_model(cfg)),
        ("inspect", (run / "inputs" / "inputs.json").exists(), lambda: _require_inputs(cfg)),
        ("evaluate", any((run / "evaluate").glob("*/metrics.json")), lambda: evaluated(cfg)),
        ("report", (run / "summary.json").exists(), lambda: _require_summary(cfg)),
    ]
    out = []
    for stage, exists, check in checks:
        if not exists:
            out.append(StageState(stage, "missing", f"run '{cfg.command(stage)}'"))
            continue
        try:
            check()
        except PnnError as exc:
            out.append(StageState(stage, "stale", str(exc)))
        else:
            out.append(StageState(stage, "current", ""))
    return out


def _require_inputs(cfg: Config) -> None:
    from pnn.stats.inspect import require_inputs

    require_inputs(cfg)


def _require_summary(cfg: Config) -> None:
    rec = read_json(cfg.run_dir / "summary.provenance.json", cfg.command("report"))
    ids = provenance.combine([m[provenance.KEY]["id"] for _, m in evaluated(cfg)])
    provenance.require(cfg, "report", rec, f"'{cfg.run_dir / 'summary.json'}'",
                       inputs={"metrics": ids})
