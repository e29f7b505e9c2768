"""Tests of the dataset cache (save_dataset / load_dataset / cached) and the ``data`` CLI verb.

Everything runs on tiny inputs written into ``tmp_path`` (no shared data needed).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from raw_files import write_tiny_mnist, write_tiny_physionet

from pyro_lmmvae import cli
from pyro_lmmvae.datasets import (
    LongitudinalDataset,
    load_dataset,
    load_physionet,
    make_health_mnist,
    make_rotating_mnist,
    save_dataset,
)
from pyro_lmmvae.datasets import cache as cache_module
from pyro_lmmvae.datasets import health_mnist as health_mnist_module
from pyro_lmmvae.datasets.cache import FORMAT_VERSION, cached

# --------------------------------------------------------------------------- tiny raw inputs


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnist")
    write_tiny_mnist(folder, n_per_digit=6)
    return folder


@pytest.fixture(scope="module")
def physio_root(tmp_path_factory):
    return write_tiny_physionet(tmp_path_factory.mktemp("physio"))


def _small_health(root, **kwargs):
    return make_health_mnist(root, **({"n_per_digit": 3, "n_times": 6} | kwargs))


def assert_same_dataset(a: LongitudinalDataset, b: LongitudinalDataset) -> None:
    """Every array, dtype, column, index and attribute identical."""
    assert (a.name, a.instance_column) == (b.name, b.instance_column)
    for field in ("y", "mask"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    assert (a.y_true is None) == (b.y_true is None)
    if a.y_true is not None:
        assert a.y_true.dtype == b.y_true.dtype
        np.testing.assert_array_equal(a.y_true, b.y_true)
    assert list(a.truth) == list(b.truth)
    for key in a.truth:
        x, y = np.asarray(a.truth[key]), np.asarray(b.truth[key])
        assert x.dtype == y.dtype and x.shape == y.shape, key
        np.testing.assert_array_equal(x, y)
    assert list(a.data.columns) == list(b.data.columns)
    assert list(a.data.dtypes) == list(b.data.dtypes)
    pd.testing.assert_frame_equal(a.data, b.data, check_exact=True)
    for column in a.data.columns:  # element types too (str stays str)
        assert [type(v) for v in a.data[column]] == [type(v) for v in b.data[column]], column


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- round trips


def test_round_trip_health_mnist(mnist_root, tmp_path):
    ds = _small_health(mnist_root, seed=2)
    path = save_dataset(ds, tmp_path / "h.npz", meta={"note": "x"})
    assert path == tmp_path / "h.npz" and _files(tmp_path) == ["h.npz"]
    back = load_dataset(path)
    assert_same_dataset(ds, back)
    assert back.data["id"].dtype == ds.data["id"].dtype
    with np.load(path, allow_pickle=False) as npz:
        assert str(npz["format_version"]) == FORMAT_VERSION
        assert json.loads(str(npz["meta"])) == {"note": "x"}


def test_round_trip_physionet(physio_root, tmp_path):
    ds = load_physionet(physio_root, min_hours=1, seed=1)
    assert ds.y_true is None and ds.data["icu_type"].map(type).eq(str).all()
    back = load_dataset(save_dataset(ds, tmp_path / "p.npz"))
    assert_same_dataset(ds, back)
    assert back.y_true is None


def test_round_trip_every_supported_column_kind(tmp_path):
    n = 4
    data = pd.DataFrame(
        {
            "label": pd.array(["x", "", "zé", "w"], dtype="string"),
            "flag": np.array([True, False, True, False]),
            "i64": np.arange(n, dtype=np.int64),
            "i32": np.arange(n, dtype=np.int32),
            "f64": np.linspace(0, 1, n),
            "f32": np.linspace(0, 1, n).astype(np.float32),
            "when": pd.to_datetime(["2020-01-01", "2020-01-02", "2021-03-04", "1999-12-31"]),
        },
        index=pd.Index([10, 11, 12, 13], name="row"),
    )
    data.insert(0, "id", pd.Series(["a", "a", "b", "b"], dtype=object, index=data.index))
    data["str_auto"] = np.array(["p", "q", "r", "s"])  # pandas' default string inference
    assert data["id"].dtype == object
    ds = LongitudinalDataset(
        data=data,
        y=np.arange(8.0).reshape(n, 2),
        mask=np.array([[1, 0], [1, 1], [0, 1], [1, 1]], dtype=bool),
        truth={"scalar": np.asarray(1.5), "names": np.array(["u", "v"]), "ints": np.arange(3)},
        name="handmade",
        instance_column="id",
    )
    back = load_dataset(save_dataset(ds, tmp_path / "d.npz"))
    assert_same_dataset(ds, back)
    assert back.data["id"].dtype == object
    assert back.data.index.name == "row"
    empty = LongitudinalDataset(
        data=pd.DataFrame({"id": pd.Series([], dtype=object)}),
        y=np.zeros((0, 3)),
        mask=np.zeros((0, 3), dtype=bool),
    )
    assert_same_dataset(empty, load_dataset(save_dataset(empty, tmp_path / "e.npz")))


@pytest.mark.parametrize(
    ("column", "truth", "match"),
    [
        (pd.Series(["a", "b"], dtype="category"), {}, "column 'bad' has dtype category"),
        (pd.Series([1, "b"], dtype=object), {}, "non-string values such as 1"),
        (pd.Series(["a", None], dtype=object), {}, "missing values"),
        (pd.Series([1, 2]), {"obj": np.array([{}, 1], dtype=object)}, "truth\\['obj'\\]"),
    ],
)
def test_unsupported_content_rejected_before_writing(tmp_path, column, truth, match):
    data = pd.DataFrame({"id": ["a", "b"], "bad": column})
    ds = LongitudinalDataset(data, np.zeros((2, 1)), np.ones((2, 1), bool), truth=truth)
    with pytest.raises(ValueError, match=match):
        save_dataset(ds, tmp_path / "sub" / "d.npz")
    assert _files(tmp_path / "sub") == []


def test_meta_must_be_json(tmp_path, mnist_root):
    ds = _small_health(mnist_root)
    with pytest.raises(ValueError, match="JSON-serializable"):
        save_dataset(ds, tmp_path / "d.npz", meta={"root": Path("x")})
    with pytest.raises(ValueError, match="JSON-serializable"):
        cached(tmp_path / "d.npz", lambda: pytest.fail("built"), {"f": object()})
    assert _files(tmp_path) == []


# --------------------------------------------------------------------------- cached()


def test_cached_builds_then_loads_then_rebuilds(tmp_path, mnist_root):
    calls = []

    def build(seed):
        def run():
            calls.append(seed)
            return _small_health(mnist_root, seed=seed)

        return run

    path = tmp_path / "c.npz"
    assert cached(None, build(0), {"seed": 0}).n_obs == 36 and not path.exists()
    first = cached(path, build(0), {"seed": 0, "shape": (3, 6)})
    assert calls == [0, 0] and _files(tmp_path) == ["c.npz"]
    stamp = path.stat().st_mtime_ns, path.stat().st_ino
    again = cached(path, build(0), {"shape": [3, 6], "seed": 0})  # same meta after JSON
    assert calls == [0, 0] and (path.stat().st_mtime_ns, path.stat().st_ino) == stamp
    assert_same_dataset(first, again)
    other = cached(path, build(1), {"seed": 1, "shape": (3, 6)})  # meta differs: rebuild
    assert calls == [0, 0, 1] and _files(tmp_path) == ["c.npz"]
    assert_same_dataset(other, load_dataset(path))
    assert not np.array_equal(other.mask, first.mask)


def test_generator_cache_keyed_on_arguments_not_root(tmp_path, mnist_root, monkeypatch):
    path = tmp_path / "h.npz"
    built = _small_health(mnist_root, seed=3, cache=path)
    assert_same_dataset(built, load_dataset(path))
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
    assert meta == {
        "generator": "health_mnist",
        "version": 1,
        "n_per_digit": 3,
        "n_times": 6,
        "missing_rate": 0.25,
        "balanced": False,
        "seed": 3,
    }

    def refuse(*args, **kwargs):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(health_mnist_module, "_build_health_mnist", refuse)
    # same arguments, moved raw data: loaded without reading MNIST
    assert_same_dataset(built, _small_health(tmp_path / "moved", seed=3, cache=path))
    with pytest.raises(AssertionError, match="rebuilt"):  # other arguments: rebuilt
        _small_health(mnist_root, seed=4, cache=path)
    assert_same_dataset(built, load_dataset(path))  # the failed rebuild left the file as it was
    assert _files(tmp_path) == ["h.npz"]
    monkeypatch.undo()
    rebuilt = _small_health(mnist_root, seed=4, cache=path)
    assert_same_dataset(rebuilt, load_dataset(path))
    assert not np.array_equal(rebuilt.mask, built.mask)


def test_rotating_and_physionet_cache(tmp_path, mnist_root, physio_root):
    kwargs = dict(n_instances=3, n_angles=4, n_test_instances=1, test_block=2, seed=1)
    rot = make_rotating_mnist(mnist_root, **kwargs, cache=tmp_path / "r.npz")
    assert_same_dataset(
        rot, make_rotating_mnist(tmp_path / "gone", **kwargs, cache=tmp_path / "r.npz")
    )
    phy = load_physionet(physio_root, min_hours=1, cache=tmp_path / "p.npz")
    assert_same_dataset(
        phy, load_physionet(tmp_path / "gone", min_hours=1, cache=tmp_path / "p.npz")
    )
    with np.load(tmp_path / "p.npz", allow_pickle=False) as npz:
        assert json.loads(str(npz["meta"]))["generator"] == "physionet2012"


def test_failing_builder_leaves_no_file(tmp_path):
    def boom():
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        cached(tmp_path / "sub" / "x.npz", boom, {"a": 1})
    assert list(tmp_path.rglob("*")) == []


def test_failed_write_leaves_no_partial_or_temporary_file(tmp_path, mnist_root, monkeypatch):
    ds = _small_health(mnist_root)
    path = save_dataset(ds, tmp_path / "d.npz")
    original = path.read_bytes()

    def half_write(handle, **arrays):
        handle.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.np, "savez_compressed", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_dataset(_small_health(mnist_root, seed=9), path)
    assert _files(tmp_path) == ["d.npz"] and path.read_bytes() == original
    with pytest.raises(OSError, match="disk full"):
        save_dataset(ds, tmp_path / "new.npz")
    assert _files(tmp_path) == ["d.npz"]


# --------------------------------------------------------------------------- bad cache files


def _rewrite(path: Path, **changes) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def test_bad_cache_files_give_clear_errors(tmp_path, mnist_root):
    good = save_dataset(_small_health(mnist_root), tmp_path / "good.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_dataset(tmp_path / "missing.npz")
    cases = {}
    cases["garbage.npz"] = b"this is not a zip file at all"
    cases["truncated.npz"] = good.read_bytes()[: good.stat().st_size // 2]
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3))
    cases["single.npy"] = buffer.getvalue()
    buffer = io.BytesIO()
    np.savez(buffer, weights=np.ones(3))
    cases["foreign.npz"] = buffer.getvalue()
    for name, payload in cases.items():
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(ValueError, match="is not a pyro_lmmvae dataset cache") as info:
            load_dataset(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(ValueError, match="not a regular file"):
        load_dataset(tmp_path)

    old = tmp_path / "old.npz"
    old.write_bytes(good.read_bytes())
    _rewrite(old, format_version=np.array("pyro_lmmvae.dataset/0"))
    with pytest.raises(ValueError, match="format version 'pyro_lmmvae.dataset/0'") as info:
        load_dataset(old)
    assert "old.npz" in str(info.value)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(good.read_bytes())
    _rewrite(broken, header=np.array('{"name": "x"}'))
    with pytest.raises(ValueError, match="broken.npz.*malformed header"):
        load_dataset(broken)
    _rewrite(broken, header=None)
    with pytest.raises(ValueError, match="member 'header' is missing"):
        load_dataset(broken)
    inconsistent = tmp_path / "inconsistent.npz"
    inconsistent.write_bytes(good.read_bytes())
    _rewrite(inconsistent, mask=np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="inconsistent.npz: the stored dataset is inconsistent"):
        load_dataset(inconsistent)


def test_cached_never_overwrites_a_foreign_file_but_upgrades_old_caches(tmp_path, mnist_root):
    foreign = tmp_path / "weights.npz"
    np.savez(foreign, weights=np.ones(3))
    before = foreign.read_bytes()
    with pytest.raises(ValueError, match="weights.npz is not a pyro_lmmvae dataset cache"):
        _small_health(mnist_root, cache=foreign)
    assert foreign.read_bytes() == before
    with pytest.raises(ValueError, match="not a regular file"):
        _small_health(mnist_root, cache=tmp_path)
    old = tmp_path / "old.npz"
    ds = _small_health(mnist_root, cache=old)
    _rewrite(old, format_version=np.array("pyro_lmmvae.dataset/0"))
    assert_same_dataset(ds, _small_health(mnist_root, cache=old))
    assert_same_dataset(ds, load_dataset(old))  # rewritten in the current format
    with pytest.raises(ValueError, match="cache path"):
        _small_health(mnist_root, cache=3)


# --------------------------------------------------------------------------- CLI


def test_cli_data_health_mnist(tmp_path, mnist_root, capsys):
    out = tmp_path / "h.npz"
    argv = ["data", "health-mnist", "--root", str(mnist_root), "--out", str(out)]
    argv += ["--n-per-digit", "3", "--n-times", "6", "--missing-rate", "0.5", "--seed", "2"]
    assert cli.main([*argv, "--balanced"]) == 0
    text = capsys.readouterr().out
    ds = load_dataset(out)
    assert ds.name == "health_mnist" and ds.n_obs == 36 and ds.n_features == 1296
    assert ds.data.groupby("id")["diseasePresence"].first().sum() == 2  # balanced: 1 per digit
    assert_same_dataset(ds, _small_health(mnist_root, missing_rate=0.5, seed=2, balanced=True))
    assert "health_mnist: 36 rows (train " in text and "D = 1296, 6 instances" in text
    assert "observed fraction" in text and f"wrote {out}" in text
    assert cli.main([*argv, "--balanced"]) == 0
    assert f"reused existing cache {out}" in capsys.readouterr().out
    assert cli.main(argv) == 0  # --no-balanced by default: other arguments, rebuilt
    assert f"wrote {out}" in capsys.readouterr().out


def test_cli_data_rotating_and_physionet(tmp_path, mnist_root, physio_root, capsys):
    out = tmp_path / "r.npz"
    argv = ["data", "rotating-mnist", "--root", str(mnist_root), "--out", str(out)]
    argv += ["--n-instances", "3", "--n-angles", "4", "--n-test-instances", "1"]
    assert cli.main([*argv, "--test-block", "2"]) == 0
    ds = load_dataset(out)
    assert (
        ds.name == "rotating_mnist" and ds.n_obs == 12 and (ds.data["split"] == "test").sum() == 2
    )
    out = tmp_path / "p.npz"
    argv = ["data", "physionet", "--root", str(physio_root), "--out", str(out)]
    assert cli.main([*argv, "--min-hours", "1", "--patients", "4", "--split-hour", "30"]) == 0
    ds = load_dataset(out)
    assert ds.n_instances == 4 and ds.n_features == 37
    text = capsys.readouterr().out
    assert "physionet2012-a: " in text and "D = 37, 4 instances" in text


def test_cli_data_help_lists_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["data", "health-mnist", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for expected in [
        "--n-per-digit N_PER_DIGIT number of '3's and of '6's (instances P = 2 x this) "
        "(default: 500)",
        "(default: 0.25)",
        "--balanced, --no-balanced",
        "(default: ../shared/data/mnist)",
    ]:
        assert expected in text, expected
    with pytest.raises(SystemExit):
        cli.main(["data", "physionet", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 36)" in text and "(default: 10)" in text and "(default: a)" in text
    with pytest.raises(SystemExit):
        cli.main(["data", "rotating-mnist", "--help"])
    assert "(default: 400)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:  # the demo verb is unchanged
        cli.main(["demo", "--help"])
    assert info.value.code == 0 and "--variant" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--n-per-digit", "0"], "n_per_digit must be >= 1"),
        (["--missing-rate", "1.5"], "missing_rate must be in"),
        (["--n-per-digit", "abc"], "invalid int value: 'abc'"),
        (["--n-per-digit", "50"], "exceeds the 6 MNIST training images"),
    ],
)
def test_cli_data_bad_values_exit_2(tmp_path, mnist_root, capsys, extra, match):
    out = tmp_path / "h.npz"
    with pytest.raises(SystemExit) as info:
        cli.main(["data", "health-mnist", "--root", str(mnist_root), "--out", str(out), *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err
    assert _files(tmp_path) == []


def test_cli_data_missing_root_exit_2(tmp_path, capsys):
    for verb, name in [
        ("health-mnist", "train-images-idx3-ubyte.gz"),
        ("rotating-mnist", "train-images-idx3-ubyte.gz"),
        ("physionet", "set-a.tar.gz"),
    ]:
        with pytest.raises(SystemExit) as info:
            cli.main(
                [
                    "data",
                    verb,
                    "--root",
                    str(tmp_path / "nowhere"),
                    "--out",
                    str(tmp_path / "x.npz"),
                ]
            )
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"put {name}" in err and str(tmp_path / "nowhere") in err and "--root" in err
    assert _files(tmp_path) == []
    with pytest.raises(SystemExit) as info:
        cli.main(["data", "health-mnist"])  # --out is required
    assert info.value.code == 2 and "--out" in capsys.readouterr().err
