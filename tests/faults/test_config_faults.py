"""Bad configs fail at load with one line and exit 2, and never touch an earlier good run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pnn.cli import main
from tests.faults.util import leftovers, one_line_error, snapshot


def _run_bad(good_run, tmp_path: Path, text: bytes, verb: str = "ingest") -> str:
    """Run ``pnn VERB`` on a config file holding ``text``; the good run must stay as it was."""
    _, root = good_run
    before = snapshot(root)
    path = tmp_path / "config.yaml"
    path.write_bytes(text)
    res = CliRunner().invoke(main, [verb, str(path)])
    line = one_line_error(res)
    assert snapshot(root) == before
    assert leftovers(root) == []
    return line


def _changed(good_run, change) -> bytes:
    cfg = yaml.safe_load(yaml.safe_dump(good_run[0]))
    change(cfg)
    return yaml.safe_dump(cfg, sort_keys=False).encode()


def test_config_that_is_not_utf8(good_run, tmp_path) -> None:
    line = _run_bad(good_run, tmp_path, b"name: caf\xe9\n")
    assert "config.yaml" in line and "not UTF-8" in line and "save the file as UTF-8" in line


def test_duplicated_top_level_key_names_both_lines(good_run, tmp_path) -> None:
    text = b"name: small\nseed: 1\nname: other\n"
    line = _run_bad(good_run, tmp_path, text)
    assert line.endswith("config.yaml: key 'name' appears twice (lines 1 and 3): keep one")


def test_duplicated_nested_key_names_its_full_path(good_run, tmp_path) -> None:
    text = _changed(good_run, lambda c: None).replace(b"training:\n", b"training:\n  epochs: 9\n")
    lines = text.decode().splitlines()
    first = lines.index("  epochs: 9") + 1
    second = next(i for i, t in enumerate(lines, 1) if t.startswith("  epochs:") and i != first)
    line = _run_bad(good_run, tmp_path, text)
    assert f"key 'training.epochs' appears twice (lines {first} and {second}): keep one" in line


def test_duplicated_key_inside_a_sample(good_run, tmp_path) -> None:
    text = _changed(good_run, lambda c: None).replace(
        b"    tree: Xtohh500\n", b"    tree: Xtohh500\n    tree: Xtohh750\n", 1)
    line = _run_bad(good_run, tmp_path, text)
    assert "key 'samples.signal.0.tree' appears twice" in line


@pytest.mark.parametrize(("key", "section", "value"), [
    ("training.epochs", "training", True),
    ("seed", None, False),
    ("training.learning_rate", "training", True),
    ("generate.luminosity", "generate", True),
    ("preprocessing.folds", "preprocessing", True),
    ("generate.masses", "generate", [500, True]),
])
def test_booleans_are_not_numbers(good_run, tmp_path, key, section, value) -> None:
    name = key.split(".")[-1]

    def change(c):
        (c.setdefault(section, {}) if section else c)[name] = value

    line = _run_bad(good_run, tmp_path, _changed(good_run, change))
    assert f"key '{key}': true/false is not a number" in line


def test_an_integer_is_still_a_float(good_run, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(_changed(good_run, lambda c: c.update(luminosity=140, name="lumi")))
    res = CliRunner().invoke(main, ["ingest", str(path)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_seed_outside_numpy_range(good_run, tmp_path, seed) -> None:
    line = _run_bad(good_run, tmp_path, _changed(good_run, lambda c: c.update(seed=seed)))
    assert "key 'seed'" in line and "from 0 to 4294967295" in line


@pytest.mark.parametrize("name", ["../escape", "a/b", "a\\b", "..", ".", "", "x..y"])
def test_run_name_must_be_a_plain_folder_name(good_run, tmp_path, name) -> None:
    outside = good_run[1].parent
    before = {p.name for p in outside.iterdir()}
    line = _run_bad(good_run, tmp_path, _changed(good_run, lambda c: c.update(name=name)))
    assert "key 'name'" in line and "plain folder name" in line
    assert {p.name for p in outside.iterdir()} == before


def test_explicit_output_paths_stay_free(good_run, tmp_path) -> None:
    path = tmp_path / "config.yaml"
    out = str(tmp_path / "deeper" / ".." / "toy")
    path.write_bytes(_changed(good_run, lambda c: c["generate"].update(output=out)))
    res = CliRunner().invoke(main, ["generate", str(path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "toy" / "signal.root").is_file()


def test_unknown_activation_lists_the_known_ones(good_run, tmp_path) -> None:
    text = _changed(good_run, lambda c: c["training"].update(activation="rleu"))
    line = _run_bad(good_run, tmp_path, text, verb="train")
    assert "key 'training.activation': unknown activation 'rleu': use one of" in line
    assert "relu, relu6" in line and "tanh" in line


def test_window_branch_null_means_no_baseline(good_run, tmp_path) -> None:
    from pnn.core.config import load_config

    path = tmp_path / "config.yaml"
    path.write_bytes(_changed(good_run, lambda c: c.update(evaluation={"window_branch": None})))
    cfg = load_config(path)
    assert cfg.evaluation.window_branch is None
    assert "window_branch" in cfg.evaluation.model_fields_set
    assert "window_branch" not in load_config(good_run[1] / "good.yaml").evaluation.model_fields_set
