"""What every stage output was made from, and the check every consumer runs before using one.

A stage output carries a *record*: the stage, the digest of the config sections that stage
depends on (one digest per section, so a mismatch can name what changed), the identities of
the inputs it read, the pnn version, and an identity of its own. Staleness is judged by these
digests and identities, never by file times. Editing a section that a stage does not read
(``cluster``, ``study`` for training, ...) leaves its outputs current.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import pnn
from pnn.core.config import Config
from pnn.core.errors import PnnError

KEY = "provenance"

_INGEST = ("samples.signal", "samples.background", "features", "spectators", "aliases",
           "event_number", "weight", "selection", "luminosity", "object_fill", "non_finite",
           "non_finite_fill")
_TRAIN = (*_INGEST, "seed", "preprocessing", "training")
SECTIONS: dict[str, tuple[str, ...]] = {
    "ingest": _INGEST,
    "train": _TRAIN,
    "evaluate": (*_TRAIN, "evaluation"),
    "report": (*_TRAIN, "evaluation", "plots"),
    # input diagnostics: the table, the fold-0 scaler (via the model), data and its blinding
    "inspect": (*_INGEST, "samples.data", "limits.observed", "plots"),
    "study": (*_TRAIN, "evaluation", "study"),
    "export": _TRAIN,
    "apply": (*_TRAIN, "apply"),
    "limits": (*_TRAIN, "evaluation", "samples.data", "limits"),
    # the tuning journal: what each trial trains on and what the search optimises (not how
    # many trials or workers, so a study can be extended and resumed)
    "tune": (*_TRAIN, "evaluation.min_background_events", "tune.space", "tune.objective",
             "tune.sampler", "tune.startup_trials", "tune.pruning"),
    # data and systematic-variation events, read for the limits only
    "variations": (*_INGEST, "samples.data", "limits.systematics"),
}
# The verb that rebuilds the output of each stage.
VERB = {"ingest": "ingest", "train": "train", "evaluate": "evaluate", "report": "report",
        "study": "study all", "export": "export", "apply": "apply", "limits": "limits",
        "variations": "limits", "inspect": "inspect", "tune": "tune"}


def _hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _section(dump: dict[str, Any], name: str) -> Any:
    """A top-level section, or a part of one named with a dot (``samples.data``)."""
    for part in name.split("."):
        dump = dump.get(part) if isinstance(dump, dict) else None
    return dump


def section_digests(cfg: Config, stage: str) -> dict[str, str]:
    """One digest per config section that ``stage`` depends on."""
    dump = cfg.model_dump(mode="json")
    return {name: _hash(_section(dump, name)) for name in SECTIONS[stage]}


def digest(cfg: Config, stage: str) -> str:
    """The digest of every config section that ``stage`` depends on."""
    return _hash(section_digests(cfg, stage))


def combine(ids: list[str]) -> str:
    """One identity for a set of outputs (the folds of a model, the shards of a table)."""
    return _hash(sorted(ids))


def record(cfg: Config, stage: str, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """The provenance record of a new output of ``stage`` made from ``inputs``."""
    return {
        "stage": stage,
        "digest": digest(cfg, stage),
        "sections": section_digests(cfg, stage),
        "inputs": dict(inputs or {}),
        "pnn_version": pnn.__version__,
        "id": uuid.uuid4().hex[:16],
    }


def rerun(cfg: Config, stage: str) -> str:
    """The command that rebuilds the output of ``stage``."""
    return cfg.command(VERB[stage])


def require(cfg: Config, stage: str, rec: dict[str, Any] | None, what: str,
            inputs: dict[str, str] | None = None, fix: str | None = None) -> dict[str, Any]:
    """Refuse ``rec`` unless it was made by ``stage`` from the current config and ``inputs``.

    ``what`` names the output in the message; ``fix`` overrides the suggested command.
    """
    fix = fix or rerun(cfg, stage)
    if not isinstance(rec, dict) or "digest" not in rec:
        raise PnnError(f"{what} was made before pnn recorded provenance, so it counts as stale: "
                       f"rerun '{fix}'")
    if rec.get("stage") != stage:
        raise PnnError(f"{what} was made by '{rec.get('stage')}', not '{stage}': rerun '{fix}'")
    if rec["digest"] != digest(cfg, stage):
        now = section_digests(cfg, stage)
        old = rec.get("sections", {})
        changed = [k for k in now if old.get(k) != now[k]] or ["pnn version"]
        names = ", ".join(f"'{c}'" for c in changed[:4]) + (" ..." if len(changed) > 4 else "")
        raise PnnError(f"{what} is stale: {names} changed in {cfg.source} since it was made: "
                       f"rerun '{fix}'")
    for key, want in (inputs or {}).items():
        if rec.get("inputs", {}).get(key) != want:
            raise PnnError(f"{what} was made from another {key} than the current one: "
                           f"rerun '{fix}'")
    return rec
