"""The ``pnn`` command line: one verb per stage, in pipeline order.

Heavy libraries (TensorFlow, uproot, matplotlib) are imported inside the verbs that need
them, so ``pnn --help`` answers at once.
"""

from __future__ import annotations

import errno
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from pnn.batch.jobs import STAGES
from pnn.core.atomic import write_error
from pnn.core.config import Config, load_config
from pnn.core.errors import PnnError

log = logging.getLogger(__name__)

config_arg = click.argument("config", type=click.Path(dir_okay=False))
output_opt = click.option(
    "--output-dir", "-o", default=None, metavar="DIR",
    help="Parent of the run directory (overrides 'output_dir' in the config).",
)


def _load(config: str, output_dir: str | None) -> Config:
    """The config, its ``plots`` section made the style of every plot this command draws."""
    from pnn.show import style

    cfg = load_config(config, {"output_dir": output_dir})
    style.use(style.Style.of(cfg))
    return cfg


_SIGNALS: list[int] = []  # signals received by this command, in order


def _interrupt(signum: int, frame: Any) -> None:
    """SIGINT (Ctrl-C) and SIGTERM (a scheduler's kill, a timeout) unwind as KeyboardInterrupt,
    so every staged output and temporary file is removed on the way out."""
    _SIGNALS.append(signum)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _interrupted(term: bool) -> None:
    click.echo(f"pnn: {'terminated' if term else 'interrupted'}; no partial output was kept",
               err=True)
    sys.exit(143 if term else 130)


def _stage(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a PnnError into one line on stderr and exit code 2, Ctrl-C or SIGTERM into one line
    and exit code 130 or 143, and an unwritable or full output folder into one line.

    Outputs are staged under temporary names, so an interrupted stage leaves none behind. A
    signal that lands inside a library's C code can surface as another exception there; once
    a signal was received, any exception ends the command as interrupted.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)
            signal.signal(signal.SIGINT, _interrupt)
        try:
            return func(*args, **kwargs)
        except PnnError as exc:
            if _SIGNALS:
                _interrupted(_SIGNALS[0] == signal.SIGTERM)
            click.echo(f"pnn: error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            _interrupted(str(exc) == "SIGTERM")
        except OSError as exc:
            if _SIGNALS:
                _interrupted(_SIGNALS[0] == signal.SIGTERM)
            if exc.errno not in (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT):
                raise
            click.echo(f"pnn: error: {write_error(Path(exc.filename or '.'), exc)}", err=True)
            sys.exit(2)
        except Exception:
            if _SIGNALS:
                _interrupted(_SIGNALS[0] == signal.SIGTERM)
            raise

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True,
              help="More log output, with TensorFlow's own start-up lines (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="pnn")
def main(verbose: int, quiet: bool) -> None:
    """Parametrised neural networks for resonance searches.

    Stages, in order: generate (toy ntuples) -> ingest -> train -> evaluate -> report;
    'run' runs them all. Then 'export' writes ONNX models, 'apply' writes scores back into
    ntuples and 'study' validates the physics; 'submit' turns a stage into batch jobs and
    'status' follows them. Every verb takes the YAML config as its argument.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("matplotlib", "PIL", "absl", "h5py", "tensorflow", "pyhf"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    if not verbose:  # TensorFlow's native start-up lines only with -v
        from pnn.core.quiet import silence_native_logs

        silence_native_logs()


def do_generate(cfg: Config, objects: bool = False) -> None:
    from pnn.io import toy

    gen = cfg.generate
    if gen is None:
        raise PnnError("the config has no 'generate' section: add one to make toy ntuples")
    if gen.toy == "xyh":
        from pnn.io import toy2d

        grid = [tuple(p) for p in gen.points] if gen.points else toy2d.default_grid()
        off = ([tuple(p) for p in gen.offgrid_points] if gen.offgrid_points is not None
               else toy2d.default_offgrid())
        paths = toy2d.write(gen.output, [*grid, *off], gen.signal_events, gen.background_events,
                            gen.luminosity, cfg.seed)
        click.echo(f"wrote {paths['signal']} ({len(grid)} grid and {len(off)} off-grid points) "
                   f"and {paths['background']}")
        return
    paths = toy.write(gen.output, gen.masses + gen.offgrid_masses, gen.signal_events,
                      gen.background_events, gen.luminosity, cfg.seed, objects or gen.objects,
                      systematics=gen.systematics, jes=gen.jes, data=gen.data,
                      data_seed=gen.data_seed, inject_mass=gen.inject_mass,
                      inject_xsec_fb=gen.inject_xsec_fb)
    click.echo(f"wrote {paths['signal']} and {paths['background']}")
    if gen.systematics:
        click.echo(f"  with <tree>__1up/__1down variations (jes {gen.jes:g}) and "
                   "weight_scale_up/_down on the backgrounds")
    if "data" in paths:
        injected = "" if gen.inject_mass is None else f", signal injected at {gen.inject_mass:g} GeV"
        click.echo(f"wrote pseudo-data to {paths['data']} (tree 'data', seed {gen.data_seed}{injected})")


def do_ingest(cfg: Config, shard: tuple[int, int] | None = None) -> None:
    from pnn.io import ingest

    res = ingest.ingest(cfg, shard)
    click.echo(f"wrote {res.events} events from {len(res.samples)} samples to {res.path}")


def _shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        raise PnnError(f"--shard '{value}': write it as I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise PnnError(f"--shard '{value}': need 0 <= I < N")
    return index, count


def do_train(cfg: Config, folds: tuple[int, ...] = (), jobs: int | None = None) -> None:
    from pnn.core.workers import available_cores, warm_workers

    jobs = jobs or available_cores()
    if min(jobs, len(folds) or cfg.preprocessing.folds) > 1:  # fold workers: imports start now
        warm_workers("train")
    from pnn.io import ingest
    from pnn.learn import train

    events, meta = ingest.load_events(cfg)
    res = train.train(cfg, events, list(folds) or None, events_id=meta["id"], jobs=jobs)
    for f in res.folds:
        click.echo(f"fold {f.fold}: {f.epochs_run} epochs, best {f.best_epoch} "
                   f"(val loss {f.best_val_loss:.5f}), {f.seconds:.0f} s")
    click.echo(f"models in {res.model_dir}")


def do_inspect(cfg: Config) -> None:
    from pnn.stats import inspect

    res = inspect.inspect(cfg)
    best = res.separation.sort_values("separation", ascending=False).head(1)
    top = "".join(f", best separation {r.separation:.3f} ({r.feature} at "
                  f"{r.mass if isinstance(r.mass, str) else f'{r.mass:g} GeV'})"
                  for r in best.itertuples())
    click.echo(f"wrote {len(res.plots)} input plots to {res.directory}{top}")


def hypotheses(cfg: Config, masses: tuple[float, ...] = (), point_texts: tuple[str, ...] = ()
               ) -> list:
    """The points asked for on the command line: masses (``--mass``) for a lone mass,
    tuples (``--point mX=1000,mY=300``) for several parameters."""
    from pnn.core import points

    names = cfg.parameters
    parsed = points.requested(names, masses, point_texts)
    if len(names) == 1:
        return sorted({p[0] for p in parsed})
    return sorted(set(parsed))


def do_evaluate(cfg: Config, masses: tuple[float, ...] = (),
                allow_extrapolation: bool | None = None, point_texts: tuple[str, ...] = ()
                ) -> None:
    from pnn.core import points
    from pnn.core.workers import available_cores, warm_workers

    wanted = hypotheses(cfg, masses, point_texts)
    if min(cfg.evaluation.jobs, available_cores(), len(wanted) or 2) > 1:  # point workers
        warm_workers("evaluate")
    from pnn.io import ingest
    from pnn.stats import evaluate

    events, meta = ingest.load_events(cfg, columns=evaluate.event_columns(cfg))
    results = evaluate.evaluate(cfg, events, meta, wanted or None, allow_extrapolation)
    for r in results:
        p = r.methods["pnn"]
        where = points.describe(cfg.parameters, tuple(r.point[n] for n in cfg.parameters))
        click.echo(f"{where}: AUC {p.auc:.4f}, Z {p.z:.3f}")


def do_report(cfg: Config) -> None:
    from pnn.stats import report

    rep = report.report(cfg)
    click.echo(rep.markdown)
    for w in rep.warnings:
        click.echo(f"warning: {w}")
    click.echo(f"wrote {rep.paths['json']}, {rep.paths['csv']}, {rep.paths['plot']} and "
               f"{rep.paths['html']}")


def do_limits(cfg: Config, masses: tuple[float, ...] = (), methods: tuple[str, ...] = (),
              collect_only: bool = False, point_texts: tuple[str, ...] = ()) -> None:
    from pnn.core import points
    from pnn.stats import limits

    wanted = hypotheses(cfg, masses, point_texts)
    if collect_only:
        table = limits.collect(cfg)
    else:
        limits.run_limits(cfg, wanted or None, list(methods) or None)
        if wanted:
            names = cfg.parameters
            for m in wanted:
                where = limits.limits_dir(cfg.run_dir) / limits.mass_label(m, names)
                click.echo(f"wrote {where}" if len(names) == 1 else
                           f"{points.describe(names, points.as_point(m))}: wrote {where}")
            return
        table = limits.limits_table(cfg)  # collected by run_limits
    from pnn.stats.report import markdown

    click.echo(markdown(limits.comparison(table)))
    click.echo(f"wrote {limits.limits_dir(cfg.run_dir) / 'limits.json'}")


def do_export(cfg: Config) -> None:
    from pnn.deploy import export

    res = export.export(cfg)
    click.echo(f"wrote {len(res.models)} ONNX models to {res.directory}, described in {res.sidecar}")


@main.command()
@config_arg
@output_opt
@click.option("--objects", is_flag=True,
              help="Also write NanoAOD-like jagged jets: nJet, Jet_pt[], Jet_eta[], Jet_phi[], Jet_btag[].")
@_stage
def generate(config: str, output_dir: str | None, objects: bool) -> None:
    """Write the embedded toy ntuples (one tree per mass point and per background)."""
    do_generate(_load(config, output_dir), objects)


@main.command()
@config_arg
@output_opt
@click.option("--shard", default=None, metavar="I/N",
              help="Read only share I of N of the trees, into events.d/shard-I-of-N.parquet.")
@click.option("--merge", is_flag=True,
              help="Join the complete set of shards into events.parquet (each checked current).")
@_stage
def ingest(config: str, output_dir: str | None, shard: str | None, merge: bool) -> None:
    """Read the samples' trees into one events table (Parquet), or one shard of it."""
    cfg = _load(config, output_dir)
    if merge:
        if shard is not None:
            raise PnnError("--merge joins every shard: drop --shard")
        from pnn.io import ingest as pnn_ingest

        res = pnn_ingest.merge_shards(cfg)
        click.echo(f"merged {res.events} events from the shards into {res.path}")
        return
    do_ingest(cfg, _shard(shard))


@main.command()
@config_arg
@output_opt
@click.option("--fold", "folds", type=int, multiple=True, help="Train only this fold (repeatable).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Folds trained at once, each in its own process with a share of the cores. "
                   "Default: one per core, at most one per fold.")
@_stage
def train(config: str, output_dir: str | None, folds: tuple[int, ...], jobs: int | None) -> None:
    """Train one parametrised network per fold."""
    do_train(_load(config, output_dir), folds, jobs)


@main.command("inspect")
@config_arg
@output_opt
@_stage
def inspect_inputs(config: str, output_dir: str | None) -> None:
    """Input diagnostics: feature distributions (raw and scaled), correlations, separation."""
    do_inspect(_load(config, output_dir))


@main.command()
@config_arg
@output_opt
@click.option("--mass", "masses", type=float, multiple=True,
              help="Evaluate only this mass in GeV (repeatable). Default: every signal mass.")
@click.option("--point", "point_texts", multiple=True,
              help="Evaluate only this point, e.g. mX=1000,mY=300 (repeatable; several "
                   "parameters). Default: every signal point.")
@click.option("--allow-extrapolation", is_flag=True, default=None,
              help="Allow masses outside the trained range (points outside the trained hull).")
@_stage
def evaluate(config: str, output_dir: str | None, masses: tuple[float, ...],
             point_texts: tuple[str, ...], allow_extrapolation: bool | None) -> None:
    """Per-mass (per-point) AUC, background efficiencies, Z, plots and metrics.json."""
    do_evaluate(_load(config, output_dir), masses, allow_extrapolation, point_texts)


@main.command()
@config_arg
@output_opt
@_stage
def report(config: str, output_dir: str | None) -> None:
    """Collect every mass into summary.csv/json, print the table, plot AUC and Z."""
    do_report(_load(config, output_dir))


@main.command("limits")
@config_arg
@output_opt
@click.option("--mass", "masses", type=float, multiple=True,
              help="Only this mass (repeatable); the collected table is then left to --collect.")
@click.option("--point", "point_texts", multiple=True,
              help="Only this point, e.g. mX=1000,mY=300 or mX1000_mY300 (repeatable; several "
                   "parameters); the collected table is then left to --collect.")
@click.option("--method", "methods", type=click.Choice(["pnn", "window", "optimal"]), multiple=True,
              help="Only this method (repeatable; default: limits.methods).")
@click.option("--collect", "collect_only", is_flag=True,
              help="Only collect the per-mass limits into limits.json/.csv and the Brazil plots.")
@_stage
def limits_verb(config: str, output_dir: str | None, masses: tuple[float, ...],
                point_texts: tuple[str, ...], methods: tuple[str, ...], collect_only: bool) -> None:
    """Binned templates, HistFactory workspaces and 95% CL limits per mass (per point with
    several parameters; blinded by default)."""
    do_limits(_load(config, output_dir), masses, methods, collect_only, point_texts)


@main.command("export")
@config_arg
@output_opt
@_stage
def export_onnx(config: str, output_dir: str | None) -> None:
    """Write the fold models as ONNX (input scaling inside) and a JSON sidecar for C++ use."""
    do_export(_load(config, output_dir))


@main.command("tune")
@config_arg
@output_opt
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes on this machine (default: tune.workers).")
@click.option("--worker", type=click.IntRange(min=0), default=None, metavar="I",
              help="Run only worker I in this process and do not collect (batch jobs).")
@click.option("--collect", "collect_only", is_flag=True,
              help="Only write trials.csv, best.yaml and the plots of a finished study.")
@click.option("--fresh", is_flag=True,
              help="Remove the journal and outputs of an earlier search, then start.")
@_stage
def tune_verb(config: str, output_dir: str | None, workers: int | None, worker: int | None,
              collect_only: bool, fresh: bool) -> None:
    """Search the training settings with Optuna (tune: section), then write best.yaml.

    Workers share one study in <run>/tune/journal.log, so a rerun resumes it; the first
    trial is the config's own settings.
    """
    from pnn.learn import tune as pnn_tune

    cfg = _load(config, output_dir)
    t = pnn_tune.settings(cfg)
    if sum((workers is not None, worker is not None, collect_only)) > 1:
        raise PnnError("--workers, --worker and --collect exclude each other: give one")
    if fresh:
        if worker is not None or collect_only:
            raise PnnError("--fresh starts a whole search: drop --worker/--collect")
        pnn_tune.start_afresh(cfg)
    if not collect_only:
        from pnn.io import ingest

        ingest.events_identity(cfg)  # a missing or stale events table fails here, once
        pnn_tune.load_study(cfg)  # and so does a journal of another config
        if worker is not None:
            res = pnn_tune.run_worker(cfg, worker)
            click.echo(f"worker {worker}: ran {res.trials_run} trial(s)")
            status = pnn_tune.study_status(cfg)
            click.echo(status.line if status else "")
            return
        pnn_tune.run_local(cfg, workers or t.workers)
    res = pnn_tune.collect(cfg)
    click.echo(f"best trial {res.best_number}: {t.objective} {res.best_value:.6g}"
               + ("" if res.default_value is None else
                  f" (the config's own settings: {res.default_value:.6g})"))
    click.echo("  " + ", ".join(f"{k}: {v}" for k, v in res.best_values.items()))
    click.echo("wrote " + ", ".join(str(p) for p in res.paths))


@main.group()
def study() -> None:
    """Physics validation: baselines, interpolation, detuning, feature importance, conditioning.

    Results go to <run>/study/: tables (CSV, JSON), plots and study.md. Networks already
    trained with the same config are reused, so an interrupted study resumes.
    """


jobs_opt = click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
                        help="Networks trained at once (default: study.jobs in the config).")


def _run_study(config: str, output_dir: str | None, which: str, jobs: int | None) -> None:
    from pnn.validate import study as pnn_study

    res = pnn_study.run_study(_load(config, output_dir), which, jobs)
    for line in res.conclusions:
        click.echo(line)
    click.echo("wrote " + ", ".join(str(p) for p in res.paths))


def _train_study(config: str, output_dir: str | None, kind: str, masses: tuple,
                 jobs: int | None) -> None:
    from pnn.core import points
    from pnn.validate import study as pnn_study

    cfg = _load(config, output_dir)
    wanted = [points.parse(str(m), cfg.parameters) for m in masses]
    names = pnn_study.train_some(cfg, kind, wanted, jobs)
    click.echo(f"trained {len(names)} {kind} networks" + (f": {', '.join(names)}" if names else
                                                          " (all were already trained)"))


@study.command("interpolation")
@config_arg
@output_opt
@click.option("--holdout", "holdouts", multiple=True,
              help="Only train the PNN with this mass (or point: mX=1000,mY=300, or its name "
                   "mX1000_mY300) held out (repeatable), for batch jobs.")
@jobs_opt
@_stage
def study_interpolation(config: str, output_dir: str | None, holdouts: tuple[str, ...],
                        jobs: int | None) -> None:
    """Leave each interior mass (point) out, compare with the full PNN and every baseline."""
    if holdouts:
        _train_study(config, output_dir, "holdout", holdouts, jobs)
    else:
        _run_study(config, output_dir, "interpolation", jobs)


@study.command("dedicated")
@config_arg
@output_opt
@click.option("--mass", "masses", type=float, multiple=True,
              help="Only train the dedicated network of this mass (repeatable).")
@jobs_opt
@_stage
def study_dedicated(config: str, output_dir: str | None, masses: tuple[float, ...],
                    jobs: int | None) -> None:
    """Train the dedicated networks (one per trained mass, no mass input)."""
    _train_study(config, output_dir, "dedicated", masses, jobs)


@study.command("detuning")
@config_arg
@output_opt
@_stage
def study_detuning(config: str, output_dir: str | None) -> None:
    """Z against the hypothesised mass for signal at each true mass."""
    _run_study(config, output_dir, "detuning", None)


@study.command("importance")
@config_arg
@output_opt
@_stage
def study_importance(config: str, output_dir: str | None) -> None:
    """Permutation importance of each feature (drop in AUC), per mass."""
    _run_study(config, output_dir, "importance", None)


@study.command("conditioning")
@config_arg
@output_opt
@jobs_opt
@_stage
def study_conditioning(config: str, output_dir: str | None, jobs: int | None) -> None:
    """Train the PNN with the other conditioning (concat <-> affine), compare both at every point."""
    _run_study(config, output_dir, "conditioning", jobs)


@study.command("all")
@config_arg
@output_opt
@jobs_opt
@_stage
def study_all(config: str, output_dir: str | None, jobs: int | None) -> None:
    """Every study, then study.md with one table per study and its conclusions."""
    _run_study(config, output_dir, "all", jobs)


def _split_list(kind: type) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], tuple]:
    """Repeatable option whose values may also be comma-separated lists: --mass 500,750."""

    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple:
        try:
            return tuple(kind(v) for value in values for v in value.split(",") if v.strip())
        except ValueError:
            raise click.BadParameter(f"expected {kind.__name__} values, got {values}") from None

    return parse


STAGE_NAMES = tuple(STAGES)
CLUSTER_KEYS = ("partition", "account", "time", "memory", "cpus", "max_concurrent", "job_flavour",
                "setup", "files_per_job")


@main.command()
@config_arg
@click.option("--input", "-i", "inputs", multiple=True, required=True, metavar="FILE",
              help="ROOT file or glob to score (repeatable).")
@click.option("--mass", "masses", type=float, multiple=True,
              help="Mass hypothesis in GeV (repeatable), for a model with one parameter. "
                   "Default: every trained point.")
@click.option("--point", "point_texts", multiple=True, metavar="POINT",
              help="Signal point in GeV (repeatable): mX=1000,mY=300, or 1000,300 in the order "
                   "of the config's parameters. Default: every trained point.")
@click.option("--tree", "trees", multiple=True,
              help="Tree to score (repeatable). Default: every tree with the needed branches.")
@click.option("--output-dir", "-o", default=None, metavar="DIR",
              help="Where the <input>_pnn.root files go. Default: <run dir>/apply.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option("--allow-extrapolation", is_flag=True,
              help="Allow points outside the trained range (one parameter) or the convex hull "
                   "of the trained points (several), with a warning.")
@click.option("--keep-going", is_flag=True,
              help="Score the good inputs when some cannot be read; list the failures, exit 1.")
@_stage
def apply(config: str, inputs: tuple[str, ...], masses: tuple[float, ...],
          point_texts: tuple[str, ...], trees: tuple[str, ...], output_dir: str | None,
          force: bool, allow_extrapolation: bool, keep_going: bool) -> None:
    """Write per-point scores as friend trees entry-aligned with the input ntuples."""
    from pnn.core import points
    from pnn.deploy import apply as pnn_apply

    cfg = load_config(config)
    points.requested(cfg.parameters, masses, ())
    wanted = []
    for text in point_texts:
        try:
            wanted.append(points.parse(text, cfg.parameters))
        except PnnError as exc:  # "point '...': ..." -> "--point '...': ..."
            raise PnnError(f"--{exc}") from None
    results = pnn_apply.apply(cfg, list(inputs), list(masses) or None, output_dir, force,
                              list(trees) or None, allow_extrapolation, keep_going,
                              wanted or None)
    failed = [r for r in results if r.error]
    for r in results:
        if not r.error:
            click.echo(f"{r.input} -> {r.output}: " + ", ".join(
                f"{t} ({n} entries)" for t, n in r.trees.items()))
    for r in failed:
        click.echo(f"pnn: failed: {r.error}", err=True)
    if failed:
        click.echo(f"pnn: error: {len(failed)} of {len(results)} inputs failed (listed above); "
                   "the others were scored", err=True)
        sys.exit(1)


@main.command()
@config_arg
@click.argument("stage", type=click.Choice(STAGE_NAMES))
@output_opt
@click.option("--scheduler", type=click.Choice(["slurm", "htcondor", "local"]), default=None,
              help="Where the jobs run (default: cluster.scheduler of the config).")
@click.option("--mass", "--masses", "masses", multiple=True, callback=_split_list(float),
              help="Only these masses in GeV (repeatable or comma-separated).")
@click.option("--point", "point_texts", multiple=True,
              help="Only this signal point, e.g. mX=1000,mY=300 or mX1000_mY300 (repeatable; "
                   "evaluate, limits).")
@click.option("--fold", "--folds", "folds", multiple=True, callback=_split_list(int),
              help="Only these folds (train; repeatable or comma-separated).")
@click.option("--files", "files", multiple=True, help="Input ntuples for apply (repeatable, globs allowed).")
@click.option("--files-per-job", type=int, default=None, help="Input files per job (ingest, apply).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker jobs sharing the study (tune; default: tune.workers).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--account", default=None, help="Slurm account / HTCondor accounting group.")
@click.option("--time", "time_", default=None, help="Wall time per task, [D-]HH:MM:SS.")
@click.option("--memory", default=None, help="Memory per task, e.g. 2G.")
@click.option("--cpus", type=int, default=None, help="CPUs per task.")
@click.option("--max-concurrent", type=int, default=None, help="Tasks running at once.")
@click.option("--job-flavour", default=None, help="HTCondor +JobFlavour.")
@click.option("--directive", "directives", multiple=True,
              help="Extra '#SBATCH' option or HTCondor submit line (repeatable).")
@click.option("--setup", default=None, help="Shell line run before every task.")
@click.option("--dry-run", is_flag=True,
              help="Write every file under <job dir>/dry-run and print what would be submitted.")
@click.option("--force", is_flag=True, help="Run the selected tasks again even if they are done.")
@_stage
def submit(config: str, stage: str, output_dir: str | None, scheduler: str | None,
           masses: tuple[float, ...], point_texts: tuple[str, ...], folds: tuple[int, ...],
           files: tuple[str, ...],
           files_per_job: int | None, partition: str | None, account: str | None, time_: str | None,
           memory: str | None, cpus: int | None, max_concurrent: int | None, job_flavour: str | None,
           directives: tuple[str, ...], setup: str | None, dry_run: bool, force: bool,
           workers: int | None) -> None:
    """Split a stage into batch jobs (one per fold, mass, point or file group) and submit them.

    Finished tasks are skipped, so submitting again after a failure redoes only what failed;
    --force runs them again. A dry run changes nothing that 'pnn status' or queued jobs read.
    """
    from pnn.batch import jobs, schedulers

    cfg = _load(config, output_dir)
    given = dict(zip(CLUSTER_KEYS, (partition, account, time_, memory, cpus, max_concurrent,
                                    job_flavour, setup, files_per_job), strict=True))
    try:
        res = cfg.cluster.model_validate({**cfg.cluster.model_dump(),
                                          **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as err:
        first = err.errors()[0]
        raise PnnError(f"option --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    scheduler = scheduler or res.scheduler
    on_command_line = tuple(k for k, v in given.items() if v is not None)
    schedulers.check_resources(res, config=config, from_command_line=on_command_line)
    if directives:  # the config's own lines passed above, so a bad line here is an option
        key = "slurm_directives" if scheduler == "slurm" else "htcondor_commands"
        res = res.model_copy(update={key: [*getattr(res, key), *directives]})
        schedulers.check_resources(res, config=config, from_command_line=(*on_command_line, key))
    if workers is not None and stage != "tune":
        raise PnnError("--workers goes with stage 'tune'")
    if point_texts and stage not in ("evaluate", "limits", "interpolation"):
        raise PnnError("--point goes with stages 'evaluate', 'limits' and 'interpolation'")
    sel = jobs.Selection(masses, folds, files, res.files_per_job, workers, point_texts)
    if not dry_run:  # a dry run may be looked at before the inputs exist
        jobs.check_inputs(cfg, stage)
    jd, spec = jobs.prepare(cfg, config, stage, sel, output_dir, res.setup, dry_run=dry_run, force=force)
    click.echo(f"{len(spec['tasks'])} task(s) of '{stage}' in {jd.files(dry_run)}/tasks.txt")
    messages, code = schedulers.submit(spec, jd, res, scheduler, dry_run, force)
    for m in messages:
        click.echo(m)
    if code:
        sys.exit(code)


@main.command()
@config_arg
@click.argument("stage", type=click.Choice(STAGE_NAMES), required=False)
@output_opt
@_stage
def status(config: str, stage: str | None, output_dir: str | None) -> None:
    """Without STAGE: which stages of the run are current, stale or missing (exit code 1 if
    any is stale). With STAGE: per batch task, done, running, queued, failed (with its log
    and last error line) or pending; exit code 1 while any task has failed.
    """
    if stage is None:
        from pnn.stats import report

        states = report.stage_states(_load(config, output_dir))
        for s in states:
            click.echo(f"{s.stage:<9} {s.state:<8} {s.detail}".rstrip())
        if any(s.state == "stale" for s in states):
            sys.exit(1)
        return
    from pnn.batch import jobs, schedulers

    cfg = _load(config, output_dir)
    jd = jobs.JobDir.of(cfg, stage)
    if stage == "tune":  # the study itself, wherever its workers run
        from pnn.learn import tune as pnn_tune

        pnn_tune.settings(cfg)
        trials = pnn_tune.study_status(cfg)
        click.echo(trials.line if trials else "trials: none yet (the study has not started)")
        if not jd.spec_path.is_file():
            return
    rows = jobs.status(jd, *schedulers.scheduler_view(jd))
    width = max(len(r.label) for r in rows)
    for r in rows:
        line = f"{r.label:<{width}}  {r.state}"
        if r.state == "failed":
            line += f"  log {r.log}" + (f"\n{'':<{width}}  {r.error}" if r.error else "")
        click.echo(line)
    counts = {s: sum(r.state == s for r in rows) for s in ("done", "running", "queued", "failed", "pending")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    if counts["failed"]:
        sys.exit(1)


@main.group(hidden=True)
def job() -> None:
    """Entry points of batch job scripts (written by 'pnn submit')."""


@job.command("run-task")
@click.argument("job_dir", type=click.Path(file_okay=False))
@click.argument("index", type=int)
@click.option("--selected-only", is_flag=True, help="Skip the task unless it was selected at submission.")
def job_run_task(job_dir: str, index: int, selected_only: bool) -> None:
    """Run task INDEX of a job directory and record its outcome."""
    from pnn.batch import jobs

    sys.exit(jobs.run_task(job_dir, index, selected_only=selected_only))


@job.command("run-collect")
@click.argument("job_dir", type=click.Path(file_okay=False))
def job_run_collect(job_dir: str) -> None:
    """Run the collect step of a job directory once every task is done."""
    from pnn.batch import jobs

    sys.exit(jobs.run_collect(job_dir))


@main.command()
@config_arg
@output_opt
@_stage
def run(config: str, output_dir: str | None) -> None:
    """Run every stage: generate (if configured), ingest, train, inspect, evaluate, limits,
    report."""
    cfg = _load(config, output_dir)
    if cfg.generate is not None:
        do_generate(cfg)
    do_ingest(cfg)
    do_train(cfg)
    do_inspect(cfg)
    do_evaluate(cfg)
    do_limits(cfg)
    do_report(cfg)


def entry_point(prog_name: str = "pnn") -> None:
    """The ``pnn`` command. Once the verb has returned (its outputs published and closed, its
    workers gone), the exit handlers run and the process ends without unloading the modules
    one by one: TensorFlow, pandas and matplotlib take about a second to tear down, for
    nothing, at the end of every command."""
    import atexit
    import os

    try:
        main(prog_name=prog_name)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # a message instead of a number: Python prints it and exits with 1
            print(exc.code, file=sys.stderr)
            code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
