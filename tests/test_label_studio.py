"""`visionkit export --format label-studio` imported into a REAL Label Studio.

The test starts ``label-studio`` (the pip package, SQLite, 127.0.0.1, a free port, a temporary data dir, no
browser), creates a project with the exported ``config.xml``, adds the documented *Local files* storage,
imports the tasks through the REST API, reads the predictions back and compares every region with
pycocotools' ``annToMask`` of the run's own annotations. It skips only when the server cannot start, and
says why (not installed: see tests/tooling.py; ``.ci/run`` installs it in a venv of its own).

Label Studio's first start migrates a new SQLite database: about 2 minutes on a loaded 2-core machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
import requests
from conftest import FIXTURES
from pycocotools.coco import COCO
from tooling import tool_python

from visionkit.formats.export import export_dataset
from visionkit.run.pipeline import label

START_TIMEOUT = 600  # seconds; the first start runs every migration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """``(base_url, headers, export root)``: a Label Studio serving local files from the export root."""
    program = tool_python("label-studio")
    root = tmp_path_factory.mktemp("label-studio")
    docs = root / "exports"  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: the exports live under it
    docs.mkdir()
    port, token = _free_port(), secrets.token_hex(20)
    env = {**os.environ,
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(docs),
           "LABEL_STUDIO_BASE_DATA_DIR": str(root / "data"),
           "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",  # no error reporting to the outside
           "HOME": str(root)}
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [program, "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
         "--data-dir", str(root / "data"), "--username", "test@example.com",
         "--password", secrets.token_hex(8), "--user-token", token, "--enable-legacy-api-token"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                tail = (root / "server.log").read_text(errors="replace")[-2000:]
                pytest.skip(f"label-studio exited with code {proc.returncode} before serving:\n{tail}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/health", timeout=5).ok:
                    break
            if time.monotonic() > deadline:
                pytest.skip(f"label-studio did not answer /health within {START_TIMEOUT} s")
            time.sleep(1)
        yield base, {"Authorization": f"Token {token}"}, docs
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ls-run") / "run"
    assert label([FIXTURES / "images"], out, task="segment", replay=FIXTURES / "replay", overlays=False).ok
    return out


def _region_mask(region: dict, height: int, width: int) -> np.ndarray:
    """A Label Studio region as a boolean image: brush RLE decoded by label-studio-converter, polygons and
    rectangles rasterised by pycocotools (the same rasteriser as annToMask)."""
    from pycocotools import mask as mask_utils

    value = region["value"]
    if region["type"] == "brushlabels":
        from label_studio_converter.brush import decode_rle

        return decode_rle(value["rle"]).reshape(height, width, 4)[..., 3] > 0
    if region["type"] == "polygonlabels":
        pts = (np.asarray(value["points"]) / 100 * [width, height]).reshape(-1).tolist()
    else:
        x, y = value["x"] / 100 * width, value["y"] / 100 * height
        w, h = value["width"] / 100 * width, value["height"] / 100 * height
        pts = [x, y, x + w, y, x + w, y + h, x, y + h]
    return mask_utils.decode(mask_utils.frPyObjects([pts], height, width))[..., 0].astype(bool)


@pytest.mark.parametrize("polygons", [False, True], ids=["brush", "polygons"])
def test_label_studio_imports_the_export_and_its_predictions_are_the_masks(studio, run_dir, polygons):
    pytest.importorskip("label_studio_converter.brush", reason="label-studio-converter is not installed")
    base, headers, docs = studio
    # the documented setup: two exports under one LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (--ls-root), and
    # a Local files storage whose path is the export's images/ folder
    dest = docs / ("polygons" if polygons else "brush")
    s = export_dataset(run_dir, dest, format="label-studio", polygons=polygons, split="val=0.25", seed=1,
                       ls_root=docs)
    assert s.ok and s.annotations == 30

    def api(method, path, **kw):
        r = requests.request(method, f"{base}{path}", headers=headers, timeout=120, **kw)
        assert r.ok, (method, path, r.status_code, r.text[:2000])
        return r.json()

    project = api("POST", "/api/projects", json={"title": f"visionkit {dest.name}",
                                                  "label_config": (dest / "config.xml").read_text()})
    api("POST", "/api/storages/localfiles", json={"project": project["id"], "path": str(dest / "images"),
                                                 "use_blob_urls": True, "title": "visionkit export"})
    for part in ("train", "val"):
        tasks = json.loads((dest / f"tasks_{part}.json").read_text())
        done = api("POST", f"/api/projects/{project['id']}/import", json=tasks)
        assert done["task_count"] == len(tasks) and done["prediction_count"] == len(tasks)
    back = api("GET", "/api/tasks", params={"project": project["id"], "fields": "all", "page_size": 100})
    assert len(back["tasks"]) == 8

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(run_dir / "annotations.json"))
    by_name = {i["file_name"]: i for i in truth.dataset["images"]}
    names = {c["id"]: c["name"] for c in truth.dataset["categories"]}
    ious, kinds = [], set()
    for t in back["tasks"]:
        img = by_name[t["data"]["file_name"]]
        served = requests.get(f"{base}{t['data']['image']}", headers=headers, timeout=60)
        assert served.ok and served.content == (dest / "images" / t["data"]["split"]
                                                / t["data"]["file_name"]).read_bytes()
        regions = t["predictions"][0]["result"]
        anns = truth.imgToAnns[img["id"]]
        assert len(regions) == len(anns)
        for region, ann in zip(regions, anns):
            assert region["value"][region["type"]] == [names[ann["category_id"]]]
            got = _region_mask(region, img["height"], img["width"])
            want = truth.annToMask(ann).astype(bool)
            if polygons:  # polygons cannot hold holes: they are filled, as documented
                from scipy.ndimage import binary_fill_holes

                want = binary_fill_holes(want)
            ious.append((got & want).sum() / (got | want).sum())
            kinds.add(region["type"])
    assert len(ious) == 30
    assert kinds == ({"polygonlabels", "rectanglelabels"} if polygons else {"brushlabels", "rectanglelabels"})
    assert np.mean(ious) >= 0.95 and min(ious) >= 0.8, (np.mean(ious), min(ious))
    if not polygons:
        assert min(ious) == 1.0  # brush RLE is exact (and so are the box-only rectangles)
