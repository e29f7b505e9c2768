"""The data set of a benchmark configuration and its train / validation / test splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyro_lmmvae.datasets import (
    LongitudinalDataset,
    load_physionet,
    make_health_mnist,
    make_rotating_mnist,
    make_synthetic,
)

__all__ = ["LOADERS", "Splits", "load_dataset"]


def _mnist_root(root: Path) -> Path:
    return root / "mnist"


LOADERS = {
    "health_mnist": lambda root, args, cache: make_health_mnist(
        _mnist_root(root), cache=cache, **args
    ),
    "rotating_mnist": lambda root, args, cache: make_rotating_mnist(
        _mnist_root(root), cache=cache, **args
    ),
    "physionet": lambda root, args, cache: load_physionet(
        root / "physionet2012", cache=cache, **args
    ),
    "synthetic": lambda root, args, cache: make_synthetic(**args),
}


def load_dataset(config: dict, root: str | Path, cache: str | Path | None) -> LongitudinalDataset:
    """The configuration's dataset, from the shared data folder ``root``."""
    return LOADERS[config["dataset"]](Path(root), dict(config.get("data", {})), cache)


@dataclass
class Splits:
    train: LongitudinalDataset
    val: LongitudinalDataset
    test: LongitudinalDataset


def _split(ds: LongitudinalDataset) -> Splits:
    data = ds.data.assign(row=np.arange(ds.n_obs))
    full = LongitudinalDataset(
        data, ds.y, ds.mask, ds.y_true, ds.truth, ds.name, ds.instance_column
    )
    return Splits(full.split("train"), full.split("val"), full.split("test"))
