"""Issue 19 #1: a name read from a run (``file_name``, a key) never becomes a path outside its folder.

Every table here fails on the code before the fix: ``export`` copied the image over ``../victim.jpg`` (or
an absolute name) and wrote ``victim.txt`` beside DEST with exit 0; ``overlays`` drew over a key's
``../../victim``."""

from __future__ import annotations

import io
import json
import os

import pytest

from visionkit.cli import main
from visionkit.errors import InputError
from visionkit.media.paths import check_name, safe_join
from visionkit.testing.synthetic import write_labelled_folder

VICTIM = b"precious, not an image"


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    return main([str(a) for a in argv], stdout=out, stderr=err), out.getvalue(), err.getvalue()


# -- the check itself --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a.jpg", "sub/a.jpg", "a..b.jpg", "..a.jpg", "sub/.hidden.png", "x"])
def test_names_inside_the_folder_are_kept(tmp_path, name):
    assert safe_join(tmp_path, name, file="f.json", field="images[0].file_name") == tmp_path / name


@pytest.mark.parametrize("name, why", [
    ("", "non-empty"),
    (None, "non-empty"),
    (7, "non-empty"),
    ("a\0.jpg", "NUL"),
    ("/etc/passwd", "absolute"),
    ("\\\\server\\share\\x.jpg", "absolute"),
    ("C:\\victim.jpg", "absolute"),
    ("c:victim.jpg", "absolute"),
    ("..", "'..' component"),
    ("../victim.jpg", "'..' component"),
    ("../../../victim.jpg", "'..' component"),
    ("sub/../../victim.jpg", "'..' component"),
    ("sub\\..\\..\\victim.jpg", "'..' component"),
])
def test_names_that_leave_the_folder_are_refused_naming_file_and_field(tmp_path, name, why):
    with pytest.raises(InputError, match=rf"run/annotations.json: images\[3\].file_name: .*{why}"):
        safe_join(tmp_path, name, file="run/annotations.json", field="images[3].file_name")
    with pytest.raises(InputError, match=why):
        check_name(name, file="run/annotations.json", field="images[3].file_name")


def test_a_name_through_a_symlink_out_of_the_folder_is_refused(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "inner").mkdir()
    os.symlink(outside, root / "link")
    os.symlink(root / "inner", root / "back")  # a link that stays inside is fine
    assert safe_join(root, "back/a.jpg", file="f", field="k") == root / "back" / "a.jpg"
    check_name("link/a.jpg", file="f", field="k")  # the text alone is fine ...
    with pytest.raises(InputError, match=r"f: k: 'link/a.jpg' resolves to .*outside.*through a symlink"):
        safe_join(root, "link/a.jpg", file="f", field="k")  # ... but the disk takes it outside


# -- export: both formats, both forms --------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("paths")
    images, replay = write_labelled_folder(base / "data", 2, (64, 48), masks=1)
    out = base / "run"
    assert _cli("label", images, "--out", out, "--replay", replay, "-q", "--no-overlays")[0] == 0
    return out


def _hostile_run(run, tmp_path, form):
    """A copy of ``run`` whose second image's file_name leaves DEST: ``../../../victim.jpg`` from
    DEST/images/train, or the victim's absolute path; sources.json maps the name to the real image."""
    victim = tmp_path / "victim.jpg"
    victim.write_bytes(VICTIM)
    name = "../../../victim.jpg" if form == "dotdot" else str(victim)
    edited = tmp_path / "run"
    edited.mkdir()
    ann = json.loads((run / "annotations.json").read_text())
    sources = json.loads((run / "sources.json").read_text())
    old = ann["images"][1]["file_name"]
    ann["images"][1]["file_name"] = name
    sources["images"][name] = sources["images"].pop(old)
    (edited / "annotations.json").write_text(json.dumps(ann))
    (edited / "sources.json").write_text(json.dumps(sources))
    return edited, victim


@pytest.mark.parametrize("fmt", ["coco", "yolo"])
@pytest.mark.parametrize("form", ["dotdot", "absolute"])
def test_export_refuses_a_file_name_that_leaves_dest(run, tmp_path, fmt, form):
    edited, victim = _hostile_run(run, tmp_path, form)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = _cli("export", edited, "--to", tmp_path / "dest", "--format", fmt)
    assert code == 2, err
    assert f"{edited / 'annotations.json'}: images[1].file_name:" in err and "Traceback" not in err
    assert victim.read_bytes() == VICTIM
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no victim.txt, nothing beside DEST


@pytest.mark.parametrize("form", ["dotdot", "absolute"])
def test_export_with_images_root_refuses_it_too(run, tmp_path, form):
    edited, victim = _hostile_run(run, tmp_path, form)
    (edited / "sources.json").unlink()
    code, _, err = _cli("export", edited, "--to", tmp_path / "dest", "--images", tmp_path / "data" / "images")
    assert code == 2 and "images[1].file_name" in err
    assert victim.read_bytes() == VICTIM and not (tmp_path / "victim.txt").exists()


# -- overlays (redraw): keys.json and sources.json ----------------------------------------------------------

@pytest.fixture
def redraw_run(tmp_path):
    images, replay = write_labelled_folder(tmp_path / "data", 2, (64, 48), masks=1)
    out = tmp_path / "data" / "run"
    assert _cli("label", images, "--out", out, "--replay", replay, "-q", "--no-overlays")[0] == 0
    return out, replay


@pytest.mark.parametrize("key", ["../../victim", "ABSOLUTE", "sub/victim", "..\\..\\victim"])
def test_overlays_refuse_a_key_that_leaves_the_folder(redraw_run, tmp_path, key):
    out, replay = redraw_run
    key = str(tmp_path / "victim") if key == "ABSOLUTE" else key
    data = json.loads((out / "keys.json").read_text())
    first = sorted(data["keys"])[0]
    data["keys"][first] = key
    (out / "keys.json").write_text(json.dumps(data))
    code, _, err = _cli("overlays", out, "--replay", replay)
    assert code == 2 and f"keys.json: keys[{first!r}]:" in err and "Traceback" not in err
    assert not list(tmp_path.glob("victim*")) and not list((tmp_path / "data").glob("victim*"))


@pytest.mark.parametrize("name", ["../victim.png", "/abs/victim.png"])
def test_overlays_refuse_a_source_name_that_leaves_the_folder(redraw_run, name):
    out, replay = redraw_run
    data = json.loads((out / "sources.json").read_text())
    first = sorted(data["images"])[0]
    data["images"][name] = data["images"].pop(first)
    (out / "sources.json").write_text(json.dumps(data))
    code, _, err = _cli("overlays", out, "--replay", replay)
    assert code == 2 and "sources.json: images[" in err and name in err
