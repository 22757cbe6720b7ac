"""Where one image's answer comes from: a replay folder, or the responses saved by an earlier run.

Saved responses (``OUT/responses/<key>.json``) are the raw generateContent bodies, so
``--replay OUT/responses`` reproduces a run. Beside each one, ``OUT/responses/.request/<key>.json``
records what was asked (task, prompt, classes, model, max_side) and of which image (size, mtime, SHA-256).
A saved response is reused only when both still match: changing the task, the classes or the image asks
again, while re-thresholding or re-exporting never pays for the API twice. A response saved without a
record (by hand, or by an older version) is trusted as it is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .atomic import atomic_open
from .coco import write_json_atomic
from .errors import InputError, ParseError
from .response import load_response

__all__ = ["ResponseStore", "find_replay", "read_answer"]

RECORD_DIR = ".request"


def find_replay(replay: Path, key: str, stem: str) -> Path | None:
    """``replay/<key>.json`` or ``.txt`` (then the same for the bare stem), or None."""
    for name in dict.fromkeys((key, stem)):
        for suffix in (".json", ".txt"):
            candidate = replay / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def read_answer(path: Path) -> Any:
    """A replay or saved file: ``.json`` = a full generateContent response (dict), ``.txt`` = model text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read answer file {path}: {exc}") from exc
    if path.suffix == ".json":
        try:
            return load_response(text)
        except ParseError as exc:
            raise ParseError(f"answer file {path}: {exc}", snippet=exc.snippet) from exc
    return text


def _image_facts(path: Path, with_digest: bool = True) -> dict:
    try:
        stat = path.stat()
        facts: dict[str, Any] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        if with_digest:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            facts["sha256"] = digest.hexdigest()
    except OSError as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc
    return facts


class ResponseStore:
    """The saved responses of one output folder (``OUT/responses``). Safe to use from many threads."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str, request: dict, image: Path) -> tuple[Any | None, str | None]:
        """``(answer, None)`` when a saved answer fits this request and image; ``(None, why)`` when one is
        saved but stale; ``(None, None)`` when none is saved."""
        saved = self.path(key)
        if not saved.is_file():
            return None, None
        record_path = self.folder / RECORD_DIR / f"{key}.json"
        if record_path.is_file():
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
                asked, seen = record["request"], record["image"]
            except (OSError, ValueError, KeyError, TypeError):
                record = None
            if record is not None:
                changed = sorted(k for k in set(asked) | set(request) if asked.get(k) != request.get(k))
                if changed:
                    return None, f"the saved answer was for another request ({', '.join(changed)} changed)"
                now = _image_facts(image, with_digest=False)
                if (now["bytes"], now["mtime_ns"]) != (seen.get("bytes"), seen.get("mtime_ns")) \
                        and _image_facts(image)["sha256"] != seen.get("sha256"):
                    return None, "the saved answer was for another version of the image"
        return read_answer(saved), None

    def save(self, key: str, request: dict, image: Path, response: dict) -> None:
        """Save a response atomically, its record first (a record without a response is harmless)."""
        record = {"request": request, "image": _image_facts(image)}
        with atomic_open(self.folder / RECORD_DIR / f"{key}.json") as fh:
            json.dump(record, fh, ensure_ascii=False)
        write_json_atomic(self.path(key), response)
