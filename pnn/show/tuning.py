"""Figures of a hyperparameter search: optimisation history, parameter importances, slices."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

log = logging.getLogger(__name__)

HISTORY, IMPORTANCES, SLICES = "history.png", "importances.png", "slices.png"


def _save(ax: Any, path: Path) -> None:
    fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_study(study: Any, out_dir: Path, seed: int) -> list[str]:
    """Write the plots of ``study`` into ``out_dir``; the names written.

    Parameter importances (fANOVA, seeded) need two complete trials that differ; with fewer
    that plot is left out with a warning.
    """
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.visualization import matplotlib as ovm

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        _save(ovm.plot_optimization_history(study), out_dir / HISTORY)
        written.append(HISTORY)
        try:
            ax = ovm.plot_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))
        except (ValueError, RuntimeError) as exc:
            log.warning("no parameter-importance plot: %s", exc)
        else:
            _save(ax, out_dir / IMPORTANCES)
            written.append(IMPORTANCES)
        _save(ovm.plot_slice(study), out_dir / SLICES)
        written.append(SLICES)
    return written
