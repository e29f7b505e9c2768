"""The ArviZ adapter gives the same summary, forest plot and netCDF files on ArviZ 0.x and 1.x.

CI runs this file on both lines (Python 3.10/3.11 installs arviz 0.2x, Python >= 3.12 arviz 1.x),
so every expectation here is line-independent; the values are checked against numpy on the
draws themselves.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pyro_lmmvae import LMMVAE, arviz_compat
from pyro_lmmvae.datasets import make_synthetic

FORMULA = "~ 1 + t + g + (1 + t | id)"
NUM_DRAWS = 500


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_instances=12, n_times=6, obs_dim=5, n_test_times=2, seed=3)


@pytest.fixture(scope="module")
def idata(data):
    """oLMM effects: draws from q, a prior group and constant_data (Bayesian effects)."""
    tr = data.split("train")
    m = LMMVAE(FORMULA, data=tr.data, y=tr.y, mask=tr.mask, latent_dim=2, seed=0)
    m.fit(max_epochs=1, batch_size=4, progress=False)
    return m.effects(num_draws=NUM_DRAWS, seed=1)


@pytest.fixture()
def axes():
    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def narrowest_interval(x: np.ndarray, prob: float) -> tuple[float, float, int]:
    """Shortest interval spanning ``k = floor(prob n)`` gaps between sorted draws (the HDI)."""
    x = np.sort(x)
    k = int(np.floor(prob * len(x)))
    widths = x[k:] - x[: len(x) - k]
    i = int(np.argmin(widths))
    return float(x[i]), float(x[i + k]), k


def entry_draws(idata, name: str) -> dict[str, np.ndarray]:
    """Every entry's draws by its summary label, e.g. ``fixed_effects[0, Intercept]``."""
    array = idata.posterior[name]
    dims = [d for d in array.dims if d not in ("chain", "draw")]
    values = array.values.reshape(-1, *array.shape[2:])  # (chain * draw, ...)
    labels = {}
    for index in np.ndindex(*array.shape[2:]):
        coords = ", ".join(str(array[d].values[i]) for d, i in zip(dims, index, strict=True))
        labels[f"{name}[{coords}]"] = values[(slice(None), *index)]
    return labels


def test_container_is_the_installed_lines(idata):
    assert isinstance(idata, arviz_compat.DataContainer)
    assert set(arviz_compat.group_dataset(idata).data_vars) == {
        "fixed_effects",
        "random_effects",
        "random_effects_sd",
        "random_effects_corr",
    }
    assert idata.posterior.attrs["formula"] == FORMULA
    assert idata.posterior["fixed_effects"].dims == ("chain", "draw", "latent", "term")
    assert idata.constant_data["fixed_prior_sd"].dims == ("latent", "term")


def test_hdi_column_names():
    assert arviz_compat.hdi_columns(0.94) == ("hdi_3%", "hdi_97%")
    assert arviz_compat.hdi_columns(0.95) == ("hdi_2.5%", "hdi_97.5%")
    assert arviz_compat.hdi_columns(0.5) == ("hdi_25%", "hdi_75%")


@pytest.mark.parametrize("name", ["fixed_effects", "random_effects"])
def test_summary_is_mean_sd_and_94_hdi_of_the_draws(idata, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no MigrationWarning, no RuntimeWarning
        summary = arviz_compat.summary(idata, var_names=[name])
    assert type(summary) is pd.DataFrame
    assert list(summary.columns) == ["mean", "sd", "hdi_3%", "hdi_97%"]
    draws = entry_draws(idata, name)
    assert list(summary.index) == list(draws)
    # The draws are float32: ArviZ may sum in float32, so the mean agrees to float32 rounding
    # of a sum of NUM_DRAWS terms, relative to the draws' magnitude.
    eps = np.finfo(np.float32).eps
    for label, x in draws.items():
        row = summary.loc[label]
        x64 = x.astype(np.float64)
        scale = np.abs(x64).max()
        assert row["mean"] == pytest.approx(x64.mean(), abs=4 * eps * scale * np.sqrt(len(x)))
        assert row["sd"] == pytest.approx(x64.std(ddof=1), rel=1e-4)
        lo, hi, k = narrowest_interval(x64, 0.94)
        # An HDI's ends are draws; a convention that counts one draw more or fewer moves each
        # end by at most one gap between neighbouring sorted draws.
        gap = np.diff(np.sort(x64)).max()
        assert row["hdi_3%"] == pytest.approx(lo, abs=gap)
        assert row["hdi_97%"] == pytest.approx(hi, abs=gap)
        assert np.isin([row["hdi_3%"], row["hdi_97%"]], x64).all()
        inside = np.count_nonzero((x64 >= row["hdi_3%"]) & (x64 <= row["hdi_97%"]))
        assert k <= inside <= k + 2  # 94% of the draws, up to one draw at each end
        # q is Gaussian: the 94% HDI is close to the 3% and 97% quantiles. Each sample quantile
        # has standard error sqrt(p (1 - p) / n) / density, about 0.11 sd here; allow 5 of them.
        se = np.sqrt(0.03 * 0.97 / len(x)) / 0.0681 * x64.std(ddof=1)
        q_lo, q_hi = np.quantile(x64, [0.03, 0.97])
        assert abs(row["hdi_3%"] - q_lo) < 5 * se and abs(row["hdi_97%"] - q_hi) < 5 * se


def test_summary_options(idata):
    fixed = arviz_compat.summary(idata, ["fixed_effects"], coords={"term": ["t"]}, hdi_prob=0.5)
    assert list(fixed.columns) == ["mean", "sd", "hdi_25%", "hdi_75%"]
    assert list(fixed.index) == ["fixed_effects[0, t]", "fixed_effects[1, t]"]
    rounded = arviz_compat.summary(idata, ["fixed_effects"], round_to=2)
    np.testing.assert_array_equal(rounded, rounded.round(2))
    prior = arviz_compat.summary(idata, ["fixed_effects"], group="prior")
    assert len(prior) == len(rounded) and not np.allclose(prior["mean"], rounded["mean"])
    with pytest.raises(ValueError, match="hdi_prob"):
        arviz_compat.summary(idata, hdi_prob=94)


def test_summary_of_point_estimates_has_no_sd_and_no_warning(data):
    tr = data.split("train")
    m = LMMVAE(FORMULA, data=tr.data, y=tr.y, mask=tr.mask, latent_dim=2, variant="slmm")
    point = m.effects()
    assert point.posterior.sizes["draw"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = arviz_compat.summary(point, ["fixed_effects"])
    assert summary["sd"].isna().all()
    np.testing.assert_array_equal(summary["hdi_3%"], summary["mean"])
    np.testing.assert_array_equal(summary["hdi_97%"], summary["mean"])


def test_forest_plot_draws_on_the_given_axes(idata, axes):
    fig, ax = axes
    returned = arviz_compat.plot_forest(idata, var_names=["fixed_effects"], ax=ax)
    assert returned is ax and fig.axes == [ax]
    summary = arviz_compat.summary(idata, ["fixed_effects"])
    inner = arviz_compat.summary(idata, ["fixed_effects"], hdi_prob=0.5)
    n = len(summary)
    # one tick per entry, the first entry at the top
    assert [t.get_text() for t in ax.get_yticklabels()] == list(summary.index)[::-1]
    assert list(ax.get_yticks()) == list(range(n))
    assert len(ax.collections) == 2 and len(ax.lines) == 1  # 94% lines, 50% lines, means
    wide, thick = (np.asarray(c.get_segments()) for c in ax.collections)
    np.testing.assert_allclose(wide[:, 0, 0], summary["hdi_3%"])
    np.testing.assert_allclose(wide[:, 1, 0], summary["hdi_97%"])
    np.testing.assert_allclose(wide[:, 0, 1], np.arange(n)[::-1])
    np.testing.assert_allclose(thick[:, 0, 0], inner["hdi_25%"])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), summary["mean"])
    assert ax.get_legend() is None
    fig.savefig(io.BytesIO(), format="png")  # renders


def test_forest_plot_compares_models(idata, axes):
    _, ax = axes
    coords = {"latent": [0]}
    models = {"first": idata, "second": idata}
    arviz_compat.plot_forest(models, ["fixed_effects"], ax=ax, coords=coords, hdi_prob=0.95)
    assert len(ax.lines) == 2 and len(ax.collections) == 4
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["first", "second"]
    n_terms = idata.posterior.sizes["term"]
    assert len(ax.get_yticks()) == n_terms
    first, second = (line.get_ydata() for line in ax.lines)
    assert np.all(first > second) and np.all(np.abs(first - np.round(first)) < 0.5)
    assert "95% HDI" in ax.get_xlabel()
    with pytest.raises(ValueError, match="model_names"):
        arviz_compat.plot_forest([idata, idata], ax=ax, model_names=["only one"])


def test_netcdf_round_trip_keeps_arrays_coords_and_attrs(idata, tmp_path):
    path = tmp_path / "effects.tmp"  # any suffix: the engine is given, not guessed
    assert arviz_compat.to_netcdf(idata, path) == path
    back = arviz_compat.from_netcdf(path)
    assert isinstance(back, arviz_compat.DataContainer)
    for group in ("posterior", "prior", "constant_data"):
        original = arviz_compat.group_dataset(idata, group)
        loaded = arviz_compat.group_dataset(back, group)
        assert set(loaded.data_vars) == set(original.data_vars), group
        for name, array in original.data_vars.items():
            assert loaded[name].dims == array.dims
            assert loaded[name].dtype == array.dtype
            np.testing.assert_array_equal(loaded[name].values, array.values)
            for dim in array.dims:
                np.testing.assert_array_equal(loaded[dim].values, array[dim].values)
        assert set(loaded.attrs) == set(original.attrs), group
        for key, value in original.attrs.items():
            assert np.array_equal(loaded.attrs[key], value) or loaded.attrs[key] == value, key
    posterior = arviz_compat.group_dataset(back, "posterior")
    assert posterior.attrs["formula"] == FORMULA and posterior.attrs["latent_dim"] == 2
    assert posterior.attrs["standardization"] == idata.posterior.attrs["standardization"]
    # Read into memory and closed: the same file can be rewritten and removed at once.
    arviz_compat.to_netcdf(back, path)
    path.unlink()
    assert np.isfinite(back.posterior["random_effects"].values).all()
