"""Build the API reference (HTML) from the package's numpydoc docstrings with pdoc.

Usage::

    python docs/build_api.py [OUT]          # default OUT: docs/api (not committed)

Open ``OUT/index.html``. ``pdoc --docformat numpy pyro_lmmvae`` serves a live version, but it
does not find ``pyro_lmmvae.models`` and ``pyro_lmmvae.guides`` (installed from their own
folders), which this script lists explicitly.
"""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path


def public_modules() -> list[str]:
    """Every public module of the package, subpackages installed from other folders included."""
    import pyro_lmmvae
    import pyro_lmmvae.guides
    import pyro_lmmvae.models

    names = ["pyro_lmmvae"]
    for package in (pyro_lmmvae, pyro_lmmvae.models, pyro_lmmvae.guides):
        if package is not pyro_lmmvae:
            names.append(package.__name__)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not any(part.startswith("_") for part in info.name.split(".")[1:]):
                names.append(info.name)
    return sorted(set(names))


def build(out: Path) -> Path:
    """Render every public module to ``out``; returns the index page."""
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="numpy")
    # pdoc walks the subpackages that live inside pyro_lmmvae/ (training, datasets) itself and
    # would warn about their modules given twice; models/ and guides/ it cannot walk.
    own = ("pyro_lmmvae.models.", "pyro_lmmvae.guides.")
    names = [n for n in public_modules() if n.count(".") <= 1 or n.startswith(own)]
    pdoc.pdoc(*names, output_directory=out)
    return out / "index.html"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("api")
    print(build(target))
