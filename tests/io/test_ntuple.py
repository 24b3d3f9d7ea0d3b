import numpy as np
import pytest
import uproot

from pnn.core.errors import PnnError
from pnn.io import ntuple


@pytest.fixture
def flat_file(tmp_path):
    path = tmp_path / "flat.root"
    ntuple.write_trees(path, {"events": {
        "x": np.arange(1000, dtype=np.float32),
        "n": np.arange(1000, dtype=np.int64),
        "flag": (np.arange(1000) % 3 == 0),
    }}, chunk_entries=300)
    return path


def _chunks(path, tree, branches, step_size):
    with ntuple.open_files([str(path)]) as handles:
        t = ntuple.get_tree(handles[str(path)], str(path), tree, branches)
        return list(ntuple.iterate([t, t], branches, step_size=step_size))


def test_round_trip_in_chunks(flat_file) -> None:
    chunks = _chunks(flat_file, "events", ["x", "n"], 250)[:4]
    assert len(chunks) == 4
    x = np.concatenate([c["x"] for c in chunks])
    np.testing.assert_array_equal(x, np.arange(1000, dtype=np.float32))
    assert set(chunks[0]) == {"x", "n"}


def test_each_tree_is_read_in_turn(flat_file) -> None:
    chunks = _chunks(flat_file, "events", ["x"], 400)
    assert [len(c["x"]) for c in chunks] == [400, 400, 200, 400, 400, 200]


def test_written_tree_is_a_ttree_with_several_baskets(flat_file) -> None:
    with uproot.open(flat_file) as f:
        tree = f["events"]
        assert tree.classname == "TTree"
        assert tree["x"].num_baskets == 4


def test_check_tree_errors(flat_file, tmp_path) -> None:
    assert ntuple.check_tree(str(flat_file), "events", ["x"]) == 1000
    with pytest.raises(PnnError, match=r"no tree 'nope'.*events"):
        ntuple.check_tree(str(flat_file), "nope", [])
    with pytest.raises(PnnError, match="no branch 'y'"):
        ntuple.check_tree(str(flat_file), "events", ["x", "y"])
    with pytest.raises(PnnError, match="not found"):
        ntuple.check_tree(str(tmp_path / "missing.root"), "events", [])
    junk = tmp_path / "junk.root"
    junk.write_text("not root")
    with pytest.raises(PnnError, match="cannot be read as a ROOT file"):
        ntuple.check_tree(str(junk), "events", [])


def test_failed_write_leaves_no_file(tmp_path) -> None:
    path = tmp_path / "out.root"
    with pytest.raises(ValueError):
        ntuple.write_trees(path, {"t": {"a": np.arange(3), "b": np.arange(4)}})
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_shared_real_files_are_read(shared_testdata) -> None:
    path = str(shared_testdata / "uproot-Zmumu.root")
    assert ntuple.check_tree(path, "events", ["M", "Event"]) == 2304
    m = np.concatenate([c["M"] for c in _chunks(path, "events", ["M"], 500)])
    assert len(m) == 2 * 2304 and 80 < np.median(m) < 100


@pytest.mark.parametrize("codec", ["ZLIB", "LZMA", "LZ4", "ZSTD", None])
def test_files_in_parts_with_every_codec_read_the_same(tmp_path, codec) -> None:
    import awkward as ak

    rng = np.random.default_rng(5)
    n = 3000
    counts = rng.integers(0, 5, n)
    data = {"x": rng.normal(size=n), "k": rng.integers(0, 9, n).astype(np.int16),
            "jet": ak.unflatten(rng.exponential(40, counts.sum()).astype(np.float32), counts)}
    compression = getattr(uproot, codec)(4) if codec else None
    parts = []
    for i, (lo, hi) in enumerate([(0, 1000), (1000, 2200), (2200, n)]):
        path = tmp_path / f"part{i}.root"
        with uproot.recreate(path, compression=compression) as f:
            f.mktree("t", {"x": np.float64, "k": np.int16, "jet": data["jet"].type})
            for start in range(lo, hi, 400):
                stop = min(start + 400, hi)
                f["t"].extend({k: v[start:stop] for k, v in data.items()})
        parts.append(str(path))
    with uproot.open(parts[0]) as f:
        assert f.file.compression == compression or (codec is None and f.file.compression is None)
    with ntuple.open_files(parts) as handles:
        trees = [ntuple.get_tree(handles[p], p, "t", ["x", "k", "jet"]) for p in parts]
        chunks = list(ntuple.iterate(trees, ["x", "k", "jet"], step_size=700, awkward=["jet"]))
    np.testing.assert_array_equal(np.concatenate([c["x"] for c in chunks]), data["x"])
    np.testing.assert_array_equal(np.concatenate([c["k"] for c in chunks]), data["k"])
    assert ak.to_list(ak.concatenate([c["jet"] for c in chunks])) == ak.to_list(data["jet"])
