from pathlib import Path

import pytest
import yaml

from pnn.core.config import load_config
from pnn.core.errors import PnnError
from tests.conftest import toy_config, write_config


def test_valid_config_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", toy_config(tmp_path)))
    assert cfg.preprocessing.folds == 2
    assert cfg.training.layers == [32, 32, 32]
    assert cfg.training.momentum == 0.9 and cfg.training.nesterov
    assert cfg.signal_masses(trained_only=True) == [500, 1000, 1500]
    assert cfg.signal_masses() == [500, 750, 1000, 1500]
    assert cfg.run_dir == tmp_path / "runs" / "small"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    raw = toy_config(tmp_path)
    raw["training"]["learning_rte"] = 0.1
    path = write_config(tmp_path / "c.yaml", raw)
    with pytest.raises(PnnError, match=r"c\.yaml: unknown key 'training\.learning_rte'"):
        load_config(path)


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    raw = toy_config(tmp_path)
    raw["training"]["epochs"] = "many"
    with pytest.raises(PnnError, match=r"training\.epochs.*'many'"):
        load_config(write_config(tmp_path / "c.yaml", raw))


def test_missing_required_key(tmp_path: Path) -> None:
    raw = toy_config(tmp_path)
    del raw["features"]
    with pytest.raises(PnnError, match="missing required key 'features'"):
        load_config(write_config(tmp_path / "c.yaml", raw))


def test_signal_needs_exactly_one_mass_source(tmp_path: Path) -> None:
    raw = toy_config(tmp_path)
    raw["samples"]["signal"][0]["mass_branch"] = "mass"
    with pytest.raises(PnnError, match="exactly one of mass, mass_branch"):
        load_config(write_config(tmp_path / "c.yaml", raw))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(PnnError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_missing_sample_file_is_reported(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", toy_config(tmp_path)))
    with pytest.raises(PnnError, match="no file matches"):
        cfg.samples.signal[0].resolved_files()


def test_override_replaces_output_dir(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", toy_config(tmp_path)),
                      {"output_dir": str(tmp_path / "elsewhere")})
    assert cfg.run_dir == tmp_path / "elsewhere" / "small"


def test_demo_config_is_valid() -> None:
    cfg = load_config(Path(__file__).parents[2] / "configs" / "demo.yaml")
    assert cfg.signal_masses(trained_only=True) == [500, 750, 1000, 1250, 1500]
    assert cfg.signal_masses() == [500, 625, 750, 875, 1000, 1125, 1250, 1375, 1500]


def test_templated_sample_names_and_training_flags(tmp_path) -> None:
    from pnn.core.config import Sample

    on = Sample(name="{tree}", files=["s.root"], tree_regex="Xtohh(500|1000)",
                mass_regex=r"Xtohh(\d+)")
    off = Sample(name="{tree}", files=["s.root"], tree_regex="Xtohh750",
                 mass_regex=r"Xtohh(\d+)", train=False)
    assert on.owns("Xtohh500") and not on.owns("Xtohh750") and off.owns("Xtohh750")
    assert on.expanded_name("Xtohh1000", "dir/s.root") == "Xtohh1000"
    assert Sample(name="bkg_{file}", files={"a.root": "t"}).expanded_name("t", "x/a.root") == "bkg_a"


@pytest.mark.parametrize(("sample", "message"), [
    ({"tree": "t", "tree_regex": "t.*"}, "exactly one of tree, tree_regex"),
    ({"tree": "t", "mass_regex": "m"}, "mass_regex needs a group"),
    ({"tree": "t", "tree_regex": None, "mass_regex": "(["}, "not a valid regular expression"),
    ({"tree": "t", "cross_section": 1.0}, "cross_section and sum_weights go together"),
])
def test_bad_sample_keys(sample, message) -> None:
    from pydantic import ValidationError

    from pnn.core.config import Sample

    with pytest.raises(ValidationError, match=message):
        Sample(name="s", files=["f.root"], **{k: v for k, v in sample.items() if v is not None})


def test_every_listed_activation_is_a_keras_activation() -> None:
    import keras
    import numpy as np

    from pnn.core.config import ACTIVATIONS

    x = np.linspace(-2, 2, 8, dtype="float32").reshape(2, 4)
    for name in ACTIVATIONS:
        out = keras.activations.get(name)(x)
        assert tuple(out.shape) == (2, 4), name


def test_duplicate_key_in_a_list_of_samples(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("samples:\n  background:\n    - name: a\n    - name: b\n      name: c\n")
    with pytest.raises(PnnError, match=r"key 'samples\.background\.1\.name' appears twice "
                                       r"\(lines 4 and 5\)"):
        load_config(path)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    raw = toy_config(tmp_path)
    text = yaml.safe_dump(raw).replace("training:\n", "common: &c {patience: 5}\ntraining:\n  <<: *c\n")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(PnnError, match="unknown key 'common'"):
        load_config(path)


def test_bool_fields_still_take_booleans_and_numbers_take_ints(tmp_path: Path) -> None:
    raw = toy_config(tmp_path, luminosity=140)
    raw["training"].update(nesterov=False, learning_rate=1, epochs=3)
    cfg = load_config(write_config(tmp_path / "c.yaml", raw))
    assert cfg.luminosity == 140.0 and isinstance(cfg.luminosity, float)
    assert cfg.training.nesterov is False and cfg.training.learning_rate == 1.0


def test_unreadable_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(PnnError, match=r"c\.yaml: not UTF-8 text \(byte 0xff at offset 6\): save"):
        load_config(path)
