"""Every test here runs with an empty Pyro param store and one intra-op thread (tiny tensors)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated(isolated_pyro):
    yield
