"""Damaged model files (the .keras file, the scaler JSON, metadata.json) give one line naming
the file and exit code 2 from every verb that loads them, never a traceback, and leave the
earlier good outputs as they were."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pnn.cli import main
from pnn.io import toy
from tests.conftest import toy_config, write_config
from tests.faults.util import leftovers, one_line_error, snapshot

MODEL = Path("runs") / "small" / "model"


def train_tiny(base: Path) -> Path:
    """A tiny toy ingested and trained for one epoch in ``base``, with paths relative to it,
    so a copy of ``base`` is a complete run of the same config. Returns the config path."""
    cfg = toy_config(Path("."), masses=(500, 1000), offgrid=(), signal_events=300,
                     background_events=2000, epochs=1)
    cfg["training"]["layers"] = [8]
    g = cfg["generate"]
    toy.write(base / g["output"], g["masses"], g["signal_events"], g["background_events"],
              140.0, cfg["seed"])
    path = write_config(base / "config.yaml", cfg)
    with contextlib.chdir(base):
        for verb in ("ingest", "train"):
            res = CliRunner().invoke(main, [verb, "config.yaml"])
            assert res.exit_code == 0, res.output
    return path


def workdir(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the trained ``base`` as the working directory of one test."""
    work = tmp_path / "work"
    shutil.copytree(base, work)
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("model_faults")
    train_tiny(base)
    return base


@pytest.fixture
def work(trained, tmp_path, monkeypatch) -> Path:
    return workdir(trained, tmp_path, monkeypatch)


def _json_edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return damage


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _random(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _overwrite_directory(path: Path) -> None:
    """Zero the zip's central directory at the end of the file."""
    data = bytearray(path.read_bytes())
    data[-120:] = bytes(120)
    path.write_bytes(bytes(data))


DAMAGE = {
    "keras-truncated": ("fold0.keras", _truncate),
    "keras-random": ("fold1.keras", _random),
    "keras-overwritten": ("fold0.keras", _overwrite_directory),
    "scaler-not-json": ("fold0.scaler.json", lambda p: p.write_text("{\"features\": [")),
    "scaler-binary": ("fold1.scaler.json", lambda p: p.write_bytes(b"\xff\xfe\x00garbage")),
    "scaler-missing-key": ("fold0.scaler.json", _json_edit(lambda d: d.pop("robust_scale"))),
    "scaler-short-centre": ("fold1.scaler.json",
                            _json_edit(lambda d: d["robust_center"].pop())),
    "scaler-not-object": ("fold0.scaler.json", lambda p: p.write_text("[1, 2, 3]")),
    "scaler-zero-scale": ("fold0.scaler.json",
                          _json_edit(lambda d: d["robust_scale"].__setitem__(1, 0.0))),
    "scaler-nan-scale": ("fold1.scaler.json",
                         _json_edit(lambda d: d["robust_scale"].__setitem__(0, float("nan")))),
    "scaler-nan-centre": ("fold0.scaler.json",
                          _json_edit(lambda d: d["robust_center"].__setitem__(2, float("nan")))),
    "scaler-no-mass-range": ("fold0.scaler.json",
                             _json_edit(lambda d: d.update(parameter_min=[None], parameter_max=[None]))),
    "scaler-inverted-mass-range": ("fold1.scaler.json",
                                   _json_edit(lambda d: d.update(parameter_min=[2000.0]))),
    "metadata-not-json": ("metadata.json", lambda p: p.write_text("{\"folds\": 2,")),
    "metadata-missing-folds": ("metadata.json", _json_edit(lambda d: d.pop("folds"))),
    "metadata-no-masses": ("metadata.json", _json_edit(lambda d: d.update(masses=[]))),
}


def damage_recorded(work: Path, case: str) -> str:
    """Damage one model file as if training had written it so: where the metadata records
    the file's SHA-256, the record follows, so the file itself must be refused on loading."""
    name, damage = DAMAGE[case]
    path = work / MODEL / name
    damage(path)
    meta_path = work / MODEL / "metadata.json"
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError:
        return name
    changed = False
    for rec in meta.get("fold_results", []) if isinstance(meta, dict) else []:
        if isinstance(rec, dict) and name in rec.get("files", {}):
            rec["files"][name] = hashlib.sha256(path.read_bytes()).hexdigest()
            changed = True
    if changed:
        meta_path.write_text(json.dumps(meta, indent=2))
    return name


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_model_file_is_refused_on_loading(work, case) -> None:
    from pnn.core.errors import PnnError
    from pnn.learn.model import FoldModels

    name, damage = DAMAGE[case]
    damage(work / MODEL / name)
    with pytest.raises(PnnError) as err:
        FoldModels.load_dir(work / MODEL)
    text = str(err.value)
    assert name in text and "rerun 'pnn train" in text and "\n" not in text


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_model_file_is_one_line_for_export(work, case) -> None:
    name = damage_recorded(work, case)
    before = snapshot(work / "runs")
    res = CliRunner().invoke(main, ["export", "config.yaml"])
    line = one_line_error(res)
    assert name in line and "pnn train" in line
    assert any(w in line for w in ("damaged", "not readable", "lacks", "no trained mass")), line
    assert snapshot(work / "runs") == before
    assert leftovers(work / "runs") == []
    assert not (work / "runs" / "small" / "export").exists()


@pytest.mark.parametrize("case", ["keras-random", "scaler-zero-scale", "scaler-nan-centre",
                                  "scaler-short-centre", "metadata-missing-folds"])
def test_damaged_model_file_is_one_line_for_apply(work, case) -> None:
    name = damage_recorded(work, case)
    before = snapshot(work / "runs")
    res = CliRunner().invoke(main, ["apply", "config.yaml", "-i", "ntuples/background.root",
                                    "-o", "scored"])
    line = one_line_error(res)
    assert name in line and "pnn train" in line
    assert any(w in line for w in ("damaged", "not readable", "lacks", "no trained mass")), line
    assert snapshot(work / "runs") == before
    assert not (work / "scored").exists() or not any((work / "scored").iterdir())


def test_damaged_scaler_of_one_fold_names_its_fold(work) -> None:
    from pnn.core.errors import PnnError
    from pnn.learn.model import FoldModels

    name, damage = DAMAGE["scaler-zero-scale"]
    damage(work / MODEL / name)
    with pytest.raises(PnnError) as err:
        FoldModels.load_dir(work / MODEL)
    text = str(err.value)
    assert "fold0.scaler.json" in text and "zero" in text and "'pnn train --fold 0'" in text
    assert "\n" not in text


def test_good_model_directory_still_exports(work) -> None:
    res = CliRunner().invoke(main, ["export", "config.yaml"])
    assert res.exit_code == 0, res.output
    assert (work / "runs" / "small" / "export" / "fold1.onnx").is_file()
