"""The package's layout: every package is installed, and its modules import without a cycle.

The import graph is read from the sources with :mod:`ast`: one node per module of the packages
listed in ``pyproject.toml``, one edge per ``import`` of another of them, wherever it is written
(function-level imports count: a deferred import of a module that imports us is a cycle all the
same). Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``, so those are edges
too, except towards the importer's own packages (already being imported when it runs). Imports
under ``if TYPE_CHECKING:`` never run and are left out. The subprocess test then imports every
module, and every name the packages load lazily (PEP 562), in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the TOML reader that pip vendors
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
TOP = "pyro_lmmvae"


def _packages() -> dict[str, Path]:
    """``{package: folder}`` of ``[tool.setuptools] packages``, with its ``package-dir``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = config.get("package-dir", {})
    out = {}
    for name in config["packages"]:
        if name in folders:
            out[name] = ROOT / folders[name]
        else:  # below its parent's folder, as setuptools resolves it
            parent, _, last = name.rpartition(".")
            out[name] = out[parent] / last if parent in out else ROOT / name.replace(".", "/")
    return out


PACKAGES = _packages()


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(module: str, path: Path) -> set[str]:
    """The package modules that importing ``module`` may import directly (see the docstring)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                targets.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                for alias in child.names:  # `from pkg import module` imports the module
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in MODULES else base)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    edges = set()
    for target in targets:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # the target and the packages it runs first
            name = ".".join(parts[:i])
            if name in MODULES and name != module and not module.startswith(name + "."):
                edges.add(name)
    return edges


GRAPH = {module: _imported(module, path) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in GRAPH[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_every_package_folder_is_installed():
    """A folder with an ``__init__.py`` inside a package is listed in pyproject.toml."""
    assert {TOP, f"{TOP}.gp", f"{TOP}.models", f"{TOP}.guides"} <= set(PACKAGES)
    listed = {folder.resolve() for folder in PACKAGES.values()}
    for folder in PACKAGES.values():
        assert (folder / "__init__.py").is_file(), folder
        for init in folder.rglob("__init__.py"):
            assert init.parent.resolve() in listed, (
                f"{init.parent} is a package but not in [tool.setuptools] packages"
            )


def test_the_graph_sees_imports():
    """The reader finds module-level, relative and function-level imports (else the next
    test would pass on an empty graph)."""
    assert len(MODULES) > 40
    assert f"{TOP}.gp.bases" in GRAPH[f"{TOP}.design.formula"]  # module level
    assert f"{TOP}.gp.kernels" in GRAPH[f"{TOP}.datasets.gp_synthetic"]  # relative (..)
    assert f"{TOP}.gp.prior" in GRAPH[f"{TOP}.persistence.codecs"]  # inside a function
    assert f"{TOP}.models" in GRAPH[f"{TOP}.gp.inspection"]  # a package's __init__ runs
    assert f"{TOP}.api" not in GRAPH[f"{TOP}.gp.inspection"]  # TYPE_CHECKING only
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_graph_is_acyclic():
    cycles = _cycles(GRAPH)
    assert not cycles, "import cycles (function-level imports included): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_priors_do_not_import_the_gp_package():
    """The core builds no GP: ``gp`` builds on ``priors`` (``EffectPrior``), never the reverse."""
    gp = {m for m in MODULES if m == f"{TOP}.gp" or m.startswith(f"{TOP}.gp.")}
    assert len(gp) >= 7
    assert not _reachable(f"{TOP}.priors") & gp
    assert f"{TOP}.priors" in _reachable(f"{TOP}.gp.prior")


def test_every_module_imports_in_a_fresh_interpreter():
    """Import every module (``__main__`` runs a command: not that), then every lazily exported
    name, in a new process."""
    script = "\n".join(
        [
            "import importlib",
            f"for name in {sorted(m for m in MODULES if not m.endswith('.__main__'))!r}:",
            "    importlib.import_module(name)",
            f"for package in ({TOP!r}, {TOP + '.gp'!r}, {TOP + '.datasets'!r}):",
            "    module = importlib.import_module(package)",
            "    assert set(module._LAZY) <= set(module.__all__), package",
            "    for name in module.__all__:",
            "        getattr(module, name)",
            "print('ok')",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
