"""Tests for the synthetic generator, the dataset container and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_lmmvae.datasets.base import LongitudinalDataset
from pyro_lmmvae.datasets.synthetic import make_synthetic, synthetic_decoder
from pyro_lmmvae.metrics import (
    effect_recovery,
    imputation_mse,
    mcc,
    observed_mse,
    prediction_mse,
)

N_INST, N_TIMES, L_STAR, D = 300, 20, 4, 16


@pytest.fixture(scope="module")
def ds() -> LongitudinalDataset:
    return make_synthetic(seed=0)


def _time_index(data: pd.DataFrame, n_times: int = N_TIMES) -> np.ndarray:
    return np.rint(data["t"].to_numpy() * (n_times - 1)).astype(int)


def _instance_index(ds: LongitudinalDataset) -> np.ndarray:
    labels = ds.truth["instance_labels"]
    lookup = {lab: p for p, lab in enumerate(labels)}
    return ds.data["id"].map(lookup).to_numpy()


def _fixed_design(data: pd.DataFrame) -> np.ndarray:
    t = data["t"].to_numpy()
    g = data["g"].to_numpy().astype(float)
    c = data["c"].to_numpy()
    return np.column_stack(
        [np.ones_like(t), t, g, c, g * t, np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)]
    )


def _std_within(sample: np.ndarray, sigma: float, n_se: float = 5.0) -> None:
    """Sample std of n i.i.d. N(0, sigma^2) draws has SE ~ sigma / sqrt(2 (n - 1))."""
    n = sample.size
    se = sigma / math.sqrt(2 * (n - 1))
    s = sample.std(ddof=1)
    assert abs(s - sigma) < n_se * se, (s, sigma, se)
    # Mean of the draws has SE sigma / sqrt(n).
    assert abs(sample.mean()) < n_se * sigma / math.sqrt(n)


# --------------------------------------------------------------------------- generator


def test_determinism_in_seed(ds: LongitudinalDataset) -> None:
    again = make_synthetic(seed=0)
    pd.testing.assert_frame_equal(ds.data, again.data)
    np.testing.assert_array_equal(ds.y, again.y)
    np.testing.assert_array_equal(ds.mask, again.mask)
    np.testing.assert_array_equal(ds.y_true, again.y_true)
    assert ds.truth.keys() == again.truth.keys()
    for key in ds.truth:
        np.testing.assert_array_equal(ds.truth[key], again.truth[key])

    other = make_synthetic(seed=1)
    assert not np.array_equal(ds.y_true, other.y_true)
    assert not np.array_equal(ds.mask, other.mask)
    assert not np.array_equal(ds.truth["fixed_effects"], other.truth["fixed_effects"])
    assert not ds.data["split"].equals(other.data["split"])


def test_shapes_and_columns(ds: LongitudinalDataset) -> None:
    n = N_INST * N_TIMES
    assert ds.y.shape == ds.mask.shape == ds.y_true.shape == (n, D)
    assert ds.y.dtype == np.float32 and ds.y_true.dtype == np.float32
    assert ds.mask.dtype == np.bool_
    assert (ds.n_obs, ds.n_features, ds.n_instances) == (n, D, N_INST)
    assert list(ds.data.columns) == ["id", "t", "g", "c", "sin_2pi_t", "cos_2pi_t", "split"]
    assert ds.instance_column == "id"

    tr = ds.truth
    assert tr["fixed_effects"].shape == (L_STAR, 7)
    assert tr["random_effects"].shape == (N_INST, L_STAR, 2)
    assert tr["z"].shape == (n, L_STAR)
    assert list(tr["fixed_terms"]) == ["Intercept", "t", "g", "c", "g:t", "sin_2pi_t", "cos_2pi_t"]
    assert list(tr["random_terms"]) == ["1", "t"]
    assert tr["instance_labels"].shape == (N_INST,)
    assert tr["instance_labels"][0] == "i000"
    assert set(ds.data["id"]) == set(tr["instance_labels"])
    assert [tr[f"decoder_W{k}"].shape for k in range(3)] == [(32, L_STAR), (64, 32), (D, 64)]
    assert [tr[f"decoder_b{k}"].shape for k in range(3)] == [(32,), (64,), (D,)]

    # Covariates: t on the grid, g binary and per-instance, c per-instance, basis of t.
    t = ds.data["t"].to_numpy()
    np.testing.assert_allclose(np.unique(t), np.linspace(0, 1, N_TIMES), atol=1e-12)
    assert set(np.unique(ds.data["g"])) <= {0, 1}
    per_inst = ds.data.groupby("id")[["g", "c"]].nunique()
    assert (per_inst == 1).all().all()
    assert ds.data.groupby("id").size().eq(N_TIMES).all()
    np.testing.assert_allclose(ds.data["sin_2pi_t"], np.sin(2 * np.pi * t), atol=1e-12)
    np.testing.assert_allclose(ds.data["cos_2pi_t"], np.cos(2 * np.pi * t), atol=1e-12)
    # g ~ Bernoulli(0.5) over P instances: within 4 standard errors.
    g_mean = ds.data.groupby("id")["g"].first().mean()
    assert abs(g_mean - 0.5) < 4 * 0.5 / math.sqrt(N_INST)


def test_decoder_weights_are_orthogonal() -> None:
    small = make_synthetic(n_instances=5, n_times=4, n_test_times=1, obs_dim=64, seed=3)
    w0, w1, w2 = (small.truth[f"decoder_W{k}"] for k in range(3))
    for w in (w0, w1, w2):  # tall or square: orthonormal columns
        np.testing.assert_allclose(w.T @ w, np.eye(w.shape[1]), atol=1e-10)
    w2_wide = make_synthetic(n_instances=5, n_times=4, n_test_times=1, seed=3).truth["decoder_W2"]
    np.testing.assert_allclose(w2_wide @ w2_wide.T, np.eye(D), atol=1e-10)


def test_split_rules(ds: LongitudinalDataset) -> None:
    split = ds.data["split"].to_numpy()
    assert set(split) == {"train", "val", "test"}
    tidx = _time_index(ds.data)
    test_ids = set(ds.data.loc[split == "test", "id"])
    assert len(test_ids) == round(0.2 * N_INST)
    in_test_inst = ds.data["id"].isin(test_ids).to_numpy()
    # Test rows are exactly the last 5 time points of the test instances.
    np.testing.assert_array_equal(split == "test", in_test_inst & (tidx >= N_TIMES - 5))
    # Test instances keep their early rows in train/val.
    early = in_test_inst & (tidx < N_TIMES - 5)
    assert early.sum() == len(test_ids) * (N_TIMES - 5)
    assert np.isin(split[early], ["train", "val"]).all()
    # The remaining rows split 80/20.
    n_rest = (split != "test").sum()
    assert (split == "val").sum() == round(0.2 * n_rest)

    parts = {name: ds.split(name) for name in ("train", "val", "test")}
    assert sum(p.n_obs for p in parts.values()) == ds.n_obs
    for name, part in parts.items():
        rows = split == name
        assert (part.data["split"] == name).all()
        assert list(part.data.index) == list(range(part.n_obs))
        np.testing.assert_array_equal(part.y, ds.y[rows])
        np.testing.assert_array_equal(part.mask, ds.mask[rows])
        np.testing.assert_array_equal(part.y_true, ds.y_true[rows])
        pd.testing.assert_frame_equal(part.data, ds.data[rows].reset_index(drop=True))
        assert part.truth is ds.truth
    assert parts["test"].n_instances == len(test_ids)


def test_split_unknown_name(ds: LongitudinalDataset) -> None:
    with pytest.raises(ValueError, match=r"bogus.*train"):
        ds.split("bogus")


@pytest.mark.parametrize(("missing_rate", "obs_dim"), [(0.2, D), (0.5, 3)])
def test_missing_rate(missing_rate: float, obs_dim: int) -> None:
    data = make_synthetic(missing_rate=missing_rate, obs_dim=obs_dim, seed=5)
    assert data.mask.any(axis=1).all(), "every row needs an observed entry"
    # Rows drawn all-missing get one entry forced observed, so the expected missing
    # fraction is p - p^D / D (equal to p up to 1e-12 for the defaults).
    expected = missing_rate - missing_rate**obs_dim / obs_dim
    n = data.mask.size
    se = math.sqrt(missing_rate * (1 - missing_rate) / n)
    assert abs((~data.mask).mean() - expected) < 4 * se


def test_observed_values_and_masking(ds: LongitudinalDataset) -> None:
    assert ds.mask.any(axis=1).all()
    np.testing.assert_array_equal(ds.y[ds.mask], ds.y_true[ds.mask])
    assert (ds.y[~ds.mask] == 0.0).all()
    assert (ds.y_true[~ds.mask] != 0.0).all()


def test_latent_regenerates_from_truth(ds: LongitudinalDataset) -> None:
    x = _fixed_design(ds.data)
    w = np.column_stack([np.ones(ds.n_obs), ds.data["t"].to_numpy()])
    p = _instance_index(ds)
    eta = x @ ds.truth["fixed_effects"].T
    eta += np.einsum("nlk,nk->nl", ds.truth["random_effects"][p], w)
    resid = ds.truth["z"] - eta
    _std_within(resid.ravel(), 0.1)
    # Effects have the prior scales: A_f* ~ N(0, 1) (28 entries), u* ~ N(0, 0.5^2).
    _std_within(ds.truth["random_effects"].ravel(), 0.5)
    a = ds.truth["fixed_effects"].ravel()
    assert abs(a.std(ddof=1) - 1.0) < 5 / math.sqrt(2 * (a.size - 1))


def test_decoder_reproduces_y_true(ds: LongitudinalDataset) -> None:
    clean = synthetic_decoder(ds.truth["z"], ds.truth)
    assert clean.shape == (ds.n_obs, D)
    resid = ds.y_true.astype(np.float64) - clean
    _std_within(resid.ravel(), 0.05)
    # The signal is not negligible compared with the noise.
    assert clean.std() > 4 * 0.05

    noiseless = make_synthetic(n_instances=20, noise_std=0.0, seed=2)
    np.testing.assert_allclose(
        noiseless.y_true, synthetic_decoder(noiseless.truth["z"], noiseless.truth), atol=1e-5
    )
    # Torch input and a single latent vector work too.
    z0 = torch.as_tensor(noiseless.truth["z"][0])
    np.testing.assert_allclose(
        synthetic_decoder(z0, noiseless.truth), noiseless.y_true[0], atol=1e-5
    )
    with pytest.raises(ValueError, match="z"):
        synthetic_decoder(np.zeros((3, L_STAR + 1)), noiseless.truth)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_instances": 0}, "n_instances"),
        ({"n_times": 1}, "n_times"),
        ({"latent_dim": 1.5}, "latent_dim"),
        ({"obs_dim": -2}, "obs_dim"),
        ({"missing_rate": 1.0}, "missing_rate"),
        ({"missing_rate": -0.1}, "missing_rate"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"test_instance_fraction": 1.0}, "test_instance_fraction"),
        ({"n_test_times": 20}, "n_test_times"),
        ({"n_test_times": 0}, "n_test_times"),
        ({"val_fraction": 1.5}, "val_fraction"),
    ],
)
def test_make_synthetic_validates(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        make_synthetic(**kwargs)


def test_dataset_validates_shapes() -> None:
    data = pd.DataFrame({"id": ["a", "a", "b"], "split": ["train", "val", "test"]})
    y = np.zeros((3, 2), dtype=np.float32)
    mask = np.ones((3, 2), dtype=bool)
    ok = LongitudinalDataset(data=data, y=y, mask=mask.astype(int), name="tiny")
    assert ok.mask.dtype == np.bool_ and ok.n_instances == 2 and ok.truth == {}
    with pytest.raises(ValueError, match="mask"):
        LongitudinalDataset(data=data, y=y, mask=mask[:, :1])
    with pytest.raises(ValueError, match="y_true"):
        LongitudinalDataset(data=data, y=y, mask=mask, y_true=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="data"):
        LongitudinalDataset(data=data.iloc[:2], y=y, mask=mask)
    with pytest.raises(ValueError, match=r"\by\b"):
        LongitudinalDataset(data=data, y=np.zeros(3), mask=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="instance_column"):
        LongitudinalDataset(data=data, y=y, mask=mask, instance_column="patient")
    with pytest.raises(AttributeError):
        ok.name = "other"  # frozen


# --------------------------------------------------------------------------- MSE metrics

Y_TRUE = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
Y_HAT = np.array([[1.0, 0.0, 3.0], [7.0, 5.0, 2.0], [9.0, 7.0, 6.0], [5.0, 5.0, 5.0]])
MASK = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=bool)


def test_imputation_mse_hand_example() -> None:
    # Row 0: missing d=1, (0-2)^2 = 4.  Row 1: missing d=0,2, (9 + 16) / 2 = 12.5.
    # Row 2: no missing entry -> skipped.  Row 3: all missing, 3 * 16 / 3 = 16.
    expected = (4.0 + 12.5 + 16.0) / 3
    assert imputation_mse(Y_HAT, Y_TRUE, MASK) == pytest.approx(expected)
    # Per-row first, not pooled over entries: pooled would be (4 + 25 + 48) / 6.
    assert expected != pytest.approx((4 + 25 + 48) / 6)
    as_torch = imputation_mse(torch.tensor(Y_HAT), torch.tensor(Y_TRUE), torch.tensor(MASK))
    assert as_torch == pytest.approx(expected)
    with pytest.raises(ValueError, match="missing"):
        imputation_mse(Y_HAT[2:3], Y_TRUE[2:3], MASK[2:3])


def test_observed_mse_hand_example() -> None:
    # Row 0: observed d=0,2, both exact -> 0.  Row 1: observed d=1 exact -> 0.
    # Row 2: (81 + 49 + 36) / 3.  Row 3: nothing observed -> skipped.
    expected = (0.0 + 0.0 + 166.0 / 3) / 3
    assert observed_mse(Y_HAT, Y_TRUE, MASK) == pytest.approx(expected)
    assert observed_mse(Y_HAT, Y_TRUE, MASK.astype(np.float32)) == pytest.approx(expected)
    with pytest.raises(ValueError, match="observed"):
        observed_mse(Y_HAT[3:], Y_TRUE[3:], MASK[3:])


def test_prediction_mse_hand_example() -> None:
    y_hat = np.array([[1.0, 2.0], [3.0, 4.0]])
    y = np.array([[0.0, 0.0], [3.0, 2.0]])
    # Row 0: (1 + 4) / 2 = 2.5; row 1: (0 + 4) / 2 = 2.
    assert prediction_mse(y_hat, y) == pytest.approx(2.25)
    assert prediction_mse(torch.tensor(y_hat, dtype=torch.float32), y) == pytest.approx(2.25)


def test_mse_shape_errors() -> None:
    with pytest.raises(ValueError, match="y_true"):
        imputation_mse(Y_HAT, Y_TRUE[:, :2], MASK)
    with pytest.raises(ValueError, match="mask"):
        imputation_mse(Y_HAT, Y_TRUE, MASK[:2])
    with pytest.raises(ValueError, match="y_true"):
        prediction_mse(Y_HAT, Y_TRUE[:2])
    with pytest.raises(ValueError, match="y_hat"):
        prediction_mse(Y_HAT.ravel(), Y_TRUE.ravel())
    with pytest.raises(ValueError, match="mask"):
        observed_mse(Y_HAT, Y_TRUE, MASK.T)


# --------------------------------------------------------------------------- MCC


def test_mcc_invariances() -> None:
    rng = np.random.default_rng(0)
    z = rng.standard_normal((500, 3))
    perm = [2, 0, 1]
    z2 = z[:, perm] * np.array([-2.0, 0.5, 3.0]) + np.array([1.0, -4.0, 7.0])
    assert mcc(z, z2) == pytest.approx(1.0, abs=1e-12)
    assert mcc(torch.tensor(z2), torch.tensor(z)) == pytest.approx(1.0, abs=1e-12)
    # Rectangular: an extra noise column on either side.
    z3 = np.column_stack([z2, rng.standard_normal(500)])
    assert mcc(z, z3) == pytest.approx(1.0, abs=1e-12)
    assert mcc(z3, z) == pytest.approx(1.0, abs=1e-12)
    # Spearman sees monotone transforms as perfect; Pearson does not.
    z4 = np.exp(2 * z[:, perm])
    assert mcc(z, z4, method="spearman") == pytest.approx(1.0, abs=1e-12)
    assert mcc(z, z4) < 0.9
    # A constant column correlates 0, without NaN.
    assert mcc(z[:, :1], np.ones((500, 1))) == 0.0


def test_mcc_independent_is_small() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    a, b = rng.standard_normal((n, 4)), rng.standard_normal((n, 4))
    # Each |corr| is ~ |N(0, 1/n)|; the matched mean is below the max of 16 of them,
    # which exceeds 4.5 / sqrt(n) with probability ~1e-4.
    value = mcc(a, b)
    assert 0.0 <= value < 4.5 / math.sqrt(n)
    assert mcc(a, b, method="spearman") < 4.5 / math.sqrt(n)


def test_mcc_errors() -> None:
    with pytest.raises(ValueError, match="z1"):
        mcc(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(ValueError, match="method"):
        mcc(np.zeros((5, 2)), np.zeros((5, 2)), method="kendall")


# --------------------------------------------------------------------------- effect recovery


def _recovery_problem(n_extra: int, intercept_index: int = 0, seed: int = 0):
    """Exact LMM latents and an affine-transformed, consistently built model fit."""
    rng = np.random.default_rng(seed)
    n_inst, n_per, l_star, q, k = 40, 6, 3, 5, 2
    p = np.repeat(np.arange(n_inst), n_per)
    x = rng.standard_normal((n_inst * n_per, q))
    x[:, intercept_index] = 1.0
    w = np.column_stack([np.ones(len(p)), rng.uniform(size=len(p))])
    a_true = rng.standard_normal((l_star, q))
    u_true = 0.5 * rng.standard_normal((n_inst, l_star, k))
    z = x @ a_true.T + np.einsum("nlk,nk->nl", u_true[p], w)

    s = rng.standard_normal((l_star, l_star)) + 3 * np.eye(l_star)  # invertible
    offset = rng.standard_normal(l_star)
    mu = z @ s.T + offset
    fixed_hat = s @ a_true
    fixed_hat[:, intercept_index] += offset
    random_hat = np.einsum("ml,plk->pmk", s, u_true)
    if n_extra:  # extra latent dims that carry noise and unrelated "effects"
        mu = np.column_stack([mu, rng.standard_normal((len(p), n_extra))])
        fixed_hat = np.vstack([fixed_hat, rng.standard_normal((n_extra, q))])
        random_hat = np.concatenate([random_hat, rng.standard_normal((n_inst, n_extra, k))], axis=1)
    return mu, z, fixed_hat, a_true, random_hat, u_true, s


@pytest.mark.parametrize(("n_extra", "intercept_index"), [(0, 0), (2, 0), (0, 3)])
def test_effect_recovery_exact(n_extra: int, intercept_index: int) -> None:
    mu, z, fh, ft, rh, rt, _ = _recovery_problem(n_extra, intercept_index)
    out = effect_recovery(mu, z, fh, ft, rh, rt, intercept_index=intercept_index)
    assert out["fixed_effects_rel_error"] < 1e-6
    assert out["random_effects_corr"] == pytest.approx(1.0, abs=1e-9)
    assert out["latent_r2"] == pytest.approx(1.0, abs=1e-9)
    assert 0.0 <= out["mcc"] <= 1.0
    as_torch = effect_recovery(
        *(torch.tensor(a) for a in (mu, z, fh, ft, rh, rt)), intercept_index=intercept_index
    )
    assert as_torch["fixed_effects_rel_error"] < 1e-6


def test_effect_recovery_detects_errors() -> None:
    mu, z, fh, ft, rh, rt, s = _recovery_problem(0)
    delta = np.zeros_like(fh)
    delta[1, 2] = 0.7
    out = effect_recovery(mu, z, fh + delta, ft)
    # T = S^{-1}, so the error in true coordinates is S^{-1} delta.
    expected = np.linalg.norm(np.linalg.solve(s, delta)) / np.linalg.norm(ft)
    assert out["fixed_effects_rel_error"] == pytest.approx(expected, rel=1e-6)
    assert "random_effects_corr" not in out
    # Without the offset in the intercept column the error is -T b = S^{-1} offset.
    out_no_int = effect_recovery(mu, z, fh, ft, intercept_index=None)
    assert out_no_int["fixed_effects_rel_error"] > 1e-3
    # Independent random effects correlate weakly.
    rng = np.random.default_rng(9)
    noise = effect_recovery(mu, z, fh, ft, rng.standard_normal(rh.shape), rt)
    assert abs(noise["random_effects_corr"]) < 4.5 / math.sqrt(rt.size)


def test_effect_recovery_on_synthetic(ds: LongitudinalDataset) -> None:
    train = (ds.data["split"] == "train").to_numpy()
    z = ds.truth["z"]
    rng = np.random.default_rng(4)
    s = rng.standard_normal((L_STAR, L_STAR)) + 3 * np.eye(L_STAR)
    b = rng.standard_normal(L_STAR)
    fixed_hat = s @ ds.truth["fixed_effects"]
    fixed_hat[:, 0] += b
    random_hat = np.einsum("ml,plk->pmk", s, ds.truth["random_effects"])
    out = effect_recovery(
        z[train] @ s.T + b,
        z[train],
        fixed_hat,
        ds.truth["fixed_effects"],
        random_hat,
        ds.truth["random_effects"],
    )
    assert out["fixed_effects_rel_error"] < 1e-6
    assert out["random_effects_corr"] == pytest.approx(1.0, abs=1e-9)


def test_effect_recovery_shape_errors() -> None:
    mu, z, fh, ft, rh, rt, _ = _recovery_problem(0)
    with pytest.raises(ValueError, match="z_true"):
        effect_recovery(mu, z[:-1], fh, ft)
    with pytest.raises(ValueError, match="fixed_hat"):
        effect_recovery(mu, z, fh[:, :-1], ft)
    with pytest.raises(ValueError, match="fixed_true"):
        effect_recovery(mu, z, fh, ft[:-1])
    with pytest.raises(ValueError, match="random_hat"):
        effect_recovery(mu, z, fh, ft, rh[:, :-1], rt)
    with pytest.raises(ValueError, match="random_true"):
        effect_recovery(mu, z, fh, ft, rh, rt[:-1])
    with pytest.raises(ValueError, match="random_hat"):
        effect_recovery(mu, z, fh, ft, random_hat=rh)
    with pytest.raises(ValueError, match="intercept_index"):
        effect_recovery(mu, z, fh, ft, intercept_index=9)
