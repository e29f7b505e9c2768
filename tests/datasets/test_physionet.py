"""Tests of the PhysioNet 2012 loader, mostly on a tiny synthetic archive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from raw_files import physionet_record, write_physionet

from pyro_lmmvae.datasets.physionet import VARIABLES, load_physionet

REAL_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "physionet2012"
J = {name: j for j, name in enumerate(VARIABLES)}


def _hourly(hours, param="HR", value=80):
    return [(f"{h:02d}:30", param, value) for h in hours]


@pytest.fixture()
def tiny(tmp_path):
    """Four patients; 100004 has only 3 observed hours."""
    records = {
        100001: physionet_record(
            100001,
            age=70,
            gender=1,
            icu=1,
            weight=80,
            rows=[
                ("00:10", "HR", 70),
                ("00:50", "HR", 90),  # same hour -> mean 80
                ("00:20", "Temp", 37.0),
                ("01:05", "Temp", -17.8),  # non-positive Temp -> missing
                ("01:05", "Temp", 0),  # non-positive Temp -> missing
                ("01:10", "HR", 100),
                ("02:00", "GCS", -1),  # -1 code -> missing, hour 2 not observed
                ("03:00", "Weight", 82),
                ("48:00", "HR", 60),  # merged into bin 47
                ("47:15", "HR", 80),  # bin 47 mean = 70
            ]
            + _hourly(range(5, 45)),
        ),
        100002: physionet_record(100002, age=50, gender=-1, icu=3, rows=_hourly(range(0, 48, 2))),
        100003: physionet_record(100003, age=40, gender=0, icu=4, rows=_hourly(range(10, 30))),
        100004: physionet_record(100004, age=30, gender=0, icu=2, rows=_hourly([1, 2, 3])),
    }
    deaths = {100001: 1, 100002: 0, 100003: 0, 100004: 1}
    return write_physionet(tmp_path / "physio", records, deaths)


def _rows(ds, rid):
    rows = np.flatnonzero(ds.data["id"].to_numpy() == rid)
    return ds.data.iloc[rows], rows


def _raw(ds):
    return np.where(ds.mask, ds.y * ds.truth["variable_std"] + ds.truth["variable_mean"], np.nan)


def test_binning_and_invalid_values(tiny):
    ds = load_physionet(tiny, min_hours=1, test_fraction=0.0, val_fraction=0.0)
    assert ds.n_features == 37 and len(VARIABLES) == 37
    assert len(set(VARIABLES)) == 37 and "Height" not in VARIABLES and "Weight" in VARIABLES
    frame, rows = _rows(ds, 100001)
    hours = frame["t"].to_numpy()
    # hour 2 only holds a -1 code: not a row; 5..44 hourly HR, 47 from 47:15 and 48:00
    assert hours.tolist() == [0, 1, 3, *range(5, 45), 47]
    raw = _raw(ds)[rows]
    assert raw[0, J["HR"]] == pytest.approx(80.0)  # two values in hour 0 averaged
    assert raw[0, J["Weight"]] == pytest.approx(80.0)  # Weight at 00:00 -> hour 0
    assert raw[0, J["Temp"]] == pytest.approx(37.0, rel=1e-6)
    assert not ds.mask[rows[1], J["Temp"]]  # non-positive Temps dropped
    assert raw[1, J["HR"]] == pytest.approx(100.0)
    assert raw[2, J["Weight"]] == pytest.approx(82.0)
    assert raw[-1, J["HR"]] == pytest.approx(70.0)  # 48:00 merged into bin 47
    assert ds.mask[rows[0]].sum() == 3  # HR, Temp, Weight
    assert not ds.mask[:, J["GCS"]].any()
    assert ds.mask.any(axis=1).all()
    assert np.all(ds.y[~ds.mask] == 0.0)
    # patient with Weight -1 has no Weight
    _, rows2 = _rows(ds, 100002)
    assert not ds.mask[rows2, J["Weight"]].any()


def test_min_hours_filter_and_covariates(tiny):
    ds = load_physionet(tiny, min_hours=10, test_fraction=0.0, val_fraction=0.0)
    assert sorted(ds.data["id"].unique()) == [100001, 100002, 100003]
    assert len(load_physionet(tiny, min_hours=3, test_fraction=0.0).data["id"].unique()) == 4
    per = ds.data.groupby("id").first()
    assert per["death"].to_dict() == {100001: 1, 100002: 0, 100003: 0}
    assert per["age"].to_dict() == {100001: 70, 100002: 50, 100003: 40}
    assert per["icu_type"].to_dict() == {100001: "1", 100002: "3", 100003: "4"}
    # rows ordered by patient then hour, one row per (patient, hour)
    assert not ds.data.duplicated(["id", "t"]).any()
    assert (ds.data.groupby("id", sort=False)["t"].apply(lambda s: s.is_monotonic_increasing)).all()
    assert ds.n_obs == 44 + 24 + 20


def test_gender_imputed_with_training_mode(tiny, tmp_path):
    ds = load_physionet(tiny, min_hours=1, test_fraction=0.0, val_fraction=0.0)
    # training patients with known gender: 1, 0, 0 -> mode 0
    assert ds.data.loc[ds.data["id"] == 100002, "gender"].unique().tolist() == [0]
    assert ds.data["gender"].dtype.kind == "i"
    # known training genders 1, 1, 0 -> mode 1
    records = {
        1: physionet_record(1, gender=1, rows=_hourly(range(12))),
        2: physionet_record(2, gender=1, rows=_hourly(range(12))),
        3: physionet_record(3, gender=0, rows=_hourly(range(12))),
        4: physionet_record(4, gender=-1, rows=_hourly(range(12))),
    }
    root = write_physionet(tmp_path / "g", records, dict.fromkeys(records, 0))
    ds = load_physionet(root, test_fraction=0.0, val_fraction=0.0)
    assert ds.data.loc[ds.data["id"] == 4, "gender"].unique().tolist() == [1]


def test_standardization_uses_training_entries_only(tmp_path):
    rng = np.random.default_rng(3)
    records = {}
    for rid in range(1, 11):
        values = rng.normal(100.0, 15.0, size=48).round(1)
        rows = [(f"{h:02d}:05", "HR", v) for h, v in enumerate(values)]
        rows += [(f"{h:02d}:05", "MechVent", 1) for h in range(0, 48, 3)]
        records[rid] = physionet_record(rid, rows=rows)
    root = write_physionet(tmp_path / "s", records, dict.fromkeys(records, 0))
    ds = load_physionet(root, test_fraction=0.3, val_fraction=0.25, seed=1)
    split = ds.data["split"].to_numpy()
    assert set(split) == {"train", "val", "test"}
    raw = _raw(ds)
    train = split == "train"
    hr = raw[train & ds.mask[:, J["HR"]], J["HR"]]
    mean, std = hr.mean(), hr.std()  # population std (ddof=0)
    np.testing.assert_allclose(ds.truth["variable_mean"][J["HR"]], mean, rtol=1e-5)
    np.testing.assert_allclose(ds.truth["variable_std"][J["HR"]], std, rtol=1e-5)
    # formula on every row, train or not: y = (raw - train mean) / train std
    m = ds.mask[:, J["HR"]]
    expected = (raw[m, J["HR"]] - mean) / std
    np.testing.assert_allclose(ds.y[m, J["HR"]], expected, rtol=1e-4, atol=1e-4)
    all_mean = raw[m, J["HR"]].mean()
    assert abs(all_mean - mean) > 1e-6  # the statistics differ from the all-rows ones
    # constant variable: std set to 1, observed entries 0; unobserved variable: mean 0, std 1
    assert ds.truth["variable_std"][J["MechVent"]] == 1.0
    assert ds.truth["variable_mean"][J["MechVent"]] == 1.0
    assert ds.truth["variable_mean"][J["ALP"]] == 0.0
    assert ds.truth["variable_std"][J["ALP"]] == 1.0
    assert list(ds.truth["variables"]) == list(VARIABLES)


def test_split_rules(tmp_path):
    records = {}
    for rid in range(1, 21):
        if rid <= 5:  # observed only before hour 36: not eligible
            hours = range(0, 30)
        elif rid <= 8:  # observed only from hour 36: not eligible
            hours = range(36, 48)
        else:
            hours = range(0, 48, 2)
        records[rid] = physionet_record(rid, rows=_hourly(hours))
    root = write_physionet(tmp_path / "sp", records, dict.fromkeys(records, 0))
    ds = load_physionet(root, test_fraction=0.25, val_fraction=0.2, split_hour=36, seed=2)
    data = ds.data
    test = data[data["split"] == "test"]
    test_ids = set(test["id"])
    assert len(test_ids) == 5  # round(0.25 * 20)
    assert test_ids <= set(range(9, 21))
    assert (test["t"] >= 36).all()
    of_test = data[data["id"].isin(test_ids)]
    assert (of_test.loc[of_test["t"] >= 36, "split"] == "test").all()
    assert (of_test.loc[of_test["t"] < 36, "split"] == "train").all()
    rest = data[~data["id"].isin(test_ids)]
    assert set(rest["split"]) == {"train", "val"}
    assert (rest["split"] == "val").sum() == round(0.2 * len(rest))
    again = load_physionet(root, test_fraction=0.25, val_fraction=0.2, split_hour=36, seed=2)
    assert (again.data["split"] == data["split"]).all()
    other = load_physionet(root, test_fraction=0.25, val_fraction=0.2, split_hour=36, seed=3)
    assert not (other.data["split"] == data["split"]).all()
    assert set(ds.split("test").data["id"]) == test_ids


def test_patients_limit(tiny):
    ds = load_physionet(tiny, min_hours=1, patients=2, test_fraction=0.0)
    assert ds.data["id"].unique().tolist() == [100001, 100002]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_hours": 0}, "min_hours"),
        ({"min_hours": 2.5}, "min_hours"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"split_hour": 48}, "split_hour"),
        ({"seed": -1}, "seed"),
        ({"patients": 0}, "patients"),
        ({"set_name": "z"}, "set_name"),
        ({"min_hours": 45}, "no patient"),
    ],
)
def test_bad_arguments(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_physionet(tiny, **kwargs)


def test_missing_paths(tmp_path, tiny):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_physionet(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="set-b.tar.gz"):
        load_physionet(tiny, set_name="b")
    (tiny / "Outcomes-a.txt").unlink()
    with pytest.raises(FileNotFoundError, match="Outcomes-a.txt"):
        load_physionet(tiny)


def test_missing_files_say_what_to_put_where(tmp_path, tiny):
    cache = tmp_path / "cache" / "p.npz"
    with pytest.raises(FileNotFoundError) as info:
        load_physionet(tmp_path / "nowhere", cache=cache)
    message = str(info.value)
    assert "set A archive not found: put set-a.tar.gz" in message
    assert f"in {(tmp_path / 'nowhere').resolve()} (the folder does not exist)" in message
    assert "root=" in message
    (tiny / "Outcomes-a.txt").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_physionet(tiny, cache=cache)
    message = str(info.value)
    assert "outcomes not found: put Outcomes-a.txt" in message and str(tiny.resolve()) in message
    assert "In-hospital_death" in message
    assert not (tmp_path / "cache").exists()


def test_damaged_archive(tmp_path, tiny):
    archive = tiny / "set-a.tar.gz"
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(ValueError, match="set-a.tar.gz"):
        load_physionet(tiny, cache=tmp_path / "p.npz")
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("01:00,HR", "line 8: expected 3"),
        ("01:00,HR,abc", "line 8: value 'abc'"),
        ("1h00,HR,80", "line 8: malformed time"),
        ("49:00,HR,80", "line 8: time '49:00'"),
        ("01:00,Foo,80", "line 8: unknown parameter 'Foo'"),
    ],
)
def test_malformedphysionet_record(tmp_path, line, match):
    text = physionet_record(7, rows=[]) + line + "\n"
    root = write_physionet(tmp_path / "bad", {7: text}, {7: 0})
    with pytest.raises(ValueError, match=match) as info:
        load_physionet(root, min_hours=1)
    assert "set-a/7.txt" in str(info.value)
    # with a cache: the same error, and no cache (or temporary) file left behind
    cache_dir = tmp_path / "cache"
    with pytest.raises(ValueError, match=match):
        load_physionet(root, min_hours=1, cache=cache_dir / "p.npz")
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


def test_bad_header_and_missing_outcome(tmp_path):
    root = write_physionet(tmp_path / "h", {7: "Time;Parameter;Value\n"}, {7: 0})
    with pytest.raises(ValueError, match="line 1: expected header"):
        load_physionet(root, min_hours=1)
    root = write_physionet(
        tmp_path / "o", {7: physionet_record(7, rows=_hourly(range(12)))}, {7: 0}
    )
    (root / "Outcomes-a.txt").write_text(
        "RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n8,1,1,1,-1,0\n"
    )
    with pytest.raises(ValueError, match="RecordID 7"):
        load_physionet(root)
    cache_dir = tmp_path / "cache"
    with pytest.raises(ValueError, match="no row in .*Outcomes-a.txt"):
        load_physionet(root, cache=cache_dir / "p.npz")
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


def test_cache_reused_without_raw_files(tmp_path, tiny):
    cache = tmp_path / "p.npz"
    built = load_physionet(tiny, min_hours=1, seed=4, cache=cache)
    (tiny / "set-a.tar.gz").unlink()  # root is not part of the cache key
    again = load_physionet(tmp_path / "moved", min_hours=1, seed=4, cache=cache)
    assert again.data.equals(built.data)
    np.testing.assert_array_equal(again.y, built.y)
    with pytest.raises(FileNotFoundError, match="set-a.tar.gz"):  # other args: rebuild
        load_physionet(tiny, min_hours=1, seed=5, cache=cache)
    assert load_physionet(tiny, min_hours=1, seed=4, cache=cache).data.equals(built.data)


needs_real = pytest.mark.skipif(not REAL_ROOT.is_dir(), reason="shared PhysioNet data absent")


@needs_real
def test_real_archive_subset():
    ds = load_physionet(REAL_ROOT, patients=300)
    assert ds.n_features == 37
    assert 250 <= ds.n_instances <= 300
    assert ds.mask.any(axis=1).all()
    assert np.all(ds.y[~ds.mask] == 0.0)
    train = (ds.data["split"] == "train").to_numpy()
    for j, name in enumerate(VARIABLES):
        values = ds.y[train & ds.mask[:, j], j].astype(np.float64)
        if values.size < 2:
            continue
        assert abs(values.mean()) < 1e-4, name
        if name == "MechVent" or ds.truth["variable_std"][j] == 1.0:
            continue  # constant in training (MechVent is always 1): std set to 1, values 0
        assert values.std() == pytest.approx(1.0, abs=1e-4), name
    assert set(ds.data["split"]) == {"train", "val", "test"}
    assert set(ds.data["icu_type"]) <= {"1", "2", "3", "4"}
    assert set(ds.data["death"]) <= {0, 1} and set(ds.data["gender"]) <= {0, 1}


@needs_real
def test_real_archive_full():  # about 4 s on one core
    ds = load_physionet(REAL_ROOT)
    assert 3900 <= ds.n_instances <= 4000
    assert 170_000 <= ds.n_obs <= 190_000
    assert ds.data.groupby("id")["death"].first().sum() > 500
