"""Split modules keep their import paths, and none of them depends on an import order: each module of
the split packages imports first in a clean interpreter (a cycle between siblings shows up as an
ImportError for whichever of them is imported first)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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


@pytest.mark.parametrize("package", ["visionkit.answer_json", "visionkit.testing"])
def test_every_module_imports_first_in_a_clean_interpreter(package):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, package], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failures"] == {}
    assert len(result["modules"]) > 1  # a package whose modules were walked, not one module


@pytest.mark.parametrize("module, names", [
    ("visionkit.answer_json", ["INVALID", "ItemList", "find_items"]),
    ("visionkit.testing", ["FakeGemini", "Fault", "RecordedRequest"]),
    ("visionkit.testing.fake_gemini", ["CANONICAL_STATUS", "DEFAULT_ITEMS", "Dialects", "FakeGemini", "Fault",
                                       "RecordedRequest", "answer_response", "default_responder",
                                       "error_body", "main", "text_response"]),
])
def test_split_modules_keep_their_public_names(module, names):
    """What other modules, tests, notebooks and benchmarks import from the old paths."""
    mod = __import__(module, fromlist=["*"])
    assert sorted(mod.__all__) == sorted(names)
    for name in names:
        assert getattr(mod, name) is not None
