"""The online path's CPU savings keep every behaviour: a fresh answer parsed once, a JPEG sent as it is
(without its metadata), the request body built without a second scan of the image, and the folders of
saved answers synced together. Against FakeGemini on 127.0.0.1, never the real API."""

from __future__ import annotations

import base64
import io
import json
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import visionkit.answers.parse as parse_module
import visionkit.run.image_step as image_step
from visionkit import label
from visionkit.errors import InputError
from visionkit.gemini import GeminiClient, prepare_image
from visionkit.gemini.request import build_request, encode_request
from visionkit.media import atomic
from visionkit.media.atomic import FolderSync, write_bytes_atomic
from visionkit.media.jpegstrip import strip_jpeg_metadata
from visionkit.run.answer_source import ResponseStore
from visionkit.testing.fake_gemini import FakeGemini
from visionkit.testing.fake_responses import text_response
from visionkit.testing.synthetic import segment_answer

KEY = "test-key-online-cpu"


def _jpeg(wh=(120, 90), *, mode="RGB", exif=None, seed=0, **save) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (wh[1] // 8 + 1, wh[0] // 8 + 1, 3), dtype=np.uint8)
    im = Image.fromarray(arr).resize(wh, Image.Resampling.BILINEAR).convert(mode)
    buf = io.BytesIO()
    im.save(buf, "JPEG", **({"exif": exif} if exif is not None else {}), **save)
    return buf.getvalue()


def _exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "CameraMaker"  # Make
    exif[0x0131] = "secret-software-serial"  # Software
    return exif


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


# -- a JPEG sent as it is ------------------------------------------------------------------------------------

@pytest.mark.parametrize("wh", [(120, 90), (90, 120), (1, 1), (1024, 17)])
@pytest.mark.parametrize("save", [{}, {"progressive": True}, {"restart_marker_blocks": 1},
                                  {"icc_profile": b"\x00" * 128}, {"comment": b"a comment"},
                                  {"subsampling": 0}, {"optimize": True}])
def test_upright_jpeg_within_max_side_is_sent_as_is_without_metadata(tmp_path, wh, save):
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg(wh, exif=_exif(1), **save) + b"trailing junk after EOI")
    prepared = prepare_image(path, max_side=1024)
    assert (prepared.original_wh, prepared.sent_wh, prepared.mime_type) == (wh, wh, "image/jpeg")
    assert np.array_equal(_pixels(prepared.data), _pixels(path.read_bytes()))  # the very same pixels
    assert len(prepared.data) < path.stat().st_size
    assert b"CameraMaker" not in prepared.data and b"secret-software-serial" not in prepared.data
    assert b"a comment" not in prepared.data and prepared.data.endswith(b"\xff\xd9")
    assert not dict(Image.open(io.BytesIO(prepared.data)).getexif())
    assert (b"ICC_PROFILE" in prepared.data) == ("icc_profile" in save)  # kept: it says what the colours are


@pytest.mark.parametrize("case", ["rotated", "too large", "cmyk", "quality", "bytes per pixel", "png",
                                  "truncated"])
def test_other_images_are_decoded_and_re_encoded_as_before(tmp_path, case):
    path = tmp_path / "a.jpg"
    kw = {}
    if case == "rotated":
        data = _jpeg((120, 90), exif=_exif(6))
    elif case == "too large":
        data, kw = _jpeg((300, 90)), {"max_side": 200}
    elif case == "cmyk":
        data = _jpeg((120, 90), mode="CMYK")
    elif case == "quality":
        data, kw = _jpeg((120, 90)), {"jpeg_quality": 50}
    elif case == "bytes per pixel":  # noise at quality 100, no subsampling: over 1 byte a pixel
        rng = np.random.default_rng(1)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(buf, "JPEG", quality=100,
                                                                                  subsampling=0)
        data = buf.getvalue()
        assert len(data) > 400 * 300
    elif case == "png":
        path = tmp_path / "a.png"
        buf = io.BytesIO()
        Image.new("RGB", (120, 90), (1, 2, 3)).save(buf, "PNG")
        data = buf.getvalue()
    else:
        data = _jpeg((120, 90))[:-300]  # cut short, no EOI: refused before anything is sent, as before
    path.write_bytes(data)
    try:
        prepared = prepare_image(path, **kw)
    except InputError as exc:  # the truncated one: refused as before, naming the file
        assert case == "truncated" and str(path) in str(exc)
        return
    assert case != "truncated"
    assert prepared.data != data
    assert Image.open(io.BytesIO(prepared.data)).format == "JPEG"
    assert Image.open(io.BytesIO(prepared.data)).mode == "RGB"
    if case == "rotated":
        assert prepared.sent_wh == (90, 120)


def test_a_large_tiny_jpeg_is_bounded_by_the_minimum_not_the_pixels(tmp_path, monkeypatch):
    import visionkit.gemini.images as images

    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg((8, 8), icc_profile=b"\x00" * 2000))
    assert prepare_image(path).data == strip_jpeg_metadata(path.read_bytes())  # 2.6 KB for 64 pixels
    monkeypatch.setattr(images, "AS_IS_MIN_BYTES", 1000)
    assert prepare_image(path).data != strip_jpeg_metadata(path.read_bytes())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_strip_never_raises_on_any_bytes(data):
    out = strip_jpeg_metadata(data)
    assert out is None or (out.startswith(b"\xff\xd8") and out.endswith(b"\xff\xd9"))
    out = strip_jpeg_metadata(b"\xff\xd8" + data)
    assert out is None or out.endswith(b"\xff\xd9")


_BASE = {p: _jpeg((40, 30), seed=3, progressive=p) for p in (False, True)}


@settings(max_examples=150, deadline=None)
@given(st.booleans(),
       st.lists(st.tuples(st.sampled_from([0xE0, 0xE1, 0xE3, 0xED, 0xEF, 0xFE]),
                          st.binary(max_size=60).filter(lambda b: not b.startswith(b"JFIF\x00"))),
                max_size=4),
       st.binary(max_size=50), st.integers(0, 3))
def test_inserted_metadata_and_trailing_bytes_are_dropped_and_pixels_kept(progressive, segments, tail,
                                                                          fill):
    """Oracle: the same JPEG without the inserted segments and tail strips to the same bytes."""
    base = _BASE[progressive]
    inserted = b"".join(b"\xff" * (1 + fill) + bytes([m]) + (len(b) + 2).to_bytes(2, "big") + b
                        for m, b in segments)
    data = base[:2] + inserted + base[2:] + tail
    out = strip_jpeg_metadata(data)
    assert out == strip_jpeg_metadata(base)
    assert np.array_equal(_pixels(out), _pixels(base))
    for _, body in segments:
        if len(body) >= 8:
            assert body not in out


def test_jfif_thumbnails_are_cut_and_jfxx_dropped():
    base = _BASE[False]
    assert base[2:4] == b"\xff\xe0" and base[6:11] == b"JFIF\x00"
    app0_end = 4 + int.from_bytes(base[4:6], "big")
    thumb = bytes(range(256)) * 3  # a 16x16 RGB thumbnail
    jfif = b"JFIF\x00" + base[11:18] + b"\x10\x10" + thumb
    jfxx = b"JFXX\x00\x13" + thumb
    data = (base[:2] + b"\xff\xe0" + (len(jfif) + 2).to_bytes(2, "big") + jfif
            + b"\xff\xe0" + (len(jfxx) + 2).to_bytes(2, "big") + jfxx + base[app0_end:])
    out = strip_jpeg_metadata(data)
    assert out == strip_jpeg_metadata(base) and thumb not in out
    assert np.array_equal(_pixels(out), _pixels(base))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(0, 300))
def test_cut_or_damaged_segments_are_refused_not_misread(which, cut):
    data = _BASE[bool(which & 1)]
    assert strip_jpeg_metadata(data[:cut]) is None  # cut before the scan data ends: no EOI
    broken = bytearray(data)
    broken[4:6] = b"\xff\xff"  # APP0's length now runs past the end
    assert strip_jpeg_metadata(bytes(broken)) is None


# -- the request body ----------------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(st.binary(min_size=0, max_size=3000), st.text(max_size=40), st.sampled_from(["detect", "segment"]))
def test_encoded_request_is_byte_for_byte_json_dumps(data, prompt, task):
    from visionkit.gemini.images import PreparedImage
    from visionkit.gemini.request import RequestOptions

    image = PreparedImage(data, "image/jpeg", (10, 10), (10, 10))
    options = RequestOptions(prompt=prompt if prompt.strip() else None)  # a blank prompt is refused
    body = build_request(image, task, "gemini-2.5-flash", options)
    assert encode_request(body) == json.dumps(body).encode("utf-8")
    sent = json.loads(encode_request(body))["contents"][0]["parts"][0]["inlineData"]["data"]
    assert base64.b64decode(sent) == data


# -- parsed once ---------------------------------------------------------------------------------------------

def _folder(tmp_path, n=4):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(n):
        (folder / f"img{i}.jpg").write_bytes(_jpeg((64 + 8 * i, 48), exif=_exif(1), seed=i))
    return folder


def _server():
    answers = [text_response(segment_answer(3, seed=i, unfiltered=True)) for i in range(4)]
    count = iter(range(10**6))
    return FakeGemini(lambda request: answers[next(count) % 4], api_key=KEY)


def _without_date(path):
    data = json.loads(path.read_text())
    data["info"].pop("date_created")
    return data


@pytest.mark.parametrize("threshold", [127, 200])
def test_a_fresh_answer_is_parsed_once(tmp_path, monkeypatch, threshold):
    calls = []
    original = parse_module.parse_response

    def counting(*args, **kw):
        calls.append(1)
        return original(*args, **kw)

    # the re-ask check imports it at call time; the step holds its own name
    monkeypatch.setattr(parse_module, "parse_response", counting)
    monkeypatch.setattr(image_step, "parse_response", counting)
    images = _folder(tmp_path)
    with _server() as server, GeminiClient(api_key=KEY, base_url=server.base_url) as client:
        summary = label([images], tmp_path / "online", client=client, threshold=threshold, concurrency=2)
        sent = [r for r in server.generate_requests]
    assert summary.ok and summary.requested == 4
    # one parse per image at the default threshold (before: the re-ask check's and the step's);
    # another threshold needs its own parse, as before
    assert len(calls) == (4 if threshold == 127 else 8)
    # what was sent: each JPEG as it is, without its EXIF
    for request in sent:
        data = base64.b64decode(request.parts[0]["inlineData"]["data"])
        assert b"CameraMaker" not in data
        assert any(strip_jpeg_metadata(p.read_bytes()) == data for p in images.iterdir())
    monkeypatch.undo()
    label([images], tmp_path / "replayed", replay=tmp_path / "online" / "responses", threshold=threshold)
    assert _without_date(tmp_path / "online" / "annotations.json") == \
        _without_date(tmp_path / "replayed" / "annotations.json")


# -- folders synced together ---------------------------------------------------------------------------------

def test_folder_sync_defers_then_syncs_each_folder_once(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(atomic, "_sync_folder", lambda folder: synced.append(folder))
    folders = FolderSync(interval=3600)  # the timer never fires in this test: sync() and close() do
    for i in range(5):
        write_bytes_atomic(tmp_path / "a" / f"{i}.json", b"{}", folders=folders)
        write_bytes_atomic(tmp_path / "b" / f"{i}.json", b"{}", folders=folders)
    assert synced == [] and (tmp_path / "a" / "4.json").read_bytes() == b"{}"  # renamed at once
    folders.sync()
    assert sorted(synced) == [tmp_path / "a", tmp_path / "b"]
    folders.close()
    assert len(synced) == 2  # nothing was pending
    write_bytes_atomic(tmp_path / "a" / "late.json", b"{}", folders=folders)
    assert synced[-1] == tmp_path / "a" and len(synced) == 3  # after close: at once, as before


def test_folder_sync_timer_syncs_without_another_write(tmp_path, monkeypatch):
    done = threading.Event()
    synced = []

    def record(folder):
        synced.append(folder)
        done.set()

    monkeypatch.setattr(atomic, "_sync_folder", record)
    folders = FolderSync(interval=0.01)
    write_bytes_atomic(tmp_path / "x.json", b"{}", folders=folders)
    assert done.wait(30)
    assert synced == [tmp_path]
    folders.close()


def test_a_save_fsyncs_its_files_and_leaves_the_folders_to_the_sync(tmp_path, monkeypatch):
    fsyncs, synced = [], []
    real_fsync = atomic.os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: fsyncs.append(fd) or real_fsync(fd))
    monkeypatch.setattr(atomic, "_sync_folder", lambda folder: synced.append(folder))
    image = tmp_path / "img.jpg"
    image.write_bytes(_jpeg())
    store = ResponseStore(tmp_path / "responses", FolderSync(interval=3600))
    store.save("k", {"task": "segment"}, image, {"candidates": []})
    assert len(fsyncs) == 2 and synced == []  # the record and the answer, each fsynced before its rename
    assert store.load("k", {"task": "segment"}, image)[0] == {"candidates": []}
    store.folders.close()
    assert sorted(synced) == [tmp_path / "responses", tmp_path / "responses" / ".request"]


def test_an_online_run_syncs_the_answer_folders_once_not_per_answer(tmp_path, monkeypatch):
    synced = []
    real = atomic._sync_folder
    monkeypatch.setattr(atomic, "_sync_folder", lambda folder: synced.append(folder) or real(folder))
    images = _folder(tmp_path)
    with _server() as server, GeminiClient(api_key=KEY, base_url=server.base_url) as client:
        summary = label([images], tmp_path / "out", client=client, concurrency=4)
    assert summary.ok and summary.requested == 4
    responses = tmp_path / "out" / "responses"
    # before: two folder fsyncs per answer; now at least one at the end of the run for each folder
    assert 1 <= synced.count(responses) < 4 and 1 <= synced.count(responses / ".request") < 4
