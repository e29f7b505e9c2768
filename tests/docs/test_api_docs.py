"""The API reference: every public module, class, function and method has a docstring, and
pdoc renders the whole package from them (numpydoc format)."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parents[2] / "docs" / "build_api.py"
_spec = importlib.util.spec_from_file_location("build_api", BUILD)
build_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_api)


def _undocumented(module) -> list[str]:
    public = getattr(module, "__all__", None)
    missing = [] if module.__doc__ else [module.__name__]
    for attr, obj in vars(module).items():
        if attr.startswith("_") or (public is not None and attr not in public):
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if obj.__module__ != module.__name__:
            continue  # documented where it is defined
        if not inspect.getdoc(obj):
            missing.append(f"{module.__name__}.{attr}")
        if inspect.isclass(obj):
            for name, member in vars(obj).items():
                if not name.startswith("_") and inspect.isfunction(member):
                    if not inspect.getdoc(getattr(obj, name)):
                        missing.append(f"{module.__name__}.{attr}.{name}")
    return missing


def test_every_public_object_has_a_docstring():
    modules = build_api.public_modules()
    expected = {"pyro_lmmvae.api", "pyro_lmmvae.models.olmm", "pyro_lmmvae.guides.slmm"}
    assert expected <= set(modules)
    missing = []
    for name in modules:
        missing += _undocumented(importlib.import_module(name))
    assert not missing, f"undocumented public objects: {missing}"


def test_pdoc_renders_the_api_reference(tmp_path):
    pytest.importorskip("pdoc")
    index = build_api.build(tmp_path)
    assert index.exists()
    page = (tmp_path / "pyro_lmmvae" / "api.html").read_text()
    assert "LMMVAE" in page and "Parameters" in page
    for sub in ("models/olmm", "guides/slmm", "training/loss", "datasets"):
        assert (tmp_path / "pyro_lmmvae" / f"{sub}.html").exists(), sub
    assert "load_physionet" in (tmp_path / "pyro_lmmvae" / "datasets.html").read_text()
