"""Every notebook in notebooks/ runs top to bottom at CI size (``PYRO_LMMVAE_NOTEBOOK_SMALL=1``).

The sources are jupytext percent scripts (``NN_name.py``), each paired with an executed
``NN_name.ipynb`` whose cells must be the same (so the outputs shown belong to the source).

Each notebook runs in a fresh ``python3`` kernel whose working directory is a temporary folder
(the executed copy is written there). The kernel inherits the environment set here: the SMALL
flag, ``PYRO_LMMVAE_DATA`` (the shared data folder ``../shared/data`` when it exists, otherwise
tiny raw files in the same layout, ``mnist/`` and ``physionet2012/``, written by
``raw_files.py``) and a ``PYTHONPATH`` that puts this checkout first. Any cell error fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from raw_files import write_tiny_mnist, write_tiny_physionet

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
CellExecutionError = pytest.importorskip("nbclient.exceptions").CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
SHARED_DATA = ROOT.parent / "shared" / "data"
CELL_TIMEOUT_S = 600


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """The shared data folder, or tiny raw files laid out like it (mnist/, physionet2012/)."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    root = tmp_path_factory.mktemp("shared_data")
    write_tiny_mnist(root / "mnist")
    write_tiny_physionet(root / "physionet2012")
    return root


def test_notebooks_found():
    assert len(NOTEBOOKS) >= 3, f"no notebook sources in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_executed_notebook_is_in_step_with_its_source(path: Path):
    """The .ipynb holds the source's cells (run ``python notebooks/build.py`` after an edit)."""
    source = jupytext.read(path)
    executed = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    cells = [(c.cell_type, c.source.strip()) for c in source.cells]
    assert cells == [(c.cell_type, c.source.strip()) for c in executed.cells], path.stem
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.get("outputs") is not None for c in code)
    assert any(c.outputs for c in code), f"{path.stem}.ipynb holds no outputs: run build.py"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, data_root: Path, monkeypatch):
    nb = jupytext.read(path)
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", []), (
        f"{path.name}: the first code cell must be tagged 'parameters'"
    )
    assert "PYRO_LMMVAE_NOTEBOOK_SMALL" in first_code.source
    # The kernel is a child process: it inherits os.environ as it is when it starts.
    monkeypatch.setenv("PYRO_LMMVAE_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("PYRO_LMMVAE_DATA", str(data_root))
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.name} failed at CI size:\n{err}", pytrace=False)
    finally:
        nbformat.write(nb, tmp_path / f"{path.stem}.ipynb")  # the executed copy, for a look
