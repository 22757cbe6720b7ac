"""Issue 19, item 10a: ``--glob``, ``--exclude`` and ``--limit`` select the same images on every path that
reads them: online ``label``, ``label --batch`` (the jobs created: nothing is paid for an excluded image),
``label --dry-run`` and ``batch collect``. Against FakeGemini; never the real API."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionkit.cli import main
from visionkit.testing import FakeGemini

KEY = "sekrit-selection-KEY-4242"
FILES = ("a/cat1.png", "a/dog1.png", "b/cat2.jpg", "b/dog2.png", "c3.png")

# (selection flags, the file names every path must use)
CASES = [
    ((), FILES),
    (("--glob", "*.png"), ("a/cat1.png", "a/dog1.png", "b/dog2.png", "c3.png")),
    (("--glob", "a/*"), ("a/cat1.png", "a/dog1.png")),
    (("--glob", "*CAT*", "--glob", "c3.*"), ("a/cat1.png", "b/cat2.jpg", "c3.png")),
    (("--exclude", "dog*"), ("a/cat1.png", "b/cat2.jpg", "c3.png")),
    (("--limit", "2"), ("a/cat1.png", "a/dog1.png")),
    (("--limit", "9"), FILES),
    (("--glob", "*.png", "--exclude", "a/*", "--limit", "1"), ("b/dog2.png",)),
]


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sel") / "imgs"
    rng = np.random.default_rng(3)
    for i, name in enumerate(FILES):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40 + i, 64, 3), dtype=np.uint8)).save(path)
    return root


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with FakeGemini(api_key=KEY) as fake:
        yield fake


def labelled(out: Path) -> list[str]:
    return sorted(i["file_name"] for i in json.loads((out / "annotations.json").read_text())["images"])


def batch_keys(server) -> list[str]:
    keys = []
    for create in server.batch.creates:
        keys += [r["metadata"]["key"] for r in create.json["batch"]["inputConfig"]["requests"]["requests"]]
    return sorted(keys)


def stems(files) -> list[str]:
    return sorted(Path(f).stem for f in files)


@pytest.mark.parametrize(("flags", "expected"), CASES, ids=[" ".join(f) or "all" for f, _ in CASES])
def test_every_path_selects_the_same_images(server, images, tmp_path, flags, expected):
    expected = sorted(expected)
    common = ("--task", "detect", "--base-url", server.base_url, *flags)

    # online: exactly the selected images are asked for and labelled
    code, _, err = run("label", images, "--out", tmp_path / "online", *common)
    assert code == 0, err
    assert labelled(tmp_path / "online") == expected
    assert len(server.generate_requests) == len(expected)

    # --dry-run: the same images would be requested
    code, stdout, err = run("label", images, "--out", tmp_path / "dry", *common, "--dry-run")
    assert code == 0, err
    planned = sorted(line.split()[1] for line in stdout.splitlines() if line.startswith("request "))
    assert planned == expected

    # --batch: the jobs hold only the selected images (nothing excluded is paid for), and the run labels them
    code, _, err = run("label", images, "--out", tmp_path / "batch", *common, "--batch", "--poll-interval",
                       "0.001")
    assert code == 0, err
    assert batch_keys(server) == stems(expected)
    assert labelled(tmp_path / "batch") == expected

    # batch collect: a --no-wait run collected later uses the same selection
    created = len(server.batch.creates)
    code, _, err = run("label", images, "--out", tmp_path / "later", *common, "--batch", "--no-wait")
    assert code == 0, err
    new = server.batch.creates[created:]
    assert sorted(r["metadata"]["key"] for c in new
                  for r in c.json["batch"]["inputConfig"]["requests"]["requests"]) == stems(expected)
    code, _, err = run("batch", "collect", tmp_path / "later", "--poll-interval", "0.001")
    assert code == 0, err
    assert labelled(tmp_path / "later") == expected
    assert len(server.generate_requests) == len(expected)  # no path but the online one asked online
