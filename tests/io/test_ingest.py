import numpy as np
import pandas as pd
import pytest
import uproot

from pnn.core.config import load_config
from pnn.core.errors import PnnError
from pnn.io import ingest, ntuple
from tests.conftest import write_config


def _make_files(tmp_path):
    rng = np.random.default_rng(0)
    n = 2000
    sig = {
        "EventNumber": np.arange(n, dtype=np.uint64),
        "pt": rng.exponential(100, n).astype(np.float32),
        "eta": rng.normal(0, 2, n),
        "w": np.full(n, 0.5),
        "truth_mass": rng.choice([300.0, 600.0], n),
    }
    bkg = {
        "EventNumber": np.arange(n, 3 * n, dtype=np.uint64),
        "pt": rng.exponential(50, 2 * n).astype(np.float32),
        "eta": rng.normal(0, 2, 2 * n),
        "w": rng.choice([-1.0, 2.0], 2 * n, p=[0.1, 0.9]),
    }
    ntuple.write_trees(tmp_path / "sig.root", {"nominal": sig})
    ntuple.write_trees(tmp_path / "bkg_part1.root", {"nominal": {k: v[:n] for k, v in bkg.items()}})
    ntuple.write_trees(tmp_path / "bkg_part2.root", {"nominal": {k: v[n:] for k, v in bkg.items()}})
    return sig, bkg


def _config(tmp_path, **extra):
    raw = {
        "name": "ing", "output_dir": str(tmp_path / "runs"),
        "samples": {
            "signal": [{"name": "sig", "files": str(tmp_path / "sig.root"), "tree": "nominal",
                        "mass_branch": "truth_mass", "weight": "w * 2"}],
            "background": [{"name": "bkg", "files": [str(tmp_path / "bkg_part*.root")],
                            "tree": "nominal", "selection": "pt > 10"}],
        },
        "features": ["pt", "abs(eta)"],
        "weight": "w",
        "selection": "abs(eta) < 2.5",
    }
    raw.update(extra)
    return load_config(write_config(tmp_path / "c.yaml", raw))


def test_ingest_applies_selection_weights_and_masses(tmp_path) -> None:
    sig, bkg = _make_files(tmp_path)
    res = ingest.ingest(_config(tmp_path))
    table = pd.read_parquet(res.path)
    keep_s = np.abs(sig["eta"]) < 2.5
    keep_b = (np.abs(bkg["eta"]) < 2.5) & (bkg["pt"] > 10)
    assert (table["label"] == 1).sum() == keep_s.sum()
    assert (table["label"] == 0).sum() == keep_b.sum()
    s = table[table["label"] == 1]
    assert np.allclose(s["weight"], 1.0)  # per-sample weight expression w * 2
    np.testing.assert_array_equal(s["mass"], sig["truth_mass"][keep_s])
    b = table[table["label"] == 0]
    assert b["mass"].isna().all()
    assert b["weight"].sum() == pytest.approx(bkg["w"][keep_b].sum())
    np.testing.assert_allclose(b["abs(eta)"], np.abs(bkg["eta"][keep_b]), rtol=1e-6)
    assert set(table.columns) >= {"pt", "abs(eta)", "weight", "event_number", "sample", "label"}
    assert not res.toy
    assert [x.selected for x in res.samples] == [keep_s.sum(), keep_b.sum()]


def test_ingest_reads_only_needed_branches(tmp_path, monkeypatch) -> None:
    _make_files(tmp_path)
    asked = []
    real = uproot.behaviors.TTree.TTree.iterate

    def spy(self, expressions=None, **kw):
        asked.append(set(expressions))
        return real(self, expressions, **kw)

    monkeypatch.setattr(uproot.behaviors.TTree.TTree, "iterate", spy)
    ingest.ingest(_config(tmp_path))
    assert asked[0] == {"EventNumber", "pt", "eta", "w", "truth_mass"}
    assert asked[1] == {"EventNumber", "pt", "eta", "w"}


def test_every_file_is_checked_before_reading(tmp_path, monkeypatch) -> None:
    _make_files(tmp_path)
    ntuple.write_trees(tmp_path / "bkg_part3.root", {"nominal": {"pt": np.ones(3)}})
    read = []
    real = uproot.behaviors.TTree.TTree.iterate

    def spy(self, *args, **kw):
        read.append(self)
        return real(self, *args, **kw)

    monkeypatch.setattr(uproot.behaviors.TTree.TTree, "iterate", spy)
    with pytest.raises(PnnError, match=r"bkg_part3\.root' tree 'nominal' has no branch"):
        ingest.ingest(_config(tmp_path))
    assert read == []
    assert not (tmp_path / "runs" / "ing" / "events.parquet").exists()


def test_large_samples_are_read_in_chunks_into_one_table(tmp_path, monkeypatch) -> None:
    sig, bkg = _make_files(tmp_path)
    monkeypatch.setattr(ntuple, "STEP_SIZE", 300)
    real = ntuple.iterate
    chunks = []

    def counting(trees, branches, step_size=300, **kw):
        for c in real(trees, branches, step_size=300, **kw):
            chunks.append(len(c["pt"]))
            yield c

    monkeypatch.setattr(ntuple, "iterate", counting)
    res = ingest.ingest(_config(tmp_path, selection=None))
    assert max(chunks) == 300 and len(chunks) > 10
    table = pd.read_parquet(res.path)
    assert len(table) == len(sig["pt"]) + (bkg["pt"] > 10).sum()
    assert table["sample"].dtype == "category"
    np.testing.assert_array_equal(table.loc[table.label == 1, "event_number"], sig["EventNumber"])


def test_empty_selection_is_an_error(tmp_path) -> None:
    _make_files(tmp_path)
    with pytest.raises(PnnError, match="selection keeps no events"):
        ingest.ingest(_config(tmp_path, selection="pt < 0"))


def test_missing_branch_is_an_error(tmp_path) -> None:
    _make_files(tmp_path)
    with pytest.raises(PnnError, match="no branch 'phi'"):
        ingest.ingest(_config(tmp_path, features=["pt", "phi"]))


def test_toy_samples_carry_the_likelihood_branches(small_toy) -> None:
    cfg = load_config(small_toy)
    cfg = cfg.model_copy(update={"features": ["Jet0CorrTLV", "sT"]})
    res = ingest.ingest(cfg)
    table, meta = ingest.load_events(cfg)
    assert res.toy and meta["toy"]
    assert {"FourBodyMass", "sTNoMet", "Btag"} <= set(table.columns)
    assert sorted(table.loc[table.label == 1, "mass"].unique()) == [500, 750, 1000, 1500]


def test_shared_real_file_with_expressions(shared_testdata, tmp_path) -> None:
    path = str(shared_testdata / "uproot-Zmumu.root")
    raw = {
        "name": "zmumu", "output_dir": str(tmp_path / "runs"),
        "samples": {
            "signal": [{"name": "onpeak", "files": path, "tree": "events", "mass": 91.0,
                        "selection": "abs(M - 91) < 10"}],
            "background": [{"name": "offpeak", "files": path, "tree": "events",
                            "selection": "abs(M - 91) >= 10"}],
        },
        "features": ["pt1", "eta1", "sqrt(px1**2 + py1**2)"],
        "event_number": "Event",
        "weight": "1",
    }
    cfg = load_config(write_config(tmp_path / "z.yaml", raw))
    ingest.ingest(cfg)
    table, _ = ingest.load_events(cfg)
    with uproot.open(path) as f:
        a = f["events"].arrays(["M", "px1", "py1", "Event"], library="np")
    on = np.abs(a["M"] - 91) < 10
    assert (table.label == 1).sum() == on.sum()
    assert len(table) == 2304
    derived = np.sqrt(a["px1"] ** 2 + a["py1"] ** 2)
    expect = np.concatenate([derived[on], derived[~on]])
    np.testing.assert_allclose(table["sqrt(px1**2 + py1**2)"], expect, rtol=1e-6)
    np.testing.assert_array_equal(table["event_number"], np.r_[a["Event"][on], a["Event"][~on]])


def _toy_files(tmp_path):
    from pnn.io import toy

    toy.write(tmp_path / "nt", [500.0, 750.0, 1000.0], 300, 2000, 140.0, 3)
    return tmp_path / "nt"


def _toy_cfg(tmp_path, signal, name="regex", **extra):
    data = tmp_path / "nt"
    raw = {
        "name": name, "output_dir": str(tmp_path / "runs"),
        "samples": {"signal": signal,
                    "background": [{"name": "ttbar", "files": str(data / "background.root"),
                                    "tree": "ttbar"}]},
        "features": ["FourBodyMass", "sT"],
        **extra,
    }
    return load_config(write_config(tmp_path / f"{name}.yaml", raw))


def test_tree_regex_gives_the_same_table_as_trees_listed_by_hand(tmp_path) -> None:
    data = _toy_files(tmp_path)
    sig = str(data / "signal.root")
    by_hand = _toy_cfg(tmp_path, [
        {"name": f"Xtohh{m}", "files": sig, "tree": f"Xtohh{m}", "mass": m}
        for m in (500, 750, 1000)], name="hand")
    by_regex = _toy_cfg(tmp_path, [
        {"name": "{tree}", "files": [sig], "tree_regex": r"Xtohh\d+", "mass_regex": r"Xtohh(\d+)"}])
    ingest.ingest(by_hand)
    ingest.ingest(by_regex)
    hand, _ = ingest.load_events(by_hand)
    regex, meta = ingest.load_events(by_regex)
    assert len(hand) == 300 * 3 + (hand.label == 0).sum()
    pd.testing.assert_frame_equal(hand, regex)
    assert [s["mass"] for s in meta["samples"][:3]] == [500, 750, 1000]


def test_files_to_trees_mapping_and_mass_from_the_file_name(tmp_path) -> None:
    rng = np.random.default_rng(1)
    for m in (300, 600):
        ntuple.write_trees(tmp_path / f"signal_m{m}.root", {"nominal": {
            "EventNumber": np.arange(50, dtype=np.int64), "x": rng.normal(size=50), "w": np.ones(50)}})
    ntuple.write_trees(tmp_path / "bkg.root", {"b1": {
        "evt": np.arange(80, dtype=np.int64), "x": rng.normal(size=80), "w": np.ones(80)}})
    raw = {
        "name": "map", "output_dir": str(tmp_path / "runs"), "weight": "w",
        "samples": {
            "signal": [{"name": "sig", "files": str(tmp_path / "signal_m*.root"), "tree": "nominal",
                        "mass_regex": r"_m(\d+)\.root", "mass_regex_on": "file"}],
            "background": [{"name": "bkg", "files": {str(tmp_path / "bkg.root"): "b1"},
                            "event_number": "evt"}],
        },
        "features": ["x"],
    }
    cfg = load_config(write_config(tmp_path / "m.yaml", raw))
    ingest.ingest(cfg)
    table, _ = ingest.load_events(cfg)
    assert sorted(table.loc[table.label == 1, "mass"].unique()) == [300, 600]
    assert (table.label == 1).sum() == 100
    np.testing.assert_array_equal(table.loc[table.label == 0, "event_number"], np.arange(80))


@pytest.mark.parametrize("source", ["branch", "other_tree", "histogram"])
def test_cross_section_normalises_by_the_sum_of_weights(tmp_path, source) -> None:
    _make_files(tmp_path)
    part = tmp_path / "bkg_part1.root"
    with uproot.update(part) as out:
        out["cutflow"] = (np.array([10.0, 3000.0, 5.0]), np.array([0.0, 1.0, 2.0, 3.0]))
        out.mktree("sumw", {"genw": np.float64}).extend({"genw": np.full(4, 500.0)})
    sw = {"branch": {"branch": "w"}, "other_tree": {"branch": "genw", "tree": "sumw"},
          "histogram": {"histogram": "cutflow", "bin": 2}}[source]
    raw = _config(tmp_path, luminosity=10.0).model_dump(exclude_defaults=True)
    raw["samples"]["background"][0].update(files=[str(part)], cross_section=3.0, sum_weights=sw)
    cfg = load_config(write_config(tmp_path / "x.yaml", raw))
    ingest.ingest(cfg)
    table, meta = ingest.load_events(cfg)
    with uproot.open(part) as f:
        a = f["nominal"].arrays(["w", "pt", "eta"], library="np")
    keep = (np.abs(a["eta"]) < 2.5) & (a["pt"] > 10)
    total = {"branch": a["w"].sum(), "other_tree": 2000.0, "histogram": 3000.0}[source]
    b = table[table.label == 0]
    np.testing.assert_allclose(b["weight"], a["w"][keep] * 3.0 * 10.0 / total)
    assert meta["samples"][1]["sum_weights"] == pytest.approx(total)


def _typed_file(path, n, seed):
    import awkward as ak

    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, n)
    jets = ak.unflatten(rng.exponential(50, counts.sum()).astype(np.float32), counts)
    cols = {f"i{np.dtype(t).itemsize * 8}{'u' if np.dtype(t).kind == 'u' else ''}":
            rng.integers(0, 100, n).astype(t)
            for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                      np.uint64)}
    cols.update(f32=rng.normal(size=n).astype(np.float32), f64=rng.normal(size=n),
                flag=rng.random(n) < 0.5, fixed=rng.normal(size=(n, 3)).astype(np.float32),
                EventNumber=np.arange(n, dtype=np.int64), Jet_pt=jets)
    with uproot.recreate(path) as f:
        f.mktree("t", {k: (v.type if k == "Jet_pt" else v.dtype if v.ndim == 1
                           else (v.dtype, v.shape[1:])) for k, v in cols.items()})
        f["t"].extend(cols)
    return cols


def test_every_branch_type_and_jagged_reductions(tmp_path) -> None:
    import awkward as ak

    sig = _typed_file(tmp_path / "s.root", 400, 1)
    _typed_file(tmp_path / "b.root", 300, 2)
    ints = [k for k in sig if k.startswith("i")]
    raw = {
        "name": "types", "output_dir": str(tmp_path / "runs"), "weight": "1",
        "samples": {"signal": [{"name": "s", "files": str(tmp_path / "s.root"), "tree": "t",
                                "mass": 1.0}],
                    "background": [{"name": "b", "files": str(tmp_path / "b.root"), "tree": "t"}]},
        "features": [*ints, "f32", "f64", "flag", "fixed[2]", "lead", "count(Jet_pt)",
                     "sum(Jet_pt)", "ht_central"],
        "aliases": {"lead": "Jet_pt[0]", "ht_central": "sum(Jet_pt * (Jet_pt > 20))"},
        "object_fill": -1.0,
        "selection": "count(Jet_pt) < 3",
    }
    cfg = load_config(write_config(tmp_path / "t.yaml", raw))
    ingest.ingest(cfg)
    table, _ = ingest.load_events(cfg)
    s = table[table.label == 1]
    keep = ak.to_numpy(ak.num(sig["Jet_pt"])) < 3
    assert len(s) == keep.sum()
    for name in ints:
        np.testing.assert_array_equal(s[name], sig[name][keep].astype(np.float32))
    np.testing.assert_array_equal(s["flag"], sig["flag"][keep])
    np.testing.assert_array_equal(s["fixed[2]"], sig["fixed"][keep, 2])
    lead = ak.to_numpy(ak.fill_none(ak.firsts(sig["Jet_pt"]), -1.0))[keep]
    np.testing.assert_array_equal(s["lead"], lead)
    np.testing.assert_array_equal(s["count(Jet_pt)"], ak.to_numpy(ak.num(sig["Jet_pt"]))[keep])
    np.testing.assert_allclose(s["sum(Jet_pt)"], ak.to_numpy(ak.sum(sig["Jet_pt"], axis=1))[keep],
                               rtol=1e-6)
    central = ak.to_numpy(ak.sum(sig["Jet_pt"][sig["Jet_pt"] > 20], axis=1))[keep]
    np.testing.assert_allclose(s["ht_central"], central, rtol=1e-6)


def _bad_setup(tmp_path, case):
    """A config over two typed files, broken in one way; returns the config path."""
    sig = tmp_path / "s.root"
    cols = _typed_file(sig, 500, 1)
    _typed_file(tmp_path / "b.root", 300, 2)
    raw = {
        "name": "bad", "output_dir": str(tmp_path / "runs"), "weight": "1",
        "samples": {"signal": [{"name": "s", "files": str(sig), "tree": "t", "mass": 1.0}],
                    "background": [{"name": "b", "files": str(tmp_path / "b.root"), "tree": "t"}]},
        "features": ["f64", "Jet_pt[0]"],
    }
    if case == "not_root":
        sig.write_bytes(b"this is not a ROOT file at all\n" * 100)
    elif case == "truncated":
        data = sig.read_bytes()
        sig.write_bytes(data[: len(data) // 2])
    elif case == "missing_branch":
        raw["features"].append("Jet_eta[0]")
    elif case == "jagged":
        raw["features"].append("sqrt(Jet_pt)")
    elif case == "disallowed":
        raw["features"].append("__import__('os').getpid()")
    elif case.startswith("nan"):
        cols["f64"][[3, 10, 20]] = [np.nan, np.inf, -np.inf]
        with uproot.recreate(sig) as f:
            f.mktree("t", {"f64": np.float64, "EventNumber": np.int64, "Jet_pt": cols["Jet_pt"].type})
            f["t"].extend({k: cols[k] for k in ("f64", "EventNumber", "Jet_pt")})
        if case != "nan":
            raw["non_finite"] = case.split("_")[1]
            raw["non_finite_fill"] = -7.0
    return write_config(tmp_path / "bad.yaml", raw)


@pytest.mark.parametrize(("case", "message"), [
    ("not_root", "cannot be read as a ROOT file"),
    ("truncated", "truncated or corrupt"),
    ("missing_branch", "has no branch 'Jet_eta'"),
    ("jagged", "feature 'sqrt(Jet_pt)' uses the jagged branch 'Jet_pt' without a reduction"),
    ("disallowed", "is not allowed"),
    ("nan", "feature 'f64' is NaN or infinite in 3 events"),
])
def test_bad_input_through_the_cli_is_one_line_exit_2_no_output(tmp_path, case, message) -> None:
    from click.testing import CliRunner

    from pnn.cli import main

    res = CliRunner().invoke(main, ["ingest", str(_bad_setup(tmp_path, case))])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    run = tmp_path / "runs" / "bad"
    assert not run.exists() or list(run.iterdir()) == []


@pytest.mark.parametrize("how", ["drop", "fill"])
def test_non_finite_features_can_be_dropped_or_filled(tmp_path, how) -> None:
    cfg = load_config(_bad_setup(tmp_path, f"nan_{how}"))
    res = ingest.ingest(cfg)
    table, meta = ingest.load_events(cfg)
    s = table[table.label == 1]
    assert meta["samples"][0]["non_finite"] == {"f64": 3}
    if how == "drop":
        assert len(s) == 497 and not {3, 10, 20} & set(s.event_number)
    else:
        assert len(s) == 500 and (s.set_index("event_number").loc[[3, 10, 20], "f64"] == -7).all()
    assert res.events == len(table)


def test_shards_together_equal_one_ingest_and_keep_whole_sample_normalisation(tmp_path) -> None:
    from click.testing import CliRunner

    from pnn.cli import main

    _toy_files(tmp_path)
    sig = str(tmp_path / "nt" / "signal.root")
    raw = _toy_cfg(tmp_path, [{"name": "{tree}", "files": sig, "tree_regex": r"Xtohh\d+",
                               "mass_regex": r"Xtohh(\d+)", "cross_section": 2.0,
                               "sum_weights": {"branch": "weight"}}],
                   name="whole", luminosity=3.0).model_dump(exclude_defaults=True)
    # one background sample of two trees: its parts land in different shards
    raw["samples"]["background"] = [{
        "name": "bkg", "files": str(tmp_path / "nt" / "background.root"),
        "tree_regex": "ttbar|multijet", "cross_section": 5.0, "sum_weights": {"branch": "weight"}}]
    whole = load_config(write_config(tmp_path / "whole.yaml", raw))
    raw["name"] = "sharded"
    sharded_path = write_config(tmp_path / "sharded.yaml", raw)
    sharded = load_config(sharded_path)
    ingest.ingest(whole)
    expect, _ = ingest.load_events(whole)
    runner = CliRunner()
    for i in (0, 2):
        assert runner.invoke(main, ["ingest", str(sharded_path), "--shard", f"{i}/3"]).exit_code == 0
    with pytest.raises(PnnError, match="missing shard-1-of-3"):
        ingest.load_events(sharded)
    assert runner.invoke(main, ["ingest", str(sharded_path), "--shard", "1/3"]).exit_code == 0
    got, meta = ingest.load_events(sharded)
    assert not (sharded.run_dir / "events.parquet").exists()
    keys = ["sample", "event_number"]
    a = expect.astype({"sample": str}).sort_values(keys).reset_index(drop=True)
    b = got.astype({"sample": str}).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert meta["events"] == len(expect)
    assert {s["name"]: s["selected"] for s in meta["samples"]} == {
        n: int((expect["sample"] == n).sum()) for n in expect["sample"].cat.categories}
    bad = runner.invoke(main, ["ingest", str(sharded_path), "--shard", "3/3"])
    assert bad.exit_code == 2 and "0 <= I < N" in bad.output


def test_more_shards_than_trees_leaves_empty_shards_that_load_fine(tmp_path) -> None:
    _toy_files(tmp_path)
    cfg = _toy_cfg(tmp_path, [{"name": "X500", "files": str(tmp_path / "nt" / "signal.root"),
                               "tree": "Xtohh500", "mass": 500}], name="many")
    counts = [ingest.ingest(cfg, (i, 4)).events for i in range(4)]  # two trees, four shards
    assert counts[0] == 300 and counts[1] > 0 and counts[2:] == [0, 0]
    events, meta = ingest.load_events(cfg)
    assert len(events) == meta["events"] == sum(counts)
    assert events["label"].dtype == np.int8 and set(events["sample"]) == {"X500", "ttbar"}
