"""Trivial baselines of the paper benchmarks: predictors that need no training (issue 18).

Every function here is pure numpy, respects the observation mask (an entry where ``mask`` is
False is never read) and is vectorised over rows and features (no Python loop over instances or
entries). Each returns a full ``(Q, D)`` array of predictions for ``Q`` query rows: the harness
scores them on the same task and with the same metric as the models, namely

* **imputation**: the query rows are the training rows themselves, and only their missing entries
  are scored (:func:`impute` keeps the observed ones);
* **prediction / interpolation**: the query rows are the held-out rows; the reference rows are
  the training rows (never the validation or test rows).

================================  ==========================================================
baseline                          prediction of entry ``d`` of a query row of instance ``p``
                                  at time ``t``
================================  ==========================================================
:func:`population_mean`           mean of the observed training entries of feature ``d``
:func:`per_time_mean`             mean of the observed training entries of ``d`` at the training
                                  time nearest to ``t`` (the same time where it exists)
:func:`last_observed`             the latest observed value of ``d`` of instance ``p`` at a time
                                  ``<= t`` (last observation carried forward)
:func:`nearest_observed`          the observed value of ``d`` of instance ``p`` nearest in time
================================  ==========================================================

Choices (documented once, here):

* **Time.** The time (age, angle, hour) is one numeric covariate. For :func:`per_time_mean` a
  query time takes the nearest time value present in the training rows (its own value when it is
  present, as on the discrete grids of every benchmark data set), so no binning width is needed.
* **Ties** in time distance are broken towards the earlier time (the past); reference rows of one
  instance at the same time are resolved to the last of them in row order.
* **Period.** With ``period`` set (Rotating MNIST's angle, ``2 pi``), distances are taken on the
  circle: the frame "before" angle 0 is the one at the largest angle.
* **Fallbacks.** :func:`nearest_observed` falls back to :func:`per_time_mean` where the instance
  has no observed value of the entry (an unseen instance, or a feature it never shows);
  :func:`last_observed` falls back to :func:`population_mean` (nothing observed at or before
  ``t``); :func:`per_time_mean` falls back to :func:`population_mean` (no observed entry of the
  feature at that time); :func:`population_mean` gives 0 for a feature never observed.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "NAMES",
    "impute",
    "last_observed",
    "nearest_observed",
    "per_time_mean",
    "population_mean",
    "predict_all",
]


def _check(y: np.ndarray, mask: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    mask = np.asarray(mask, dtype=bool)
    if y.ndim != 2 or mask.shape != y.shape:
        raise ValueError(f"y and mask must be 2-D of one shape, got {y.shape} and {mask.shape}")
    for column in columns:
        if np.shape(column) != (y.shape[0],):
            raise ValueError(f"a row covariate has shape {np.shape(column)}, expected ({len(y)},)")
    return y, mask


def population_mean(y: np.ndarray, mask: np.ndarray, n_rows: int | None = None) -> np.ndarray:
    """Per-feature mean of the observed entries, repeated over the query rows.

    Parameters
    ----------
    y : numpy.ndarray
        Training outcomes, ``(N, D)``; entries where ``mask`` is False are ignored.
    mask : numpy.ndarray
        Boolean ``(N, D)``, True where observed.
    n_rows : int, optional
        Number of query rows Q; by default ``N``.

    Returns
    -------
    numpy.ndarray
        ``(Q, D)``: every row the vector of feature means (0 for a feature never observed).

    Examples
    --------
    >>> population_mean(np.array([[1.0, 9.0], [3.0, 2.0]]), np.array([[1, 0], [1, 1]]), 1)
    array([[2., 2.]])
    """
    y, mask = _check(y, mask)
    counts = mask.sum(axis=0)
    means = np.where(mask, y, 0.0).sum(axis=0) / np.maximum(counts, 1)
    return np.broadcast_to(means, (len(y) if n_rows is None else int(n_rows), y.shape[1])).copy()


def _match(
    ref_group: np.ndarray,
    ref_t: np.ndarray,
    query_group: np.ndarray,
    query_t: np.ndarray,
    mode: str,
    period: float | None,
) -> np.ndarray:
    """Index of the matching reference of each query within its group, -1 where none.

    ``mode="last"``: the latest reference at a time ``<=`` the query's; ``"nearest"``: the
    nearest in time, ties to the earlier. Groups are non-negative integers (a negative query
    group matches nothing); with ``period`` the references are repeated at ``t -/+ period``.
    """
    ref_group = np.asarray(ref_group, dtype=np.int64)
    ref_t = np.asarray(ref_t, dtype=float)
    index = np.arange(ref_t.size)
    if period is not None:
        ref_group = np.tile(ref_group, 3)
        ref_t = np.concatenate([ref_t - period, ref_t, ref_t + period])
        index = np.tile(index, 3)
    query_group = np.asarray(query_group, dtype=np.int64)
    query_t = np.asarray(query_t, dtype=float)
    out = np.full(query_t.shape, -1, dtype=np.int64)
    if ref_t.size == 0 or query_t.size == 0:
        return out
    times, ranks = np.unique(np.concatenate([ref_t, query_t]), return_inverse=True)
    n_times = np.int64(times.size)
    keys = ref_group * n_times + ranks[: ref_t.size]
    order = np.argsort(keys, kind="stable")  # equal keys keep row order: the last one wins
    keys, ref_t, index = keys[order], ref_t[order], index[order]
    wanted = query_group * n_times + ranks[ref_t.size :]
    after = np.searchsorted(keys, wanted, side="right")  # the first reference later than t
    before = after - 1  # the last reference at or before t
    clip = np.clip(before, 0, keys.size - 1)
    has_before = (before >= 0) & (keys[clip] // n_times == query_group) & (query_group >= 0)
    if mode == "last":
        return np.where(has_before, index[clip], -1)
    clip_after = np.clip(after, 0, keys.size - 1)
    has_after = (after < keys.size) & (keys[clip_after] // n_times == query_group)
    clip_after = np.searchsorted(keys, keys[clip_after], side="right") - 1  # its last duplicate
    has_after &= query_group >= 0
    take_after = has_after & (~has_before | (ref_t[clip_after] - query_t < query_t - ref_t[clip]))
    out = np.where(has_before, index[clip], out)
    return np.where(take_after, index[clip_after], out)


def per_time_mean(
    t: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    query_t: np.ndarray,
    *,
    period: float | None = None,
) -> np.ndarray:
    """Mean of the observed training entries at the query's time (the per-age mean image).

    Parameters
    ----------
    t : numpy.ndarray
        Training times, ``(N,)``.
    y : numpy.ndarray
        Training outcomes, ``(N, D)``; entries where ``mask`` is False are ignored.
    mask : numpy.ndarray
        Boolean ``(N, D)``, True where observed.
    query_t : numpy.ndarray
        Query times, ``(Q,)``. A time absent from ``t`` takes the nearest training time (ties to
        the earlier one; on the circle with ``period``).
    period : float, optional
        Period of the time (e.g. ``2 pi`` for an angle).

    Returns
    -------
    numpy.ndarray
        ``(Q, D)``; an entry with no observed training value at that time is the population mean
        of its feature (:func:`population_mean`).

    Examples
    --------
    >>> y = np.array([[1.0, 0.0], [3.0, 4.0], [5.0, 6.0]])
    >>> mask = np.array([[1, 0], [1, 1], [1, 1]], bool)
    >>> per_time_mean(np.array([0, 0, 1]), y, mask, np.array([0, 1, 7]))
    array([[2., 4.],
           [5., 6.],
           [5., 6.]])
    """
    y, mask = _check(y, mask, t)
    times, codes = np.unique(np.asarray(t, dtype=float), return_inverse=True)
    onehot = np.zeros((times.size, len(y)))
    onehot[codes, np.arange(len(y))] = 1.0
    sums = onehot @ np.where(mask, y, 0.0)
    counts = onehot @ mask.astype(float)
    query_t = np.asarray(query_t, dtype=float)
    at = _match(np.zeros(times.size), times, np.zeros(query_t.size), query_t, "nearest", period)
    fallback = population_mean(y, mask, query_t.size)
    if times.size == 0:
        return fallback
    sums, counts = sums[at], counts[at]
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), fallback)


def _instance_fill(
    ids: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    query_ids: np.ndarray,
    query_t: np.ndarray,
    mode: str,
    period: float | None,
    fallback: np.ndarray,
) -> np.ndarray:
    """Entry-wise :func:`_match` within (instance, feature) groups of the observed entries."""
    y, mask = _check(y, mask, ids, t)
    query_ids = np.asarray(query_ids)
    n_query, n_features = query_ids.size, y.shape[1]
    labels, codes = np.unique(np.concatenate([np.asarray(ids), query_ids]), return_inverse=True)
    train_code, query_code = codes[: len(y)], codes[len(y) :]
    seen = np.isin(query_code, train_code)
    rows, features = np.nonzero(mask)  # the observed entries are the references
    ref_group = train_code[rows] * n_features + features
    query_rows = np.repeat(np.arange(n_query), n_features)
    query_features = np.tile(np.arange(n_features), n_query)
    query_group = np.where(
        seen[query_rows], query_code[query_rows] * n_features + query_features, -1
    )
    hit = _match(
        ref_group,
        np.asarray(t, dtype=float)[rows],
        query_group,
        np.asarray(query_t, dtype=float)[query_rows],
        mode,
        period,
    )
    values = y[rows, features]
    out = np.asarray(fallback, dtype=float).reshape(n_query, n_features).copy()
    found = hit >= 0
    out.reshape(-1)[found] = values[hit[found]]
    return out


def last_observed(
    ids: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    query_ids: np.ndarray,
    query_t: np.ndarray,
    *,
    period: float | None = None,
    fallback: np.ndarray | None = None,
) -> np.ndarray:
    """The instance's last observed value of each entry (last observation carried forward).

    For a future row this is the last observed frame of the same instance, entry by entry.

    Parameters
    ----------
    ids, t : numpy.ndarray
        Instance labels and times of the training rows, ``(N,)``.
    y : numpy.ndarray
        Training outcomes, ``(N, D)``; entries where ``mask`` is False are ignored.
    mask : numpy.ndarray
        Boolean ``(N, D)``, True where observed.
    query_ids, query_t : numpy.ndarray
        Instance labels and times of the query rows, ``(Q,)``.
    period : float, optional
        Period of the time: "before" wraps around the circle.
    fallback : numpy.ndarray, optional
        ``(Q, D)`` values where the instance has no observed value of the entry at a time
        ``<= query_t`` (an unseen instance among them); by default :func:`population_mean`.

    Returns
    -------
    numpy.ndarray
        ``(Q, D)``: entry ``d`` of query ``q`` is ``y[i, d]`` of the training row ``i`` of the
        same instance with ``mask[i, d]`` and the largest ``t[i] <= query_t[q]``.

    Examples
    --------
    >>> y = np.array([[1.0, 2.0], [3.0, 0.0]])
    >>> mask = np.array([[1, 1], [1, 0]], bool)
    >>> last_observed(["a", "a"], [0, 1], y, mask, ["a", "b"], [5, 5])
    array([[3., 2.],
           [2., 2.]])
    """
    if fallback is None:
        fallback = population_mean(y, mask, len(np.asarray(query_ids)))
    return _instance_fill(ids, t, y, mask, query_ids, query_t, "last", period, fallback)


def nearest_observed(
    ids: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    query_ids: np.ndarray,
    query_t: np.ndarray,
    *,
    period: float | None = None,
    fallback: np.ndarray | None = None,
) -> np.ndarray:
    """The instance's observed value of each entry nearest in time (either side).

    For imputation, a missing entry is filled from the nearest-in-time frame of the same instance
    where that entry is observed.

    Parameters
    ----------
    ids, t : numpy.ndarray
        Instance labels and times of the training rows, ``(N,)``.
    y : numpy.ndarray
        Training outcomes, ``(N, D)``; entries where ``mask`` is False are ignored.
    mask : numpy.ndarray
        Boolean ``(N, D)``, True where observed.
    query_ids, query_t : numpy.ndarray
        Instance labels and times of the query rows, ``(Q,)``.
    period : float, optional
        Period of the time: distances are taken on the circle.
    fallback : numpy.ndarray, optional
        ``(Q, D)`` values where the instance has no observed value of the entry (an unseen
        instance among them); by default :func:`per_time_mean`.

    Returns
    -------
    numpy.ndarray
        ``(Q, D)``: entry ``d`` of query ``q`` is ``y[i, d]`` of the training row ``i`` of the
        same instance with ``mask[i, d]`` and the smallest ``|t[i] - query_t[q]|``, the earlier
        row on a tie.

    Examples
    --------
    >>> y = np.array([[1.0, 2.0], [0.0, 4.0], [5.0, 6.0]])
    >>> mask = np.array([[1, 1], [0, 1], [1, 1]], bool)
    >>> nearest_observed(["a"] * 3, [0, 1, 2], y, mask, ["a"], [1])
    array([[1., 4.]])
    """
    if fallback is None:
        fallback = per_time_mean(t, y, mask, query_t, period=period)
    return _instance_fill(ids, t, y, mask, query_ids, query_t, "nearest", period, fallback)


def impute(prediction: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``y`` where observed, ``prediction`` where missing.

    Parameters
    ----------
    prediction : numpy.ndarray
        ``(N, D)`` predictions of the rows of ``y``.
    y : numpy.ndarray
        ``(N, D)`` outcomes.
    mask : numpy.ndarray
        Boolean ``(N, D)``, True where observed.

    Returns
    -------
    numpy.ndarray
        ``(N, D)``.
    """
    y, mask = _check(y, mask)
    return np.where(mask, y, prediction)


#: The trivial baselines, in the order the harness reports them.
NAMES: tuple[str, ...] = (
    "per-time mean",
    "last observed frame",
    "nearest observed frame",
    "population mean",
)


def predict_all(
    ids: np.ndarray,
    t: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray,
    query_ids: np.ndarray,
    query_t: np.ndarray,
    *,
    period: float | None = None,
) -> dict[str, np.ndarray]:
    """Every trivial baseline's predictions of the query rows.

    Parameters
    ----------
    ids, t, y, mask : numpy.ndarray
        The training rows: instance labels ``(N,)``, times ``(N,)``, outcomes and mask
        ``(N, D)``.
    query_ids, query_t : numpy.ndarray
        The query rows: instance labels and times, ``(Q,)``.
    period : float, optional
        Period of the time.

    Returns
    -------
    dict of str to numpy.ndarray
        :data:`NAMES` → ``(Q, D)`` predictions, each with its documented fallback.
    """
    n_query = len(np.asarray(query_ids))
    population = population_mean(y, mask, n_query)
    per_time = per_time_mean(t, y, mask, query_t, period=period)
    args = (ids, t, y, mask, query_ids, query_t)
    return {
        "per-time mean": per_time,
        "last observed frame": last_observed(*args, period=period, fallback=population),
        "nearest observed frame": nearest_observed(*args, period=period, fallback=per_time),
        "population mean": population,
    }
