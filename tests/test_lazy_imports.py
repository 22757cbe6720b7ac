"""The offline path imports only what it uses: no HTTP client without a request, no shapely without
polygons. Each case runs in a fresh interpreter, so modules imported by other tests do not hide a leak."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import FIXTURES

HEAVY = ("requests", "urllib3", "shapely", "visionkit.gemini", "visionkit.gemini.client")

SCRIPT = textwrap.dedent("""
    import io, json, sys
    import visionkit.cli
    after_import = sorted(m for m in {heavy!r} if m in sys.modules)
    argv = json.loads(sys.argv[1])
    status = visionkit.cli.main(argv, stdout=io.StringIO(), stderr=io.StringIO()) if argv else 0
    print(json.dumps({{"status": status, "after_import": after_import,
                       "after_run": sorted(m for m in {heavy!r} if m in sys.modules)}}))
""")


def _run(argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(heavy=HEAVY), json.dumps(argv)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _offline(tmp_path, *extra: str) -> list[str]:
    return ["label", str(FIXTURES / "images"), "--out", str(tmp_path / "out"), "--task", "segment",
            "--replay", str(FIXTURES / "replay"), "-q", *extra]


def test_importing_the_cli_imports_no_http_client_and_no_shapely():
    assert _run([])["after_import"] == []


def test_offline_label_run_never_imports_the_request_layer_or_shapely(tmp_path):
    result = _run(_offline(tmp_path))
    assert result["status"] == 0
    assert result["after_run"] == []
    assert (tmp_path / "out" / "annotations.json").is_file()


@pytest.mark.parametrize("flag, expected", [("--polygons", ["shapely"])])
def test_polygons_do_import_shapely(tmp_path, flag, expected):
    """The control: the check above would catch shapely if it were imported."""
    assert _run(_offline(tmp_path, flag))["after_run"] == expected
