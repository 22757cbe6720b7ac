"""Split modules keep their import paths, and none of them depends on an import order: each module of
the split packages imports first in a clean interpreter (a cycle between siblings shows up as an
ImportError for whichever of them is imported first)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Each module of the package is imported on its own, with every visionkit module forgotten first.
SCRIPT = textwrap.dedent("""
    import importlib, importlib.util, json, pkgutil, sys
    package = sys.argv[1]
    where = importlib.util.find_spec(package).submodule_search_locations
    names = [package] + [m.name for m in pkgutil.iter_modules(where or [], package + ".")]
    failures = {}
    for name in names:
        for loaded in [m for m in sys.modules if m == "visionkit" or m.startswith("visionkit.")]:
            del sys.modules[loaded]
        try:
            importlib.import_module(name)
        except Exception as exc:
            failures[name] = repr(exc)
    print(json.dumps({"failures": failures, "modules": names}))
""")


@pytest.mark.parametrize("package", ["visionkit.answers.answer_json", "visionkit.testing",
                                     "visionkit.gemini.batch", "visionkit.cli"])
def test_every_module_imports_first_in_a_clean_interpreter(package):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, package], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failures"] == {}
    assert len(result["modules"]) > 1  # a package whose modules were walked, not one module


@pytest.mark.parametrize("module, names", [
    ("visionkit.answers.answer_json", ["INVALID", "ItemList", "find_items"]),
    ("visionkit.testing", ["FakeGemini", "Fault", "RecordedRequest"]),
    ("visionkit.testing.fake_gemini", ["CANONICAL_STATUS", "DEFAULT_ITEMS", "Dialects", "FakeGemini", "Fault",
                                       "RecordedRequest", "answer_response", "default_responder",
                                       "error_body", "text_response"]),
])
def test_split_modules_keep_their_public_names(module, names):
    """What other modules, tests, notebooks and benchmarks import from the old paths."""
    mod = __import__(module, fromlist=["*"])
    assert sorted(mod.__all__) == sorted(names)
    for name in names:
        assert getattr(mod, name) is not None


# -- the layout (issue 17): no import cycle, a small root, no oversized module ------------------------------

PACKAGE = Path(__file__).resolve().parents[1] / "visionkit"


def _modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every .py file under the package folder ``root``."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """Every import between the package's modules, at any depth (inside functions and TYPE_CHECKING blocks
    too): ``from pkg import mod`` counts as an import of ``pkg.mod``, ``from pkg.mod import name`` of
    ``pkg.mod``."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
            visit(v)
    return found


@pytest.mark.parametrize("files, expected", [
    ({"__init__.py": "", "a.py": "from . import b", "b.py": ""}, []),
    ({"__init__.py": "", "a.py": "from .b import x", "b.py": "def f():\n    from .a import y\n"},
     [["pkg.a", "pkg.b"]]),  # a lazy import inside a function closes the loop
    ({"__init__.py": "", "a.py": "from .sub import c", "sub/__init__.py": "",
      "sub/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import A\n"},
     [["pkg.a", "pkg.sub.c"]]),
    ({"__init__.py": "", "a.py": "import pkg.b", "b.py": "from pkg import a"}, [["pkg.a", "pkg.b"]]),
])
def test_the_cycle_finder_sees_lazy_and_type_checking_imports(tmp_path, files, expected):
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert cycles(import_graph(tmp_path / "pkg")) == expected


def test_no_import_cycle_in_the_package():
    graph = import_graph(PACKAGE)
    assert len(graph) > 90  # the whole package was read
    assert cycles(graph) == []


def test_the_package_root_is_small():
    entries = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert entries - {"__init__.py", "__main__.py", "py.typed"} <= {
        "_version.py", "errors.py", "core", "answers", "media", "formats", "draw", "gemini", "run", "quality",
        "cli", "testing"}


@pytest.mark.parametrize("path", sorted(_modules(PACKAGE).values()),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_oversized(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 450, "split it along its seams"
