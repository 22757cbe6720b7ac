"""Issue 19 #2: a server that echoes the key JSON-escaped, split over text parts or percent-encoded, in a
label or in ``modelVersion``, never gets it written, logged or raised in clear.

Before the fix redaction ran on the raw bytes only: the ``\\uXXXX`` label became a category name in
``annotations.json`` and the escaped ``modelVersion`` reached ``responses/<key>.json`` in clear. The oracle
here is independent of the redaction code: it decodes every file the slow, obvious way (JSON strings,
recursively; then URL and HTML decoding) and looks for any 8 characters of the key."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import logging
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from visionkit.cli import main
from visionkit.errors import APIError
from visionkit.gemini.redact import redact_key, redact_split_parts
from visionkit.testing.fake_gemini import FakeGemini, Fault

KEY = "AQ.Ab8RN6Lq-echo-SECRET-zz91XyK3m0PqW7vT2"
PLACES = ["label", "label-escaped", "label-split", "label-percent", "model-version-escaped",
          "label-percent-twice", "label-html-bare", "label-base64", "label-hex"]


def _binary_decodings(text: str) -> list[str]:
    """Every run of base64 or hex characters in ``text`` decoded, at every alignment, as Latin-1."""
    out = []
    for run in re.findall(r"[A-Za-z0-9+/_=-]{8,}", text):
        run = run.replace("-", "+").replace("_", "/").rstrip("=")
        for shift in range(4):
            piece = run[shift:][:len(run[shift:]) // 4 * 4]
            with contextlib.suppress(ValueError):
                out.append(base64.b64decode(piece).decode("latin-1"))
    for run in re.findall(r"[0-9a-fA-F]{16,}", text):
        for shift in range(2):
            piece = run[shift:][:len(run[shift:]) // 2 * 2]
            out.append(bytes.fromhex(piece).decode("latin-1"))
    return out


def _decodings(text: str, depth: int = 0) -> list[str]:
    """``text`` and everything it decodes to: JSON (strings of strings), URL (once or twice), HTML, base64
    and hex encodings."""
    out = [text, unquote(text), unquote(unquote(text)), html.unescape(text), *_binary_decodings(text)]
    if depth < 3:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = None
        stack = [value]
        while stack:
            v = stack.pop()
            if isinstance(v, str):
                out += _decodings(v, depth + 1)
            elif isinstance(v, dict):
                stack += list(v.keys()) + list(v.values())
            elif isinstance(v, list):
                stack += v
    return out


def _leaks(text: str) -> list[str]:
    frags = {KEY[i:i + 8] for i in range(len(KEY) - 7)}
    return sorted({f for t in _decodings(text) for f in frags if f in t})


def test_the_oracle_sees_every_form():
    for where in PLACES:
        from visionkit.testing.faults import echo_body

        body = echo_body(where, KEY, 200)[0].decode()
        joined = "".join(p["text"] for p in json.loads(body)["candidates"][0]["content"]["parts"])
        assert _leaks(body) or _leaks(joined), where


@pytest.mark.parametrize("where", PLACES)
def test_a_label_run_writes_logs_and_raises_no_form_of_the_key(tmp_path, monkeypatch, caplog, where):
    images = tmp_path / "in"
    images.mkdir()
    for i in range(2):
        Image.new("RGB", (120 + i, 90), (30, 60 * i, 90)).save(images / f"im{i}.png")
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    stdout, stderr = io.StringIO(), io.StringIO()
    with FakeGemini(api_key=KEY, fault_for=lambda r: Fault.echo_key(where)) as server, \
            caplog.at_level(logging.DEBUG, logger="visionkit"):
        code = main(["label", str(images), "--out", str(tmp_path / "out"), "--base-url", server.base_url,
                     "--task", "detect", "-v"], stdout=stdout, stderr=stderr)
    assert code == 0, stderr.getvalue()
    written = {p: p.read_text(encoding="utf-8", errors="replace") for p in (tmp_path / "out").rglob("*")
               if p.is_file()}
    assert any(p.name == "annotations.json" for p in written)
    texts = {**{str(p): t for p, t in written.items()}, "stdout": stdout.getvalue(),
             "stderr": stderr.getvalue(), "log": "\n".join(r.getMessage() for r in caplog.records)}
    leaks = {name: _leaks(t) for name, t in texts.items() if _leaks(t)}
    assert leaks == {}
    assert any("echoed (part of) the API key" in r.getMessage() for r in caplog.records)
    dataset = json.loads((tmp_path / "out" / "annotations.json").read_text())
    labels = [c["name"] for c in dataset["categories"]]
    assert labels and all(name.startswith("cup") for name in labels)


E = "".join(f"\\u{ord(c):04x}" for c in KEY)      # JSON-escaped
EE = "".join(f"\\\\u{ord(c):04X}" for c in KEY)   # escaped twice (a JSON text inside JSON)
P = "".join(f"%{ord(c):02x}" for c in KEY)        # percent-encoded
H = "".join(f"&#{ord(c)};" for c in KEY)          # HTML
HB = "".join(f"&#{ord(c)}" for c in KEY)          # HTML without the ";"
HX = "".join(f"&#x{ord(c):x}" for c in KEY)       # ... in hex
PP = "".join(f"%25{ord(c):02X}" for c in KEY)     # percent-encoded twice
B64 = base64.b64encode(KEY.encode()).decode()
HEX = KEY.encode().hex()


@pytest.mark.parametrize("text, expected", [
    ("plain \\u0041 escapes stay", "plain \\u0041 escapes stay"),
    (f"a {E} b", "a [redacted] b"),
    (f"a {EE} b", "a [redacted] b"),
    (f"a {P} b", "a [redacted] b"),
    (f"a {H} b", "a [redacted] b"),
    (f"a {KEY[:4]}{E[6 * 4:6 * 9]}{P[3 * 9:3 * 12]}{KEY[12:]} b", "a [redacted] b"),  # mixed forms
    (f"x{E[:6 * 8]}y", "x[redacted]y"),           # 8 escaped characters
    (f"x{E[:6 * 7]}y", f"x{E[:6 * 7]}y"),         # 7 are not redacted
    ("%41%51%2e%41%62%38%52 %4e", "%41%51%2e%41%62%38%52 %4e"),  # broken by a space
    (f"a {HB} b", "a [redacted] b"),
    (f"a {HX} b", "a [redacted] b"),
    ("a " + "".join(f"&#{ord(c)}" if k % 3 else f"&#x{ord(c):X};" for k, c in enumerate(KEY)) + " b",
     "a [redacted] b"),
    (f"a {PP} b", "a [redacted] b"),
    (f"a {PP[:5 * 8]}", "a [redacted]"),
    (f"a {PP[:5 * 7]}", f"a {PP[:5 * 7]}"),      # 7 twice-encoded characters are not redacted
    ("plain &#65 and %2541 and &#x41&#x42 stay", "plain &#65 and %2541 and &#x41&#x42 stay"),
    # base64: the groups that hold only key bytes are redacted, those at the ends hold 2 bytes at most
    (f"a {B64} b", f"a [redacted]{B64[-4:]} b"),
    (f"a {base64.urlsafe_b64encode(b'xy' + KEY.encode()).decode()} b", "a eHlB[redacted]Mg== b"),
    (base64.b64encode(KEY[5:13].encode()).decode(), "[redacted]LWU="),  # 8 characters from a group start
    (base64.b64encode(KEY[5:10].encode()).decode(), base64.b64encode(KEY[5:10].encode()).decode()),  # 5
    (f"a {HEX} b", "a [redacted] b"),
    (f"a {HEX.upper()} b", "a [redacted] b"),
    (f"a {HEX[10:10 + 16]} b", "a [redacted] b"),  # 8 characters
    (f"a {HEX[10:10 + 14]} b", f"a {HEX[10:10 + 14]} b"),  # 7 are not
])
def test_redact_key_encoded_table(text, expected):
    assert redact_key(text, KEY) == expected
    assert not _leaks(expected.replace("[redacted]", "\0"))
    assert redact_key(text.encode(), KEY) == expected.encode()


@pytest.mark.parametrize("pieces, thought, expected", [
    ([KEY[i:i + 5] for i in range(0, len(KEY), 5)], None, "[redacted]"),
    (["cup " + KEY[:7], KEY[7:14] + " and"], None, "cup [redacted] and"),
    (["cup " + KEY[:7], "THOUGHT", KEY[7:14]], 1, "cup [redacted]"),  # joined around a thought
    (["cup " + KEY[:6], "plate"], None, "cup " + KEY[:6] + "plate"),  # 6 characters: kept
])
def test_a_key_split_over_text_parts_is_redacted_in_each_part(pieces, thought, expected):
    parts = [{"text": p, **({"thought": True} if k == thought else {})} for k, p in enumerate(pieces)]
    body = json.dumps({"candidates": [{"content": {"parts": parts}}]}).encode()
    out = json.loads(redact_split_parts(body, KEY))["candidates"][0]["content"]["parts"]
    assert "".join(p["text"] for p in out if not p.get("thought")) == expected
    lines = b"\n".join([body, b'{"key": "x"}', b'{"cut off', body])  # batch results: JSON lines
    assert redact_split_parts(lines, KEY).count(b"[redacted]") == 2 * expected.count("[redacted]")


def test_the_debug_log_of_a_request_names_its_url_redacted(caplog):
    """A URL that carries the key (an upload URL the server chose, a base URL of the user's) is logged
    with the key redacted."""
    from visionkit.gemini import GeminiClient

    with FakeGemini(api_key=KEY) as server, GeminiClient(api_key=KEY, base_url=server.base_url) as client, \
            caplog.at_level(logging.DEBUG, logger="visionkit"), contextlib.suppress(APIError):
        client._http.request("GET", f"{server.base_url}/v1beta/files?echo={KEY}&again={P}")
    lines = [r.getMessage() for r in caplog.records]
    assert any("/v1beta/files?echo=[redacted]&again=[redacted]" in line for line in lines), lines
    assert not [line for line in lines if _leaks(line)]


def test_the_fake_places_are_all_tested():
    from visionkit.testing.faults import ECHO_PLACES

    assert set(PLACES) <= set(ECHO_PLACES) and Path(__file__).exists()


# -- property: any mix of encodings, anywhere, never survives; text without the key is left alone --------
_FORMS = [lambda c: c, lambda c: f"\\u{ord(c):04x}", lambda c: f"\\\\u{ord(c):04X}",
          lambda c: f"%{ord(c):02x}", lambda c: f"&#{ord(c)};", lambda c: f"&#x{ord(c):x};",
          lambda c: f"\\x{ord(c):02x}"]
_NOISE = st.text(alphabet=st.sampled_from(list("abc xyz{}[]\":,\\%&#;0123456789")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(_NOISE, _NOISE, st.lists(st.integers(0, len(_FORMS) - 1), min_size=len(KEY), max_size=len(KEY)),
       st.integers(0, len(KEY) - 8), st.integers(8, len(KEY)), st.booleans())
def test_any_encoding_of_a_key_run_is_redacted(before, after, forms, start, length, as_bytes):
    run = KEY[start:start + length]
    encoded = "".join(_FORMS[f](c) for f, c in zip(forms, run))
    text = before + encoded + after
    out = redact_key(text.encode() if as_bytes else text, KEY)
    out = out.decode() if as_bytes else out
    assert "[redacted]" in out and not _leaks(out.replace("[redacted]", "\0"))


@settings(max_examples=300, deadline=None)
@given(_NOISE)
def test_text_without_the_key_is_returned_as_it_is(text):
    assert redact_key(text, KEY) is text
