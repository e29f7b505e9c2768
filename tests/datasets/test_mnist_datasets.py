"""Tests of the MNIST IDX reader and the Health / Rotating MNIST generators (spec section 7).

Every behaviour is tested on a tiny synthetic MNIST folder written into ``tmp_path``
(:func:`write_tiny_mnist`); the tests on the real files skip when ``../shared/data`` is absent.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from raw_files import idx_bytes, write_tiny_mnist
from scipy import ndimage

from pyro_lmmvae.datasets.mnist import (
    health_transform,
    load_mnist_digits,
    load_mnist_training,
    make_health_mnist,
    make_rotating_mnist,
    pad_image,
    read_idx,
)

MNIST_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

N_PER_DIGIT = 10
N_INSTANCES = 12


def _require_mnist() -> Path:
    if not (MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST data not found at {MNIST_ROOT}")
    return MNIST_ROOT


def _orientation(image: np.ndarray) -> float:
    """Principal-axis orientation in degrees (counter-clockwise as displayed), mod 180."""
    im = image.reshape(int(np.sqrt(image.size)), -1).astype(np.float64)
    rows, cols = np.indices(im.shape)
    x, y, w = cols, -rows, im.sum()
    mx, my = (im * x).sum() / w, (im * y).sum() / w
    mu20 = (im * (x - mx) ** 2).sum() / w
    mu02 = (im * (y - my) ** 2).sum() / w
    mu11 = (im * (x - mx) * (y - my)).sum() / w
    return float(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) centre of mass; rows grow downwards, columns to the right."""
    im = image.astype(np.float64)
    rows, cols = np.indices(im.shape)
    return float((im * rows).sum() / im.sum()), float((im * cols).sum() / im.sum())


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_mnist")
    write_tiny_mnist(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_health(tiny_root):
    return make_health_mnist(tiny_root, n_per_digit=8, balanced=True, seed=1)


@pytest.fixture(scope="module")
def tiny_rotating(tiny_root):
    return make_rotating_mnist(tiny_root, n_instances=8, n_test_instances=3, seed=2)


@pytest.fixture(scope="module")
def health():
    root = _require_mnist()
    return make_health_mnist(root, n_per_digit=N_PER_DIGIT, seed=3)


@pytest.fixture(scope="module")
def rotating():
    root = _require_mnist()
    return make_rotating_mnist(root, n_instances=N_INSTANCES, n_test_instances=4, seed=5)


# --------------------------------------------------------------------------- read_idx


def test_read_idx_round_trip_raw_and_gzip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 4, 5), dtype=np.uint8)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    (tmp_path / "img").write_bytes(idx_bytes(images))
    (tmp_path / "lab.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    # A .gz name is not needed: compression is detected from the content.
    (tmp_path / "img_gz_noext").write_bytes(gzip.compress(idx_bytes(images)))

    out = read_idx(tmp_path / "img")
    assert out.dtype == np.uint8 and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "lab.gz")), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "img_gz_noext"), images)
    out[0, 0, 0] = 1  # writable copy

    floats = np.array([[1.5, -2.0]], dtype=np.float32)
    (tmp_path / "f").write_bytes(idx_bytes(floats.astype(">f4"), type_code=0x0D))
    got = read_idx(tmp_path / "f")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, floats)


def test_read_idx_errors(tmp_path):
    labels = np.arange(6, dtype=np.uint8)
    good = idx_bytes(labels)

    with pytest.raises(FileNotFoundError, match="missing.idx"):
        read_idx(tmp_path / "missing.idx")

    bad_magic = tmp_path / "bad_magic"
    bad_magic.write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad_magic)

    bad_type = tmp_path / "bad_type"
    bad_type.write_bytes(b"\x00\x00\x07\x01" + good[4:])
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad_type)

    wrong_size = tmp_path / "wrong_size"
    wrong_size.write_bytes(good[:4] + (7).to_bytes(4, "big") + good[8:])
    with pytest.raises(ValueError, match="data bytes"):
        read_idx(wrong_size)

    truncated = tmp_path / "truncated"
    truncated.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(truncated)

    bad_gzip = tmp_path / "bad.gz"
    bad_gzip.write_bytes(gzip.compress(good)[:12])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(bad_gzip)


def test_read_idx_shared_mnist():
    root = _require_mnist()
    images = read_idx(root / "train-images-idx3-ubyte.gz")
    labels = read_idx(root / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    assert np.bincount(labels, minlength=10).tolist() == TRAIN_COUNTS
    assert read_idx(root / "t10k-labels-idx1-ubyte.gz").shape == (10000,)
    assert read_idx(root / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)
    np.testing.assert_allclose(images.mean() / 255.0, 0.1306604762738429, rtol=1e-9)


def test_load_mnist_digits():
    root = _require_mnist()
    images, idx = load_mnist_digits(root, digit=6, n=25, seed=1)
    labels = read_idx(root / "train-labels-idx1-ubyte.gz")
    assert images.shape == (25, 28, 28) and idx.shape == (25,)
    assert np.unique(idx).size == 25
    assert np.all(labels[idx] == 6)
    again, idx2 = load_mnist_digits(root, digit=6, n=25, seed=1)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_array_equal(images, again)
    with pytest.raises(ValueError, match="digit"):
        load_mnist_digits(root, digit=10, n=1)
    with pytest.raises(ValueError, match="exceeds"):
        load_mnist_digits(root, digit=5, n=5422)
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist_digits(root / "nowhere", digit=3, n=1)


# --------------------------------------------------------------------------- Health MNIST


def test_health_shapes_and_covariates(health):
    n_inst = 2 * N_PER_DIGIT
    data = health.data
    assert health.y.shape == (n_inst * 20, 36 * 36)
    assert health.y.dtype == np.float32 and health.mask.dtype == np.bool_
    assert health.y_true is not None and health.y_true.min() >= 0 and health.y_true.max() <= 1
    assert list(data.columns) == [
        "id",
        "age",
        "sex",
        "diseasePresence",
        "diseaseAge",
        "diseaseAge_z",
        "location",
        "angle",
        "digit",
        "split",
    ]
    assert health.n_instances == n_inst
    assert np.array_equal(data["sex"], (data["digit"] == 6).astype(int))
    assert (data.loc[data["digit"] == 3, "sex"] == 0).all()
    assert data["digit"].value_counts().to_dict() == {3: 20 * N_PER_DIGIT, 6: 20 * N_PER_DIGIT}
    per_inst = data.groupby("id")
    for column in ["location", "diseasePresence", "sex", "digit"]:
        assert (per_inst[column].nunique() == 1).all(), column
    assert (per_inst["age"].apply(lambda a: list(a) == list(range(20)))).all()
    diseased = data["diseasePresence"] == 1
    expected = np.where(diseased, data["age"] - 9, 0)
    np.testing.assert_array_equal(data["diseaseAge"], expected)
    # diseaseAge_z: zero on healthy rows, standardized on diseased training rows.
    assert (data.loc[~diseased, "diseaseAge_z"] == 0).all()
    ref = data.loc[diseased & (data["split"] == "train"), "diseaseAge_z"]
    assert abs(ref.mean()) < 1e-9 and abs(ref.std(ddof=0) - 1) < 1e-9
    labels = read_idx(MNIST_ROOT / "train-labels-idx1-ubyte.gz")
    inst_digit = per_inst["digit"].first().to_numpy()
    np.testing.assert_array_equal(labels[health.truth["mnist_index"]], inst_digit)
    assert np.unique(health.truth["mnist_index"]).size == n_inst


def test_health_angle_rule(health):
    data = health.data
    np.testing.assert_array_equal(health.truth["angle"], data["angle"])
    diseased = data["diseasePresence"].to_numpy() == 1
    t = data["age"].to_numpy(dtype=float)
    offset = np.where(diseased, 45.0 / (1.0 + np.exp(-(t - 9.0))), 5.0)
    noise = data["angle"].to_numpy() - offset
    for group in (~diseased, diseased, np.ones_like(diseased)):
        e = noise[group]
        n = e.size
        assert n >= 60
        assert abs(e.mean()) < 4 * 2.0 / np.sqrt(n)
        assert abs(e.std(ddof=1) - 2.0) < 4 * 2.0 / np.sqrt(2 * (n - 1))


def test_health_images_reproduce(health):
    root = _require_mnist()
    images = read_idx(root / "train-images-idx3-ubyte.gz")
    data = health.data
    index = health.truth["mnist_index"]
    inst = data["id"].map({lab: p for p, lab in enumerate(health.truth["instance_labels"])})
    for row in [0, 7, 19, 20 * N_PER_DIGIT + 13, len(data) - 1]:
        padded = pad_image(images[index[inst[row]]])
        assert padded.shape == (36, 36)
        expected = health_transform(padded, data["angle"][row], float(data["age"][row]))
        np.testing.assert_array_equal(health.y_true[row], expected.reshape(-1) / np.float32(255))
        # Independent recomputation with scipy directly.
        rot = ndimage.rotate(padded.astype(float), data["angle"][row], reshape=False)
        t = data["age"][row]
        direct = np.clip(np.round(ndimage.shift(rot, (t / 10, t / 10))), 0, 255)
        np.testing.assert_array_equal(health.y_true[row] * 255, direct.reshape(-1))
    np.testing.assert_array_equal(health.y, np.where(health.mask, health.y_true, 0))


def test_health_missingness(health):
    n = health.mask.size
    missing = 1.0 - health.mask.mean()
    assert abs(missing - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)


def test_health_split():
    root = _require_mnist()
    ds = make_health_mnist(root, n_per_digit=25, seed=0)  # P = 50, 5 test instances
    data = ds.data
    counts = data["split"].value_counts().to_dict()
    # 5 test instances: 75 test rows, 25 early rows in train; 900 other rows -> 180 val.
    assert counts == {"test": 75, "val": 180, "train": 745}
    test_ids = set(data.loc[data["split"] == "test", "id"])
    assert len(test_ids) == 5
    rows = data["id"].isin(test_ids)
    assert (data.loc[rows & (data["age"] >= 5), "split"] == "test").all()
    assert (data.loc[rows & (data["age"] < 5), "split"] == "train").all()


def test_health_determinism_and_options():
    root = _require_mnist()
    a = make_health_mnist(root, n_per_digit=4, n_times=8, seed=11)
    b = make_health_mnist(root, n_per_digit=4, n_times=8, seed=11)
    c = make_health_mnist(root, n_per_digit=4, n_times=8, seed=12)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.data.equals(b.data)
    assert not np.array_equal(a.y_true, c.y_true)
    bal = make_health_mnist(root, n_per_digit=6, n_times=6, balanced=True, seed=2)
    per_inst = bal.data.groupby("id")[["digit", "diseasePresence"]].first()
    assert per_inst.groupby("digit")["diseasePresence"].sum().to_dict() == {3: 3, 6: 3}
    with pytest.raises(ValueError, match="n_times"):
        make_health_mnist(root, n_per_digit=2, n_times=5)
    with pytest.raises(ValueError, match="missing_rate"):
        make_health_mnist(root, n_per_digit=2, missing_rate=1.0)


# --------------------------------------------------------------------------- Rotating MNIST


def test_rotating_shapes_and_angles(rotating):
    data = rotating.data
    assert rotating.y.shape == (N_INSTANCES * 16, 784)
    assert rotating.mask.all()
    np.testing.assert_array_equal(rotating.y, rotating.y_true)
    k = data["angle_index"].to_numpy()
    np.testing.assert_array_equal(k, np.tile(np.arange(16), N_INSTANCES))
    np.testing.assert_allclose(data["angle"], 2 * np.pi * k / 16)
    images = read_idx(MNIST_ROOT / "train-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_ROOT / "train-labels-idx1-ubyte.gz")
    index = rotating.truth["mnist_index"]
    assert np.all(labels[index] == 3) and np.unique(index).size == N_INSTANCES
    source = images[index].reshape(N_INSTANCES, -1).astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(rotating.y[k == 0], source)
    # A quarter turn on the 16-angle grid (k = 4) is an exact 90-degree rotation.
    quarter = np.rot90(images[index], k=1, axes=(1, 2)).reshape(N_INSTANCES, -1) / 255
    np.testing.assert_allclose(rotating.y[k == 4], quarter, atol=1e-6)


def test_rotating_split(rotating):
    data = rotating.data
    counts = data["split"].value_counts().to_dict()
    n_rest = N_INSTANCES * 16 - 4 * 4
    assert counts == {"test": 16, "val": round(0.2 * n_rest), "train": n_rest - round(0.2 * n_rest)}
    test = data[data["split"] == "test"]
    assert test["id"].nunique() == 4
    for _, rows in test.groupby("id"):
        ks = set(rows["angle_index"])
        assert len(ks) == 4
        starts = [s for s in range(16) if {(s + j) % 16 for j in range(4)} == ks]
        assert len(starts) == 1
    start = rotating.truth["test_start"]
    assert (start >= 0).sum() == 4


def test_rotating_defaults_split_counts_and_determinism():
    root = _require_mnist()
    a = make_rotating_mnist(root, n_instances=50, n_test_instances=40, seed=0)
    b = make_rotating_mnist(root, n_instances=50, n_test_instances=40, seed=0)
    assert a.data.equals(b.data)
    np.testing.assert_array_equal(a.y, b.y)
    assert (a.data["split"] == "test").sum() == 160
    starts = a.truth["test_start"][a.truth["test_start"] >= 0]
    assert starts.size == 40 and starts.min() >= 0 and starts.max() < 16
    with pytest.raises(ValueError, match="n_test_instances"):
        make_rotating_mnist(root, n_instances=3, n_test_instances=4)
    with pytest.raises(ValueError, match="test_block"):
        make_rotating_mnist(root, n_instances=3, n_test_instances=1, test_block=16)


# --------------------------------------------------------------------------- tiny inputs
# Everything below runs on the tiny synthetic MNIST folder (no shared data needed).

TINY_P = 16  # 8 '3's and 8 '6's
TINY_T = 20


def test_tiny_health_shapes_and_covariates(tiny_root, tiny_health):
    ds, data = tiny_health, tiny_health.data
    images = read_idx(tiny_root / "train-images-idx3-ubyte.gz")
    labels = read_idx(tiny_root / "train-labels-idx1-ubyte.gz")
    assert ds.y.shape == ds.mask.shape == ds.y_true.shape == (TINY_P * TINY_T, 1296)
    assert ds.y.dtype == np.float32 and ds.mask.dtype == np.bool_
    assert ds.y_true.dtype == np.float32 and 0 <= ds.y_true.min() and ds.y_true.max() <= 1
    assert ds.n_instances == TINY_P and ds.name == "health_mnist"
    np.testing.assert_array_equal(ds.y, np.where(ds.mask, ds.y_true, 0))
    per_inst = data.groupby("id", sort=False)
    for column in ["location", "diseasePresence", "sex", "digit"]:
        assert (per_inst[column].nunique() == 1).all(), column
    assert (per_inst["age"].apply(lambda a: list(a) == list(range(TINY_T)))).all()
    np.testing.assert_array_equal(data["sex"], (data["digit"] == 6).astype(np.int64))
    diseased = data["diseasePresence"] == 1
    np.testing.assert_array_equal(data["diseaseAge"], np.where(diseased, data["age"] - 9, 0))
    assert (data.loc[~diseased, "diseaseAge_z"] == 0).all()
    ref = data.loc[diseased & (data["split"] == "train"), "diseaseAge_z"]
    assert abs(ref.mean()) < 1e-9 and abs(ref.std(ddof=0) - 1) < 1e-9
    # balanced: exactly half of each digit diseased
    first = per_inst[["digit", "diseasePresence"]].first()
    assert first.groupby("digit")["diseasePresence"].sum().to_dict() == {3: 4, 6: 4}
    # source images: the right digits, without replacement; '3's first, then '6's
    index = ds.truth["mnist_index"]
    np.testing.assert_array_equal(labels[index], first["digit"].to_numpy())
    assert np.unique(index).size == TINY_P and list(first["digit"]) == [3] * 8 + [6] * 8
    # every image is the documented transform of its source image
    inst = np.repeat(np.arange(TINY_P), TINY_T)
    for row in [0, 13, 8 * TINY_T + 19, len(data) - 1]:
        padded = pad_image(images[index[inst[row]]])
        expected = health_transform(padded, data["angle"][row], float(data["age"][row]))
        np.testing.assert_array_equal(ds.y_true[row], expected.reshape(-1) / np.float32(255))


def test_tiny_health_angle_semantics(tiny_health):
    data, images = tiny_health.data, tiny_health.y_true
    angle = data["angle"].to_numpy()
    diseased = data["diseasePresence"].to_numpy() == 1
    healthy = ~diseased
    # healthy instances stay near 5 degrees (N(5, 2^2) per row)
    n = int(healthy.sum())
    assert abs(angle[healthy].mean() - 5.0) < 4 * 2.0 / np.sqrt(n)
    assert np.abs(angle[healthy] - 5.0).max() < 5 * 2.0
    # diseased instances: angle increases with diseaseAge (45 * sigmoid(t - 9) + noise)
    disease_age = data["diseaseAge"].to_numpy()
    rank = np.corrcoef(np.argsort(np.argsort(angle[diseased])), disease_age[diseased])[0, 1]
    assert rank > 0.9
    for _, rows in data[diseased].groupby("id"):
        first, last = rows.index[0], rows.index[-1]
        assert angle[last] - angle[first] > 30.0  # expected 45 +- 2.8
        # the image itself turns by the covariate's angle (counter-clockwise as displayed)
        turned = (_orientation(images[last]) - _orientation(images[first])) % 180.0
        assert turned == pytest.approx(angle[last] - angle[first], abs=2.0)


def test_tiny_health_age_shift_moves_centre_down_right(tiny_root):
    images = read_idx(tiny_root / "train-images-idx3-ubyte.gz")
    padded = pad_image(images[0])
    centres = np.array([_centre_of_mass(health_transform(padded, 5.0, t)) for t in range(20)])
    assert np.all(np.diff(centres, axis=0) > 0)  # down (rows) and right (columns)
    slope = np.polyfit(np.arange(20), centres, 1)[0]
    np.testing.assert_allclose(slope, [0.1, 0.1], atol=0.01)  # t / 10 px per time point


def test_tiny_health_missingness(tiny_root):
    for rate in (0.25, 0.6):
        ds = make_health_mnist(tiny_root, n_per_digit=4, n_times=8, missing_rate=rate, seed=4)
        n = ds.mask.size
        assert abs((1.0 - ds.mask.mean()) - rate) < 4 * np.sqrt(rate * (1 - rate) / n)
    none = make_health_mnist(tiny_root, n_per_digit=2, n_times=6, missing_rate=0.0)
    assert none.mask.all()


def test_tiny_health_split(tiny_health):
    data = tiny_health.data
    n_test_inst = round(0.1 * TINY_P)  # 2
    test = data["split"] == "test"
    test_ids = set(data.loc[test, "id"])
    assert len(test_ids) == n_test_inst
    assert test.sum() == n_test_inst * (TINY_T - 5)
    of_test = data["id"].isin(test_ids)
    assert (data.loc[of_test & (data["age"] >= 5), "split"] == "test").all()
    assert (data.loc[of_test & (data["age"] < 5), "split"] == "train").all()
    rest = data[~of_test]
    assert set(rest["split"]) == {"train", "val"}
    assert (rest["split"] == "val").sum() == round(0.2 * len(rest))
    # the (instance, time) observations of the three splits are disjoint and cover every row
    keys = {
        name: set(zip(part.data["id"], part.data["age"], strict=True))
        for name in ("train", "val", "test")
        for part in [tiny_health.split(name)]
    }
    assert keys["test"].isdisjoint(keys["train"] | keys["val"])
    assert keys["train"].isdisjoint(keys["val"])
    assert sum(len(k) for k in keys.values()) == len(data) == TINY_P * TINY_T


def test_tiny_health_determinism(tiny_root):
    kwargs = dict(n_per_digit=4, n_times=6)
    a = make_health_mnist(tiny_root, **kwargs, seed=7)
    b = make_health_mnist(tiny_root, **kwargs, seed=7)
    c = make_health_mnist(tiny_root, **kwargs, seed=8)
    for name in ("y", "mask", "y_true"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.data.equals(b.data)
    assert a.truth.keys() == b.truth.keys()
    for key in a.truth:
        np.testing.assert_array_equal(a.truth[key], b.truth[key])
    assert not np.array_equal(a.mask, c.mask)
    assert not a.data["angle"].equals(c.data["angle"])


def test_tiny_rotating_shapes_and_images(tiny_root, tiny_rotating):
    ds, data = tiny_rotating, tiny_rotating.data
    images = read_idx(tiny_root / "train-images-idx3-ubyte.gz")
    labels = read_idx(tiny_root / "train-labels-idx1-ubyte.gz")
    assert ds.y.shape == (8 * 16, 784) and ds.mask.all() and ds.y.dtype == np.float32
    np.testing.assert_array_equal(ds.y, ds.y_true)
    assert list(data.columns) == ["id", "angle", "angle_index", "digit", "split"]
    k = data["angle_index"].to_numpy()
    np.testing.assert_array_equal(k, np.tile(np.arange(16), 8))
    np.testing.assert_allclose(data["angle"], 2 * np.pi * k / 16)
    index = ds.truth["mnist_index"]
    assert np.all(labels[index] == 3) and np.unique(index).size == 8
    np.testing.assert_array_equal(ds.y[k == 0], images[index].reshape(8, -1) / np.float32(255))
    quarter = np.rot90(images[index], k=1, axes=(1, 2)).reshape(8, -1) / np.float32(255)
    np.testing.assert_allclose(ds.y[k == 4], quarter, atol=1e-6)
    # the bar turns by 2 pi k / 16 (counter-clockwise as displayed)
    turned = (_orientation(ds.y[2]) - _orientation(ds.y[0])) % 180.0
    assert turned == pytest.approx(45.0, abs=2.0)


def test_tiny_rotating_split_and_determinism(tiny_root, tiny_rotating):
    data = tiny_rotating.data
    test = data[data["split"] == "test"]
    assert len(test) == 3 * 4 and test["id"].nunique() == 3
    start = tiny_rotating.truth["test_start"]
    assert (start >= 0).sum() == 3
    labels = tiny_rotating.truth["instance_labels"]
    for p in np.flatnonzero(start >= 0):
        ks = set(test.loc[test["id"] == labels[p], "angle_index"])
        assert ks == {(start[p] + j) % 16 for j in range(4)}  # cyclic block
    rest = data[data["split"] != "test"]
    assert (rest["split"] == "val").sum() == round(0.2 * len(rest))
    again = make_rotating_mnist(tiny_root, n_instances=8, n_test_instances=3, seed=2)
    assert again.data.equals(data)
    np.testing.assert_array_equal(again.y, tiny_rotating.y)
    other = make_rotating_mnist(tiny_root, n_instances=8, n_test_instances=3, seed=3)
    assert not other.data["split"].equals(data["split"])
    # a block may wrap around the end of the angle grid
    wide = make_rotating_mnist(
        tiny_root, n_instances=8, n_angles=4, n_test_instances=8, test_block=3, seed=0
    )
    for p, s in enumerate(wide.truth["test_start"]):
        rows = wide.data.iloc[p * 4 : (p + 1) * 4]
        held = set(rows.loc[rows["split"] == "test", "angle_index"])
        assert held == {(s + j) % 4 for j in range(3)}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda root: make_health_mnist(root, n_per_digit=0), "n_per_digit"),
        (lambda root: make_health_mnist(root, n_per_digit=1, n_times=5), "n_times"),
        (lambda root: make_health_mnist(root, n_per_digit=1, missing_rate=1.0), "missing_rate"),
        (lambda root: make_health_mnist(root, n_per_digit=1, balanced=1), "balanced"),
        (lambda root: make_health_mnist(root, n_per_digit=1, seed=-1), "seed"),
        (lambda root: make_rotating_mnist(root, n_instances=2, digit=10), "digit"),
        (lambda root: make_rotating_mnist(root, n_instances=2, n_test_instances=3), "n_test"),
        (lambda root: make_rotating_mnist(root, n_test_instances=1, test_block=16), "test_block"),
    ],
)
def test_bad_arguments_checked_before_any_file(tmp_path, call, match):
    """Invalid arguments fail before the MNIST files are looked for or a cache is written."""
    with pytest.raises(ValueError, match=match):
        call(tmp_path / "nowhere")


def test_too_many_images_requested(tiny_root, tmp_path):
    cache = tmp_path / "c.npz"
    with pytest.raises(ValueError, match="exceeds the 8 MNIST training images of digit 3"):
        make_health_mnist(tiny_root, n_per_digit=9, cache=cache)
    assert list(tmp_path.iterdir()) == []


def test_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        make_health_mnist(tmp_path / "nowhere", n_per_digit=1)
    message = str(info.value)
    assert "MNIST training images not found" in message
    assert "put train-images-idx3-ubyte.gz" in message
    assert str((tmp_path / "nowhere").resolve()) in message and "does not exist" in message
    assert "root=" in message
    # images present, labels missing
    write_tiny_mnist(tmp_path / "half")
    (tmp_path / "half" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="labels not found: put train-labels-idx1"):
        make_rotating_mnist(
            tmp_path / "half", n_instances=2, n_test_instances=1, cache=tmp_path / "r.npz"
        )
    assert not (tmp_path / "r.npz").exists()


def test_uncompressed_files_without_gz_name(tmp_path):
    images, labels = write_tiny_mnist(tmp_path / "raw", compress=False)
    got_images, got_labels = load_mnist_training(tmp_path / "raw")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_training_set_reread_when_file_replaced(tmp_path):
    root = tmp_path / "m"
    first, _ = write_tiny_mnist(root, seed=0)
    np.testing.assert_array_equal(load_mnist_training(root)[0], first)
    second, _ = write_tiny_mnist(root, seed=1)
    path = root / "train-images-idx3-ubyte.gz"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # coarse clocks
    np.testing.assert_array_equal(load_mnist_training(root)[0], second)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda raw: raw[: len(raw) - 100], "data bytes"),  # truncated data
        (lambda raw: raw[:6], "truncated"),  # truncated header
        (lambda raw: b"\x12\x34" + raw[2:], "magic"),  # wrong magic
        (lambda raw: raw[:2] + b"\x07" + raw[3:], "magic"),  # unknown type code
    ],
)
def test_damaged_idx_file_leaves_no_cache(tmp_path, damage, match):
    root = tmp_path / "m"
    write_tiny_mnist(root)
    path = root / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(damage(gzip.decompress(path.read_bytes()))))
    cache_dir = tmp_path / "cache"
    with pytest.raises(ValueError, match=match) as info:
        make_health_mnist(root, n_per_digit=2, n_times=6, cache=cache_dir / "h.npz")
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
    with pytest.raises(ValueError, match=match):
        make_rotating_mnist(root, n_instances=2, n_test_instances=1, cache=cache_dir / "r.npz")
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


def test_labels_and_images_disagree(tmp_path):
    root = tmp_path / "m"
    images, labels = write_tiny_mnist(root)
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels[:-1])))
    with pytest.raises(ValueError, match="labels for"):
        make_health_mnist(root, n_per_digit=1, n_times=6)
