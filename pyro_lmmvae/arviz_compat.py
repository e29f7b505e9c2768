"""One adapter over the two ArviZ lines: 0.x (``InferenceData``) and >= 1.0 (``DataTree``).

ArviZ 1.0 split into ``arviz-base``, ``arviz-stats`` and ``arviz-plots`` (``arviz`` became a meta
package over them) and changed, among others, the calls this library makes:

================  ===========================================  =================================
operation         arviz 0.x                                    arviz >= 1.0
================  ===========================================  =================================
container         ``arviz.InferenceData``                      ``xarray.DataTree``
``from_dict``     one keyword per group (``posterior=...``)    one dict ``{group: {var: array}}``
``summary``       ``hdi_prob=``; ``hdi_3%``, ``hdi_97%``       ``ci_prob=``, ``ci_kind=`` (89%
                                                               ETI by default); ``hdi94_lb``...
``plot_forest``   matplotlib axes, ``ax=``, ``show=``          a ``PlotCollection``, no ``ax=``
``from_netcdf``   ``InferenceData.from_netcdf`` (lazy)         ``xarray.open_datatree``
================  ===========================================  =================================

This module is the only place that knows which line is installed (:data:`ARVIZ_1`); the rest of
the library calls :func:`from_dict`, :func:`summary`, :func:`plot_forest`, :func:`to_netcdf`
and :func:`from_netcdf`, which give the same results on both lines:

* :func:`summary` returns a plain :class:`pandas.DataFrame` with the columns ``mean``, ``sd``
  (``ddof=1``) and the highest-density interval named as ArviZ 0.x names it,
  ``hdi_{100 (1 - p) / 2}%`` and ``hdi_{100 (1 + p) / 2}%`` (``hdi_3%`` and ``hdi_97%`` for the
  default ``hdi_prob=0.94``); rows are named ``var[coord, coord]``, e.g.
  ``fixed_effects[0, Intercept]``, on both lines;
* :func:`plot_forest` draws with plain matplotlib on the Axes it is given (the same figure on
  both lines; no pyplot state is touched);
* :func:`to_netcdf` / :func:`from_netcdf` write and read one netCDF-4 file through ``h5netcdf``
  (which needs ``h5py``), read eagerly into memory so that the file is closed afterwards.

On its own, ``az.summary(data, kind="stats")`` gives a 94% HDI on 0.x but an 89% equal-tailed
interval on >= 1.0; ``az.summary(data, kind="stats", ci_kind="hdi", ci_prob=0.94)`` is the 1.x
call that matches :func:`summary` (with the columns named ``hdi94_lb``, ``hdi94_ub``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "ARVIZ_1",
    "ARVIZ_VERSION",
    "DataContainer",
    "NETCDF_ENGINE",
    "from_dict",
    "from_netcdf",
    "group_dataset",
    "hdi_columns",
    "plot_forest",
    "summary",
    "to_netcdf",
]

ARVIZ_VERSION: str = az.__version__
"""The installed ArviZ version."""

ARVIZ_1: bool = int(ARVIZ_VERSION.split(".")[0]) >= 1
"""Whether the installed ArviZ is the 1.x line (``DataTree``), not 0.x (``InferenceData``)."""

NETCDF_ENGINE: str = "h5netcdf"
"""The netCDF engine of :func:`to_netcdf` and :func:`from_netcdf` on both lines."""

if ARVIZ_1:
    DataContainer: type = xr.DataTree
else:
    DataContainer = az.InferenceData
"""The container class of the installed line: ``xarray.DataTree`` or ``arviz.InferenceData``."""


def from_dict(
    groups: Mapping[str, Mapping[str, np.ndarray]],
    *,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    attrs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
    """Build an ArviZ container from arrays, one dict of variables per group.

    Parameters
    ----------
    groups : mapping of str to mapping of str to ndarray
        ``{group: {variable: array}}``, e.g. ``{"posterior": {"beta": draws}}``. Arrays of
        sampled groups have leading ``(chain, draw)`` axes; those of groups whose name contains
        ``data`` (``constant_data``) have none.
    coords : mapping, optional
        Coordinate values by dim name.
    dims : mapping of str to sequence of str, optional
        Names of each variable's dims after ``(chain, draw)``.
    attrs : mapping of str to mapping, optional
        Attributes by group, added to (or replacing) ArviZ's own (``created_at`` and so on).

    Returns
    -------
    DataContainer
        An ``arviz.InferenceData`` on ArviZ 0.x, an ``xarray.DataTree`` on >= 1.0; on both,
        ``data.posterior["beta"]`` is a DataArray and ``data.posterior.attrs`` a dict.
    """
    coords = dict(coords or {})
    dims = {name: list(value) for name, value in (dims or {}).items()}
    if ARVIZ_1:
        data = az.from_dict(
            {name: dict(variables) for name, variables in groups.items()},
            coords=coords,
            dims=dims,
        )
    else:
        data = az.from_dict(
            **{name: dict(variables) for name, variables in groups.items()},
            coords=coords,
            dims=dims,
        )
    for name, group_attrs in (attrs or {}).items():
        data[name].attrs.update(group_attrs)
    return data


def group_dataset(data: Any, group: str = "posterior") -> xr.Dataset:
    """One group of an ArviZ container as an :class:`xarray.Dataset` (with its attributes).

    Parameters
    ----------
    data : DataContainer or xarray.Dataset
        The container (a Dataset is returned as it is).
    group : str, default "posterior"
        The group's name.

    Returns
    -------
    xarray.Dataset
    """
    if isinstance(data, xr.Dataset):
        return data
    return data[group].to_dataset() if ARVIZ_1 else data[group]


def hdi_columns(hdi_prob: float) -> tuple[str, str]:
    """Names of the lower and upper HDI columns of :func:`summary` for ``hdi_prob``.

    Parameters
    ----------
    hdi_prob : float
        Probability mass of the interval, in (0, 1).

    Returns
    -------
    tuple of str
        ``("hdi_3%", "hdi_97%")`` for 0.94, ``("hdi_2.5%", "hdi_97.5%")`` for 0.95.
    """
    alpha = 1.0 - hdi_prob
    return f"hdi_{100 * alpha / 2:g}%", f"hdi_{100 * (1 - alpha / 2):g}%"


def summary(
    data: Any,
    var_names: Sequence[str] | None = None,
    *,
    hdi_prob: float = 0.94,
    coords: Mapping[str, Any] | None = None,
    group: str = "posterior",
    round_to: int | None = None,
) -> pd.DataFrame:
    """Mean, sd and highest-density interval of every entry of the chosen variables.

    Parameters
    ----------
    data : DataContainer or xarray.Dataset
        Draws with ``(chain, draw)`` dims.
    var_names : sequence of str, optional
        Variables to include (all of the group's by default).
    hdi_prob : float, default 0.94
        Probability mass of the highest-density interval.
    coords : mapping, optional
        A subset of coordinates, e.g. ``{"term": ["Intercept"]}``.
    group : str, default "posterior"
        The group to summarise.
    round_to : int, optional
        Decimals to round to; the raw values by default.

    Returns
    -------
    pandas.DataFrame
        One row per entry (``fixed_effects[0, Intercept]``), the columns ``mean``, ``sd``
        (``ddof=1``; NaN for a single draw, e.g. point estimates) and
        :func:`hdi_columns` ``(hdi_prob)``.
    """
    if not 0.0 < hdi_prob < 1.0:
        raise ValueError(f"hdi_prob must be in (0, 1), got {hdi_prob}")
    names = None if var_names is None else list(var_names)
    kwargs: dict[str, Any] = {"var_names": names, "coords": coords, "kind": "stats"}
    with warnings.catch_warnings():
        if group_dataset(data, group).sizes.get("draw", 2) < 2:
            # one draw (point estimates): the sd is NaN on both lines; 0.x also warns about it
            warnings.simplefilter("ignore", RuntimeWarning)
        if ARVIZ_1:
            frame = az.summary(
                data, group=group, ci_prob=hdi_prob, ci_kind="hdi", round_to="none", **kwargs
            )
            lower_name = next(name for name in frame.columns if str(name).endswith("_lb"))
            upper_name = next(name for name in frame.columns if str(name).endswith("_ub"))
        else:
            frame = az.summary(data, group=group, hdi_prob=hdi_prob, round_to="none", **kwargs)
            lower_name, upper_name = frame.columns[2], frame.columns[3]
    lower, upper = hdi_columns(hdi_prob)
    frame = pd.DataFrame(
        frame[["mean", "sd", lower_name, upper_name]].to_numpy(float),
        index=[str(label) for label in frame.index],
        columns=["mean", "sd", lower, upper],
    )
    return frame if round_to is None else frame.round(round_to)


def plot_forest(
    data: Any,
    var_names: Sequence[str] | None = None,
    *,
    ax: Axes,
    hdi_prob: float = 0.94,
    coords: Mapping[str, Any] | None = None,
    model_names: Sequence[str] | None = None,
    group: str = "posterior",
) -> Axes:
    """Forest plot on ``ax``: per entry the mean, the ``hdi_prob`` HDI and the 50% HDI.

    Drawn with plain matplotlib from :func:`summary` (the same figure on both ArviZ lines). The
    first entry is at the top; each entry has one y tick labelled like the summary's rows. With
    several models each entry gets one line per model (the first model highest) and the axes a
    legend.

    Parameters
    ----------
    data : DataContainer, sequence of them, or mapping of name to DataContainer
        The draws; a sequence or mapping compares models.
    var_names : sequence of str, optional
        Variables to show (all of the group's by default).
    ax : matplotlib.axes.Axes
        Where to draw.
    hdi_prob : float, default 0.94
        Probability mass of the thin interval line.
    coords : mapping, optional
        A subset of coordinates, e.g. ``{"latent": [0, 1]}``.
    model_names : sequence of str, optional
        Names of the models of a sequence ``data`` (``model 0``, ... by default).
    group : str, default "posterior"
        The group to plot.

    Returns
    -------
    matplotlib.axes.Axes
        ``ax``.
    """
    if isinstance(data, DataContainer | xr.Dataset):  # both are mappings themselves
        models, model_names = [data], list(model_names or [""])
    elif isinstance(data, Mapping):
        model_names, models = list(data), list(data.values())
    else:
        models = list(data)
        model_names = list(model_names or [f"model {i}" for i in range(len(models))])
    if len(model_names) != len(models):
        raise ValueError(f"{len(models)} models but {len(model_names)} model_names")
    lower, upper = hdi_columns(hdi_prob)
    inner_lower, inner_upper = hdi_columns(0.5)
    summaries = []
    for model in models:
        wide = summary(model, var_names, hdi_prob=hdi_prob, coords=coords, group=group)
        inner = summary(model, var_names, hdi_prob=0.5, coords=coords, group=group)
        summaries.append(wide.join(inner[[inner_lower, inner_upper]]))
    labels = list(dict.fromkeys(label for frame in summaries for label in frame.index))
    position = {label: len(labels) - 1 - i for i, label in enumerate(labels)}
    k = len(models)
    offsets = np.linspace(0.2, -0.2, k) if k > 1 else np.zeros(1)
    for j, (frame, name) in enumerate(zip(summaries, model_names, strict=True)):
        y = np.array([position[label] for label in frame.index], float) + offsets[j]
        color = f"C{j}"
        ax.hlines(y, frame[lower], frame[upper], color=color, linewidth=1.2)
        ax.hlines(y, frame[inner_lower], frame[inner_upper], color=color, linewidth=3.5)
        ax.plot(frame["mean"], y, "o", color=color, markersize=4, label=name or None)
    ax.set_yticks(range(len(labels)), labels[::-1])  # from the bottom up
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_xlabel(f"mean, {100 * hdi_prob:g}% HDI (thin) and 50% HDI (thick)")
    ax.grid(axis="x", color="0.9", linewidth=0.6)
    if k > 1:
        ax.legend(loc="best", fontsize="small")
    return ax


def to_netcdf(data: Any, path: str | os.PathLike) -> Path:
    """Write an ArviZ container to one netCDF-4 file (engine ``h5netcdf``, zlib-compressed).

    Parameters
    ----------
    data : DataContainer
        An ``InferenceData`` (0.x) or ``DataTree`` (>= 1.0).
    path : str or os.PathLike
        The file; any suffix (the engine is given, not guessed).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if ARVIZ_1:
        encoding = {
            node.path: {
                name: {"zlib": True}
                for name, variable in node.dataset.data_vars.items()
                if variable.dtype.kind in "biuf"
            }
            for node in data.subtree
            if node.has_data
        }
        data.to_netcdf(os.fspath(path), engine=NETCDF_ENGINE, encoding=encoding)
    else:
        data.to_netcdf(os.fspath(path), compress=True, engine=NETCDF_ENGINE)
    return Path(path)


def from_netcdf(path: str | os.PathLike) -> Any:
    """Read a file written by :func:`to_netcdf` (or either line's ``to_netcdf``) into memory.

    Parameters
    ----------
    path : str or os.PathLike
        The netCDF-4 file.

    Returns
    -------
    DataContainer
        An ``InferenceData`` (0.x) or ``DataTree`` (>= 1.0), fully loaded; the file is closed.
    """
    if ARVIZ_1:
        with xr.open_datatree(os.fspath(path), engine=NETCDF_ENGINE) as tree:
            return tree.load()
    with az.rc_context({"data.load": "eager"}):
        return az.from_netcdf(os.fspath(path), engine=NETCDF_ENGINE)
