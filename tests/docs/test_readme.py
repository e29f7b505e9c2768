"""The Python examples of the README and the user guide run as written, in that order."""

from __future__ import annotations

import re
from pathlib import Path

from raw_files import write_tiny_mnist

README = Path(__file__).resolve().parents[2] / "README.md"
GUIDE = README.parent / "docs" / "guide.md"  # continues the README's quickstart
SHARED_MNIST = "../shared/data/mnist"


def _python_blocks() -> list[str]:
    text = README.read_text() + "\n" + GUIDE.read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) >= 3
    if not (README.parents[1] / "shared" / "data" / "mnist").is_dir():
        # Without the shared data, the real-data example runs on tiny files of the same format.
        write_tiny_mnist(tmp_path / "tiny_mnist")
        blocks = [b.replace(SHARED_MNIST, str(tmp_path / "tiny_mnist")) for b in blocks]
    else:
        blocks = [b.replace(SHARED_MNIST, str(README.parent / SHARED_MNIST)) for b in blocks]
    # the guide's lme4 example reads the data shipped in benchmarks/lme4
    blocks = [b.replace('"benchmarks/lme4/', f'"{README.parent}/benchmarks/lme4/') for b in blocks]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:  # later blocks use names defined by the quickstart
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "model.pt").exists() and (tmp_path / "effects.nc").exists()
    assert namespace["Y_hat"].shape == namespace["train"].y.shape
    assert list(namespace["summary"].columns[:2]) == ["mean", "sd"]
    assert namespace["Y_ctx"].shape == (len(namespace["future"]), namespace["train"].y.shape[1])
    assert namespace["gsnn"].design.formula.endswith("+ (1 | id)")
    assert namespace["K"].shape == (50, 50)
    assert namespace["traj"]["posterior_mean"].shape == (50, 2)
    assert '"learned": "variance"' in namespace["hyper"]
    assert "fourier(t, 4)" in namespace["lvae"].design.formula
    assert (tmp_path / "rotating.npz").exists() and namespace["interpolation_mse"] > 0
