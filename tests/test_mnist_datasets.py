"""Tests of the MNIST IDX reader and the Health / Rotating MNIST generators (spec section 7)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from pyro_lmmvae.datasets.mnist import (
    health_transform,
    load_mnist_digits,
    make_health_mnist,
    make_rotating_mnist,
    pad_image,
    read_idx,
)

MNIST_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

N_PER_DIGIT = 10
N_INSTANCES = 12


def _require_mnist() -> Path:
    if not (MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST data not found at {MNIST_ROOT}")
    return MNIST_ROOT


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim])
    header += b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


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
    (tmp_path / "img").write_bytes(_idx_bytes(images))
    (tmp_path / "lab.gz").write_bytes(gzip.compress(_idx_bytes(labels)))
    # A .gz name is not needed: compression is detected from the content.
    (tmp_path / "img_gz_noext").write_bytes(gzip.compress(_idx_bytes(images)))

    out = read_idx(tmp_path / "img")
    assert out.dtype == np.uint8 and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "lab.gz")), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "img_gz_noext"), images)
    out[0, 0, 0] = 1  # writable copy

    floats = np.array([[1.5, -2.0]], dtype=np.float32)
    (tmp_path / "f").write_bytes(_idx_bytes(floats.astype(">f4"), type_code=0x0D))
    got = read_idx(tmp_path / "f")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, floats)


def test_read_idx_errors(tmp_path):
    labels = np.arange(6, dtype=np.uint8)
    good = _idx_bytes(labels)

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
