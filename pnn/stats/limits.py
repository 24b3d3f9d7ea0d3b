"""``pnn limits``: binned score templates, HistFactory workspaces and CLs upper limits per mass
(per signal point, with several parameters).

The per-event test scores that ``pnn evaluate`` keeps (``evaluate/m<mass>/scores.parquet``,
``evaluate/mX1000_mY300/scores.parquet``) are the nominal input: every method's templates
come from the same events, each scored by the model that did not train on it. Data and the
events of tree or weight systematics are read once into ``limits/inputs/`` (never into the
training table) and scored with the same models. Each point is one task: its ``limits.json``,
workspaces and plots are published together under the point's folder name.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from concurrent.futures import Executor, Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pnn.core import points, provenance
from pnn.core.atomic import Staging, read_json, sweep, write_json
from pnn.core.config import Config, Sample, Systematic
from pnn.core.errors import PnnError
from pnn.core.locks import task_lock
from pnn.core.workers import process_pool
from pnn.io import exact, ingest
from pnn.learn.preprocess import feature_matrix, parameter_matrix
from pnn.show import plots
from pnn.show.style import Style
from pnn.show.style import current as current_style
from pnn.stats import cls, templates
from pnn.stats.workspace import SampleTemplate, build_spec

if TYPE_CHECKING:  # the fit workers import this module: no TensorFlow at import time
    from pnn.learn.model import FoldModels

log = logging.getLogger(__name__)

METHODS = ("pnn", "window", "optimal")
KEYS = ("expected_minus2", "expected_minus1", "expected", "expected_plus1", "expected_plus2")


def limits_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "limits"


Hypothesis = float | tuple[float, ...]  # a mass (one parameter) or a point


def _names(names: list[str] | None) -> list[str]:
    return list(names or [points.MASS])


def mass_label(mass: Hypothesis, names: list[str] | None = None) -> str:
    """The folder of a point: ``m500`` for a mass, ``mX1000_mY300`` for several parameters."""
    return points.label(_names(names), points.as_point(mass))


def workspace_name(method: str, mass: Hypothesis, names: list[str] | None = None) -> str:
    return f"workspaces/{method}_{mass_label(mass, names)}.json"


def _public(point: tuple[float, ...]) -> Hypothesis:
    """A point as callers know it: a float for a lone mass, a tuple for several parameters."""
    return point[0] if len(point) == 1 else tuple(point)


def _option(names: list[str], point: tuple[float, ...]) -> str:
    """The command-line option that selects ``point``: ``--mass 500`` or ``--point mX..``."""
    if len(names) == 1:
        return f"--mass {point[0]:g}"
    return f"--point {points.label(names, point)}"


@dataclass
class LimitRow:
    """The expected (and, unblinded, observed) 95 % CL upper limits of one point and method."""

    point: dict[str, float]  # every parameter by name ('mass' alone for one parameter)
    method: str
    trained: bool
    expected_minus2: float
    expected_minus1: float
    expected: float
    expected_plus1: float
    expected_plus2: float
    observed: float | None
    xsec_fb: float | None
    expected_minus2_fb: float | None
    expected_minus1_fb: float | None
    expected_fb: float | None
    expected_plus1_fb: float | None
    expected_plus2_fb: float | None
    observed_fb: float | None
    p0: float | None
    significance: float | None
    bins: int
    status: str
    seconds: float

    @property
    def mass(self) -> float | None:
        """The mass of a one-parameter search (None with several parameters)."""
        return self.point.get(points.MASS) if len(self.point) == 1 else None

    def record(self) -> dict[str, Any]:
        """The row of limits.json: one key per parameter, then the limits."""
        out = asdict(self)
        return {**out.pop("point"), **out}


# --- inputs: data and systematic variations ---------------------------------------------------

def _applies(cfg: Config, syst: Systematic, is_signal: bool, names: set[str]) -> bool:
    """Whether a systematic acts on the signal or a background made of the samples ``names``
    (config names or the events-table names they expand to); default: every simulated one."""
    if not syst.samples:
        return True
    wanted = set(syst.samples)
    if ("signal" in wanted and is_signal) or ("background" in wanted and not is_signal):
        return True
    owners = [s for s in cfg.samples.signal + cfg.samples.background if s.name in wanted]
    return any(n in wanted or any(s.owns(n) for s in owners) for n in names)


def _affected(cfg: Config, syst: Systematic) -> list[tuple[int, Sample]]:
    """(label, sample) pairs of the config a systematic acts on."""
    pairs = [(1, s) for s in cfg.samples.signal] + [(0, s) for s in cfg.samples.background]
    return [(label, s) for label, s in pairs if _applies(cfg, syst, label == 1, {s.name})]


def _varied(sample: Sample, syst: Systematic, side: str) -> Sample:
    """The sample as the ``side`` ('up'/'down') variation of a tree or weight systematic."""
    value = syst.up if side == "up" else syst.down
    if syst.type == "weight":
        return sample.model_copy(update={"weight": str(value)})
    update: dict[str, Any] = {}
    if value is not None:
        if sample.tree is None:
            raise PnnError(f"limits.systematics '{syst.name}': sample '{sample.name}' has no single "
                           "'tree' to vary: give the variation trees with up_files/down_files")
        update["tree"] = str(value).replace("{tree}", sample.tree)
    files = syst.up_files if side == "up" else syst.down_files
    if files is not None:
        if isinstance(sample.files, dict):
            raise PnnError(f"limits.systematics '{syst.name}': up_files/down_files need the "
                           f"sample '{sample.name}' to list its files, not a file -> tree map")
        update["files"] = [files.replace("{file}", f) for f in sample.files]
    return sample.model_copy(update=update)


def input_tables(cfg: Config) -> dict[str, list[tuple[int, list[Sample]]]]:
    """Name -> sample groups of every extra table: ``data`` and ``<syst>__up``/``__down``."""
    tables: dict[str, list[tuple[int, list[Sample]]]] = {}
    if cfg.samples.data:
        tables["data"] = [(-1, list(cfg.samples.data))]
    for syst in cfg.limits.systematics:
        if syst.type not in ("tree", "weight"):
            continue
        sides = ["up"] + (["down"] if syst.down is not None or syst.down_files else [])
        for side in sides:
            affected = _affected(cfg, syst)
            groups = [(label, [_varied(s, syst, side) for lab, s in affected if lab == label])
                      for label in (1, 0)]
            tables[f"{syst.name}__{side}"] = [g for g in groups if g[1]]
    return tables


def _inputs_dir(cfg: Config) -> Path:
    return limits_dir(cfg.run_dir) / "inputs"


def read_inputs(cfg: Config) -> dict[str, tuple[pd.DataFrame, str]]:
    """The extra tables (read now unless a current copy exists), with their identities."""
    out = {}
    folder = _inputs_dir(cfg)
    tables = input_tables(cfg)
    for groups in tables.values():  # every file, tree and branch first: nothing half-read
        ingest.check_samples(cfg, groups)
    for name, groups in tables.items():
        path = folder / f"{name}.parquet"
        meta_path = path.with_suffix(".json")
        rec = None
        if meta_path.is_file():
            rec = read_json(meta_path, cfg.command("limits")).get(provenance.KEY)
            try:
                provenance.require(cfg, "variations", rec, str(path))
            except PnnError:
                rec = None
        if rec is None or not path.is_file():
            log.info("reading the %s events", name)
            with task_lock(cfg.run_dir, f"limits-inputs-{name}"), Staging(folder, name) as staged:
                summaries = ingest.read_samples(cfg, groups, staged.path(path.name))
                rec = provenance.record(cfg, "variations")
                write_json(staged.path(meta_path.name), {
                    "samples": [asdict(s) for s in summaries], provenance.KEY: rec})
                staged.publish(last=[meta_path.name])
        table = pd.read_parquet(path)
        out[name] = (table, rec["id"])
    return out


# --- scoring ----------------------------------------------------------------------------------

def window_columns(cfg: Config) -> list[str]:
    """The scores.parquet columns of the window variables, in the order of the parameters:
    ``window`` for one parameter, ``window_<branch>`` for several (none: no window)."""
    from pnn.stats.evaluate import window_branches

    branches = window_branches(cfg) or []
    return ["window"] if len(branches) == 1 else [f"window_{b}" for b in branches]


def _signal_at(table: pd.DataFrame, names: list[str], point: tuple[float, ...]) -> np.ndarray:
    """The signal events of ``point`` (every other event False)."""
    sel = table["label"].to_numpy() == 1
    if sel.any():
        sel &= points.mask(parameter_matrix(table, names), point)
    return sel


def score_events(cfg: Config, models: FoldModels, table: pd.DataFrame, mass: Hypothesis,
                 toy_samples: str | bool) -> pd.DataFrame:
    """The scores.parquet columns for extra events at ``mass`` (a point, with several
    parameters): signal of that point, all background and all data, each event scored by the
    model that did not train on it. ``toy_samples`` is the toy generator that wrote the
    events (its exact likelihood ratio is added), or False."""
    from pnn.stats.evaluate import window_branches

    if "label" not in table or table.empty:
        return pd.DataFrame(columns=["event_number", "sample", "weight", "label", "score"])
    names = cfg.parameters
    point = points.as_point(mass)
    part = table[(table["label"].to_numpy() != 1) | _signal_at(table, names, point)]
    evno = part["event_number"].to_numpy()
    score = (models.score(feature_matrix(part, models.features), _public(point), evno)[0]
             if len(part) else [])
    out = pd.DataFrame({"event_number": evno, "sample": part["sample"].astype(str).to_numpy(),
                        "weight": part["weight"].to_numpy(np.float64),
                        "label": part["label"].to_numpy().astype(np.int8),
                        "score": np.asarray(score, np.float64)})
    branches = window_branches(cfg) or []
    if branches and all(b in part for b in branches):
        for column, b in zip(window_columns(cfg), branches, strict=True):
            out[column] = part[b].to_numpy(np.float64)
    if toy_samples and all(b in part for b in exact.branches(toy_samples)):
        out["llr"] = exact.log_likelihood_ratio(toy_samples, part, point) if len(part) else []
    return out


def _reweight(nominal: pd.DataFrame, table: pd.DataFrame, mass: Hypothesis,
              names: list[str] | None = None) -> pd.DataFrame:
    """A weight variation holds the nominal events with other weights: take their scores
    from the nominal scores (same sample and event number, unique in ``nominal``) instead of
    predicting again."""
    names = _names(names)
    point = points.as_point(mass)
    sel = (table["label"].to_numpy() == 0) | _signal_at(table, names, point)
    part = pd.DataFrame({"sample": table.loc[sel, "sample"].astype(str).to_numpy(),
                         "event_number": table.loc[sel, "event_number"].to_numpy(),
                         "weight": table.loc[sel, "weight"].to_numpy(np.float64)})
    keys = nominal.drop(columns=["weight"]).assign(sample=nominal["sample"].astype(str))
    out = part.merge(keys, on=["sample", "event_number"], how="inner")
    if len(out) != len(part):
        log.warning("%s: %d events of a weight variation are not in the nominal scores",
                    points.describe(names, point), len(part) - len(out))
    return out


def discriminant(scores: pd.DataFrame, method: str, mass: Hypothesis,
                 window: list[str] | None = None) -> np.ndarray | None:
    """The values a method's templates bin: the PNN score, the window variable folded around
    the hypothesis (-|x - m|, a folded bump hunt; with several parameters the box of
    :func:`pnn.stats.evaluate.window_discriminant` over the ``window`` columns), or the exact
    log-likelihood ratio."""
    if method == "pnn":
        return scores["score"].to_numpy(np.float64)
    point = points.as_point(mass)
    if method == "window":
        columns = window or (["window"] if len(point) == 1 else
                             [c for c in scores.columns if str(c).startswith("window_")])
        if len(columns) != len(point) or not all(c in scores for c in columns):
            return None
        from pnn.stats.evaluate import window_discriminant

        return window_discriminant(scores[columns].to_numpy(np.float64), point)
    if method == "optimal" and "llr" in scores:
        return scores["llr"].to_numpy(np.float64)
    return None


# --- templates and the statistical model ----------------------------------------------------

def _edges(cfg: Config, method: str, values: np.ndarray, scores: pd.DataFrame) -> np.ndarray:
    b = cfg.limits.binning
    if b.mode == "edges" and method == "pnn":
        return np.asarray(b.edges, dtype=np.float64)
    sig = scores["label"].to_numpy() == 1
    w = scores["weight"].to_numpy(np.float64)
    # a score lives in [0, 1]: the outer edges say so, not the extreme scores of the sample
    bounds = {"low": 0.0, "high": 1.0} if method == "pnn" else {}
    return templates.auto_edges(values[sig], w[sig], values[~sig], w[~sig], z_s=b.z_s, z_b=b.z_b,
                                min_mc=b.min_mc, max_stat_error=b.max_stat_error,
                                max_bins=b.max_bins, **bounds)


def _hist(values: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return templates.counts_variances(values, weights, edges)


def sample_templates(cfg: Config, method: str, mass: Hypothesis, nominal: pd.DataFrame,
                     varied: dict[str, pd.DataFrame], edges: np.ndarray) -> list[SampleTemplate]:
    """One template per background sample and one for the signal at ``mass`` (a point),
    with every systematic's variations (a sample a variation does not touch keeps its
    nominal)."""
    groups: dict[str, tuple[bool, np.ndarray]] = {"signal": (True, nominal["label"].to_numpy() == 1)}
    for name in sorted(nominal.loc[nominal["label"] == 0, "sample"].unique()):
        groups[name] = (False, (nominal["sample"] == name).to_numpy() & (nominal["label"] == 0).to_numpy())
    window = window_columns(cfg)
    x = discriminant(nominal, method, mass, window)
    w = nominal["weight"].to_numpy(np.float64)
    codes, samples = pd.factorize(nominal["sample"])
    out = []
    for name, (is_signal, sel) in groups.items():
        counts, variances = _hist(x[sel], w[sel], edges)
        tpl = SampleTemplate(name, counts, variances, is_signal=is_signal)
        names = {str(samples[c]) for c in np.unique(codes[sel])}
        for syst in cfg.limits.systematics:
            if not _applies(cfg, syst, is_signal, names):
                continue
            if syst.type == "lumi":  # a normalisation shared by every sample it acts on
                tpl.factors[syst.name] = (1.0 + float(syst.value), 1.0 - float(syst.value))  # type: ignore[arg-type]
            elif syst.type == "normsys":
                up = float(syst.up)  # type: ignore[arg-type]
                down = float(syst.down) if syst.down is not None else 2.0 - up
                tpl.factors[syst.name] = (up, down)
            elif syst.type in ("weight", "tree"):
                sides = [_side_counts(varied.get(f"{syst.name}__{s}"), method, mass, name,
                                      is_signal, edges, window) for s in ("up", "down")]
                if sides[0] is None:
                    continue
                tpl.variations[syst.name] = (sides[0], sides[1])
        out.append(tpl)
    return out


def _side_counts(table: pd.DataFrame | None, method: str, mass: Hypothesis, name: str,
                 is_signal: bool, edges: np.ndarray,
                 window: list[str] | None = None) -> np.ndarray | None:
    if table is None:
        return None
    sel = (table["label"] == 1) if is_signal else ((table["label"] == 0) & (table["sample"] == name))
    part = table[sel.to_numpy()]
    x = discriminant(part, method, mass, window)
    if x is None:
        return None
    return _hist(x, part["weight"].to_numpy(np.float64), edges)[0]


def _mu_max(cfg: Config, samples: list[SampleTemplate]) -> float:
    """Upper bound of mu: the configured one, or 20 times a counting estimate of the limit,
    wide enough for the +2 sigma edge of the band."""
    if cfg.limits.mu_max:
        return cfg.limits.mu_max
    s = sum(t.counts for t in samples if t.is_signal)
    b = sum(t.counts for t in samples if not t.is_signal)
    ok = (b > 0) & (s > 0)
    if not ok.any():
        return 10.0
    rough = 1.96 / math.sqrt(float(np.sum(s[ok] ** 2 / b[ok])))
    return float(max(1.0, 10 ** math.ceil(math.log10(20 * rough))))


# --- one point ----------------------------------------------------------------------------------

def _nominal_scores(cfg: Config, mass: Hypothesis, model_id: str) -> tuple[pd.DataFrame, str]:
    """The scores of ``pnn evaluate`` at ``mass`` (a point), once its metrics are checked
    current."""
    from pnn.stats.evaluate import metrics_path, scores_path

    names, point = cfg.parameters, points.as_point(mass)
    mpath = metrics_path(cfg.run_dir, point, names)
    fix = f"{cfg.command('evaluate')} {_option(names, point)}"
    meta = read_json(mpath, fix)
    rec = provenance.require(cfg, "evaluate", meta.get(provenance.KEY), f"'{mpath}'",
                             inputs={"model": model_id}, fix=fix)
    spath = scores_path(cfg.run_dir, point, names)
    if not spath.is_file():
        raise PnnError(f"'{spath}' is missing: rerun '{fix}'")
    try:
        return pd.read_parquet(spath), rec["id"]
    except (OSError, ValueError) as exc:
        raise PnnError(f"'{spath}' is damaged ({type(exc).__name__}): rerun '{fix}'") from None


@dataclass
class Prepared:
    """One point and method, ready to fit: its templates and workspace spec."""

    point: tuple[float, ...]
    method: str
    trained: bool
    edges: np.ndarray
    samples: list[SampleTemplate]
    spec: dict
    observations: np.ndarray | None
    xsec_fb: float | None
    seconds: float
    names: list[str] = field(default_factory=lambda: [points.MASS])

    @property
    def mass(self) -> float | None:
        """The mass of a one-parameter search (None with several parameters)."""
        return self.point[0] if len(self.point) == 1 else None


def prepare_mass(cfg: Config, mass: Hypothesis, models: ModelSource, model_id: str,
                 inputs: dict[str, tuple[pd.DataFrame, str]], toy_samples: str | bool,
                 methods: list[str]) -> tuple[list[Prepared], dict]:
    """Templates and workspace specs of every method at ``mass`` (a point), and the
    provenance record its outputs will carry. ``toy_samples``: the toy generator, or False."""
    names, point = cfg.parameters, points.as_point(mass)
    nominal, scores_id = _nominal_scores(cfg, point, model_id)
    reweighted = {f"{s.name}__{side}" for s in cfg.limits.systematics if s.type == "weight"
                  for side in ("up", "down")}
    unique = not nominal.duplicated(["sample", "event_number"]).any()
    extra = {name: (_reweight(nominal, table, point, names) if name in reweighted and unique
                    else score_events(cfg, models.networks(), table, point, toy_samples))
             for name, (table, _) in inputs.items()}
    data = extra.pop("data", None)
    window = window_columns(cfg)
    trained = bool(points.mask(np.asarray(models.trained, dtype=np.float64), point).any())
    unblind = cfg.limits.observed and data is not None
    signal_yield = float(nominal.loc[nominal["label"] == 1, "weight"].sum())
    xsec = signal_yield / cfg.luminosity if cfg.luminosity else None
    out = []
    for method in methods:
        x = discriminant(nominal, method, point, window)
        if x is None:
            continue
        start = time.perf_counter()
        edges = _edges(cfg, method, x, nominal)
        samples = sample_templates(cfg, method, point, nominal, extra, edges)
        bkg = sum(t.counts for t in samples if not t.is_signal)
        if not np.any(np.asarray(bkg) > 0):
            raise PnnError(f"{points.describe(names, point)}: the background template of "
                           f"'{method}' is empty: check the background samples and the selection")
        obs = None
        if unblind:
            dx = discriminant(data, method, point, window)  # type: ignore[arg-type]
            obs = _hist(dx, np.ones(len(dx)), edges)[0] if dx is not None else None
        spec = build_spec(samples, observations=obs, staterror=cfg.limits.staterror,
                          mu_max=_mu_max(cfg, samples))
        out.append(Prepared(point, method, trained, edges, samples, spec, obs, xsec,
                            time.perf_counter() - start, list(names)))
    record = provenance.record(cfg, "limits", {"model": model_id, "scores": scores_id, **{
        f"inputs:{n}": i for n, (_, i) in inputs.items()}})
    return out, record


class ModelSource:
    """The trained points of the model, and its networks loaded (TensorFlow imported) only
    when some events need scoring: with only the nominal scores, limits never load them."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        meta = read_json(self.run_dir / "model" / "metadata.json", "pnn train")
        self.trained = [points.as_point(m) for m in meta.get("masses", [])]
        self._networks: FoldModels | None = None

    def networks(self) -> FoldModels:
        if self._networks is None:
            from pnn.learn.model import FoldModels

            self._networks = FoldModels.load(self.run_dir)
        return self._networks


def fit(spec: dict, observations: np.ndarray | None, cl: float, scan: bool,
        figures: tuple[Prepared, Path, Style] | None = None) -> dict[str, Any]:
    """Every fit of one workspace (run in a worker process): the expected band, the observed
    limit and local significance when unblinded, and the CLs scan for the plot. With
    ``figures`` (the templates, the staging folder of the point and the look), the worker
    also draws the templates and the CLs scan there."""
    start = time.perf_counter()
    band, curve = cls.expected_limits_and_scan(spec, cl, scan_points=8 if scan else 0)
    out: dict[str, Any] = {"band": band, "observed": None, "p0": None, "z": None,
                           "scan": curve or None}
    if observations is not None:
        out["observed"] = cls.observed_limit(spec, observations, cl, guess=band.median)
        out["p0"], out["z"] = cls.local_significance(spec, observations)
        if scan:
            curve["observed"] = cls.observed_cls(spec, curve["mu"], observations)
    out["seconds"] = time.perf_counter() - start
    if figures is not None and out["scan"] is not None:
        prepared, folder, style = figures
        _plots(folder, prepared, out, cl, style)
    return out


def staging(cfg: Config, mass: Hypothesis) -> tuple[contextlib.ExitStack, Staging]:
    """The task lock and staging folder of one point, held until it is published."""
    label = mass_label(mass, cfg.parameters)
    with contextlib.ExitStack() as stack:
        stack.enter_context(task_lock(cfg.run_dir, f"limits-{label}"))
        staged = stack.enter_context(Staging(limits_dir(cfg.run_dir), label))
        return stack.pop_all(), staged
    raise AssertionError("unreachable")


def write_mass(cfg: Config, mass: Hypothesis, prepared: list[Prepared], fits: list[dict],
               record: dict, held: tuple[contextlib.ExitStack, Staging] | None = None
               ) -> list[LimitRow]:
    """Publish one point together: limits.json, the workspaces and the PNN's plots (drawn
    here unless the fit workers drew them into ``held``, the point's lock and staging)."""
    names, point = cfg.parameters, points.as_point(mass)
    label = mass_label(point, names)
    rows = []
    stack, staged = held or staging(cfg, point)
    with stack:
        for p, f in zip(prepared, fits, strict=True):
            band = f["band"]
            values = [band.minus2, band.minus1, band.median, band.plus1, band.plus2]
            xsec = p.xsec_fb
            rows.append(LimitRow(
                point=points.as_dict(names, point), method=p.method, trained=p.trained,
                **dict(zip(KEYS, values, strict=True)), observed=f["observed"], xsec_fb=xsec,
                **{f"{k}_fb": (v * xsec if xsec else None) for k, v in zip(KEYS, values, strict=True)},
                observed_fb=f["observed"] * xsec if f["observed"] is not None and xsec else None,
                p0=f["p0"], significance=f["z"], bins=len(p.edges) - 1, status="ok",
                seconds=p.seconds + f["seconds"]))
            write_json(staged.path(workspace_name(p.method, point, names)), p.spec)
            if f["scan"] is not None and held is None:
                _plots(staged.dir, p, f, cfg.limits.cl, current_style())
        write_json(staged.path(f"{label}/limits.json"),
                   {"rows": [r.record() for r in rows], provenance.KEY: record})
        staged.publish(last=[f"{label}/limits.json"])
    where = points.describe(names, point)
    for r in rows:
        log.info("%s, %s: expected limit on mu %.4g [%.4g, %.4g]", where, r.method,
                 r.expected, r.expected_minus1, r.expected_plus1)
    return rows


def _plots(folder: Path, p: Prepared, f: dict, cl: float, style: Style) -> None:
    """The templates and CLs scan of one point, into ``folder/<label>/``."""
    names = p.names
    label = mass_label(p.point, names)
    where = points.describe(names, p.point)
    title = where + ("" if p.trained else " (not trained on)")
    signal = next(t for t in p.samples if t.is_signal)
    (Path(folder) / label).mkdir(parents=True, exist_ok=True)
    plots.stacked_templates(
        p.edges, {t.name: (t.counts, t.variances) for t in p.samples if not t.is_signal},
        (signal.counts, signal.variances), Path(folder) / label / "templates.png",
        signal_label=f"signal, {where} (mu = 1)", data=p.observations, title=title, style=style)
    scan = f["scan"]
    plots.cls_scan(scan["mu"], scan["median"], Path(folder) / label / "cls.png",
                   bands={k: scan[k] for k in ("minus2", "minus1", "plus1", "plus2")},
                   cls_observed=scan.get("observed"), cl=cl, limit=f["band"].median, title=title,
                   style=style)


# --- the stage ----------------------------------------------------------------------------------

def _evaluated_points(cfg: Config) -> list[tuple[float, ...]]:
    """Every point with an evaluation folder (``evaluate/<label>/metrics.json``)."""
    found = (points.from_label(p.parent.name, cfg.parameters)
             for p in (cfg.run_dir / "evaluate").glob("*/metrics.json"))
    return sorted({p for p in found if p is not None and all(np.isfinite(p))})


def _among(point: tuple[float, ...], pool: list[tuple[float, ...]]) -> bool:
    return bool(pool) and bool(points.mask(np.asarray(pool, dtype=np.float64), point).any())


def limit_masses(cfg: Config) -> list[Hypothesis]:
    """Masses (points, with several parameters) with evaluation outputs, restricted to
    ``limits.masses`` / ``limits.points`` when set."""
    names = cfg.parameters
    found = _evaluated_points(cfg)
    wanted = cfg.limit_points()
    if wanted:
        missing = [w for w in wanted if not _among(w, found)]
        if missing:
            m = missing[0]
            where = f"{m[0]:g} GeV" if len(names) == 1 else points.describe(names, m)
            raise PnnError(f"no evaluation at {where}: run "
                           f"'{cfg.command('evaluate')} {_option(names, m)}' first")
        return [_public(w) for w in wanted]
    if not found:
        what = "mass" if len(names) == 1 else "point"
        raise PnnError(f"no evaluated {what}: run '{cfg.command('evaluate')}' first")
    return [_public(f) for f in found]


def limit_points(cfg: Config) -> list[tuple[float, ...]]:
    """:func:`limit_masses` as points (tuples), whatever the number of parameters."""
    return [points.as_point(m) for m in limit_masses(cfg)]


def run_limits(cfg: Config, masses: list[Hypothesis] | None = None,
               methods: list[str] | None = None) -> list[LimitRow]:
    """Limits for every point (or ``masses``: floats for a lone mass, tuples for several
    parameters), then the collected table and the Brazil plots.

    The main process scores and builds templates while ``limits.jobs`` worker processes fit;
    each point is published as soon as all its methods are fitted. A point that fails (an
    empty background template, say) is reported and the others still finish.
    """
    from pnn.learn.train import require_model

    names = cfg.parameters
    model_id = require_model(cfg, check_files=False)
    models = ModelSource(cfg.run_dir)
    meta = read_json(cfg.run_dir / "events.json", cfg.command("ingest"))
    toy_samples = meta.get("toy") or False  # the generator of an embedded toy
    methods = [m for m in (methods or cfg.limits.methods) if m != "optimal" or toy_samples]
    targets = [points.as_point(m) for m in masses] if masses else limit_points(cfg)
    sweep(limits_dir(cfg.run_dir))
    inputs = read_inputs(cfg)
    rows: list[LimitRow] = []
    failed: list[tuple[tuple[float, ...], str]] = []
    pending: dict[tuple[float, ...], tuple[list[Prepared], dict, list[Future],
                                           tuple[contextlib.ExitStack, Staging]]] = {}
    alone = len(targets) == 1
    style = current_style()
    with contextlib.ExitStack() as held, \
            process_pool(min(cfg.limits.jobs, len(targets) * len(methods)), blas_threads=1,
                         stage="limits") as pool:
        for i, pt in enumerate(targets, 1):
            log.info("templates at %s (%d/%d)", points.describe(names, pt), i, len(targets))
            try:
                prepared, record = prepare_mass(cfg, pt, models, model_id, inputs, toy_samples,
                                                methods)
            except PnnError as exc:
                _failed(pt, exc, failed, alone=alone, names=names)
                continue
            # the workers fit and draw into the point's staging folder, held here until published
            stack, staged = staging(cfg, pt)
            held.push(stack.__exit__)
            futures = [pool.submit(fit, p.spec, p.observations, cfg.limits.cl, p.method == "pnn",
                                   (p, staged.dir, style) if p.method == "pnn" else None)
                       for p in prepared]
            pending[pt] = (prepared, record, futures, (stack, staged))
        for pt, (prepared, record, futures, point_held) in pending.items():
            try:
                fits = [fut.result() for fut in futures]
            except PnnError as exc:
                point_held[0].close()
                _failed(pt, exc, failed, alone=alone, names=names)
                continue
            rows += write_mass(cfg, _public(pt), prepared, fits, record, point_held)
        if masses is None:
            collect(cfg, pool)
    if failed:
        first, why = failed[0]
        if len(names) == 1:
            raise PnnError(f"limits failed at {len(failed)} mass(es), first {first[0]:g} GeV: "
                           f"{why}")
        raise PnnError(f"limits failed at {len(failed)} point(s), first "
                       f"{points.describe(names, first)}: {why}")
    return rows


def _failed(mass: Hypothesis, exc: PnnError, failed: list[tuple[tuple[float, ...], str]], *,
            alone: bool, names: list[str] | None = None) -> None:
    """A point that fails stops the command when it is the only one; otherwise it is logged
    and the other points go on (the command still ends with an error naming it)."""
    if alone:
        raise exc
    point = points.as_point(mass)
    log.error("%s: %s", points.describe(_names(names), point), exc)
    failed.append((point, str(exc)))


def _key(row: dict, names: list[str]) -> tuple[float, ...]:
    return tuple(float(row[n]) for n in names)


def collected(cfg: Config) -> list[dict]:
    """Every per-point limits.json, each checked to come from the current model and settings."""
    from pnn.learn.train import require_model

    names = cfg.parameters
    model_id = require_model(cfg, check_files=False)
    rows = []
    for path in sorted(limits_dir(cfg.run_dir).glob("*/limits.json")):
        if points.from_label(path.parent.name, names) is None:
            continue
        meta = read_json(path, cfg.command("limits"))
        provenance.require(cfg, "limits", meta.get(provenance.KEY), f"'{path}'",
                           inputs={"model": model_id})
        rows += meta["rows"]
    wanted = cfg.limit_points()
    if wanted:
        rows = [r for r in rows if _among(_key(r, names), wanted)]
    return sorted(rows, key=lambda r: (_key(r, names), METHODS.index(r["method"])))


COLUMNS = ["mass", "method", "trained", *KEYS, "observed", "xsec_fb", *(f"{k}_fb" for k in KEYS),
           "observed_fb", "p0", "significance", "bins", "status"]


def columns(names: list[str] | None = None) -> list[str]:
    """The columns of limits.csv/json: one per parameter ('mass' alone), then the limits."""
    return [*_names(names), *COLUMNS[1:]]


def parameter_columns(table: pd.DataFrame) -> list[str]:
    """The parameter columns of a limits table (every column before 'method')."""
    cols = list(table.columns)
    return cols[:cols.index("method")]


def limits_table(cfg: Config) -> pd.DataFrame:
    """Every point's limits (one row per point and method), checked current."""
    rows = collected(cfg)
    if not rows:
        raise PnnError(f"no limits in '{limits_dir(cfg.run_dir)}': run '{cfg.command('limits')}'")
    return pd.DataFrame(rows)[columns(cfg.parameters)]


def collect(cfg: Config, pool: Executor | None = None) -> pd.DataFrame:
    """limits.json and limits.csv (one row per point and method) and the Brazil plots: one
    for a lone mass, one per slice of the other parameters (against the first) for several,
    drawn by the workers of ``pool`` when given."""
    table = limits_table(cfg)
    names = cfg.parameters
    out = limits_dir(cfg.run_dir)
    with task_lock(cfg.run_dir, "limits-collect"), Staging(out, "collect") as staged:
        table.to_csv(staged.path("limits.csv"), index=False)
        records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                   for r in table.astype(object).to_dict(orient="records")]
        write_json(staged.path("limits.json"), records)
        style = current_style()
        drawn = []
        for unit, suffix in (("mu", ""), ("fb", "_fb")):
            if unit == "fb" and table["xsec_fb"].isna().all():
                continue
            for tag, title, part in _slices(table, names):
                args = (part, staged.path(f"brazil{tag}{suffix}.png"), unit, suffix, names[0],
                        title, style)
                if pool is None:
                    _brazil(*args)
                else:
                    drawn.append(pool.submit(_brazil, *args))
        for fut in drawn:
            fut.result()
        write_json(staged.path("limits.provenance.json"), provenance.record(cfg, "limits"))
        staged.publish(last=["limits.json"])
    return table


def _slices(table: pd.DataFrame, names: list[str]) -> list[tuple[str, str, pd.DataFrame]]:
    """(file tag, title, rows) of each Brazil plot: the whole table for one parameter; with
    several, the rows of each value of the other parameters, drawn against the first
    (``_mY300`` and 'mY = 300 GeV')."""
    if len(names) == 1:
        return [("", "", table)]
    rest = names[1:]
    out = []
    for values, part in table.groupby(rest, sort=True):
        fixed = tuple(float(v) for v in (values if isinstance(values, tuple) else (values,)))
        out.append((f"_{points.label(rest, fixed)}", points.describe(rest, fixed), part))
    return out


def comparison(table: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """One row per point: the expected median limit of each method, and the PNN's limit over
    the window's and the optimum's (below 1: the PNN sets the stronger limit)."""
    names = list(names or parameter_columns(table))
    wide = table.pivot(index=names, columns="method", values="expected")
    index = wide.index
    out = index.to_frame(index=False) if isinstance(index, pd.MultiIndex) else \
        pd.DataFrame({names[0]: index.to_numpy()})
    out["trained"] = (table[table["method"] == "pnn"].set_index(names).reindex(index)["trained"]
                      .astype(bool).to_numpy())
    for m in METHODS:
        if m in wide:
            out[f"expected_{m}"] = wide[m].to_numpy()
    if "pnn" in wide:
        for m in ("window", "optimal"):
            if m in wide:
                out[f"pnn/{m}"] = (wide["pnn"] / wide[m]).to_numpy()
    return out.reset_index(drop=True)


def _brazil(table: pd.DataFrame, path: Path, unit: str, suffix: str, x: str, title: str,
            style: Style) -> None:
    pnn_rows = table[table["method"] == "pnn"].sort_values(x)
    if pnn_rows.empty:
        return
    masses = pnn_rows[x].to_numpy(np.float64)
    band = {k.replace("expected_", "").replace("expected", "median"): pnn_rows[k + suffix]
            .to_numpy(np.float64) for k in KEYS}
    others = {}
    for method in ("window", "optimal"):
        rows = table[table["method"] == method].set_index(x)
        if not rows.empty:
            others[method] = rows.reindex(masses)["expected" + suffix].to_numpy(np.float64)
    observed = pnn_rows["observed" + suffix]
    plots.brazil(masses, others, band, pnn_rows["trained"].to_numpy(bool), path,
                 observed=None if observed.isna().all() else observed.to_numpy(np.float64),
                 unit=unit, title=title, style=style)


def summary_columns(cfg: Config) -> dict[Hypothesis, dict[str, float]]:
    """Expected median limits per point and method for the report, when current limits
    exist: keyed by mass (a float) for one parameter, by point (a tuple) for several."""
    if not (limits_dir(cfg.run_dir) / "limits.json").is_file():
        return {}
    try:
        rows = collected(cfg)
    except PnnError as exc:
        log.warning("limits are not shown in the summary: %s", exc)
        return {}
    names = cfg.parameters
    out: dict[Hypothesis, dict[str, float]] = {}
    for r in rows:
        out.setdefault(_public(_key(r, names)), {})[f"limit_{r['method']}"] = r["expected"]
    return out
