"""``OUT/.results.jsonl``: every image's finished result, kept so that a rerun re-parses nothing it need not.

A rerun with the same options on a finished folder finds each image here, checks that the result still
fits, and copies it to the new run instead of parsing the answer again; only ``annotations.json`` (and its
companions) is streamed again. A result fits when all of these still hold:

* the answer is the same: the SHA-256 of the replay file or saved response (a file at the same path
  whose size, mtime, ctime, inode and device are unchanged is not hashed again, as ``git`` trusts its
  index: ``touch -r``, ``cp -p``, ``rsync`` or ``tar`` can restore an mtime, not a ctime or an inode;
  a saved response must also still fit the request, as
  :meth:`visionkit.run.answer_source.ResponseStore.load` decides);
* the options that shape the annotations are the same: task, threshold, polygons, polygon holes, dedupe,
  and visionkit's version;
* the image has the same size, mtime, ctime, inode and device (its header gives the width and height,
  EXIF orientation included; its pixels the overlay), and is within ``--max-pixels``;
* with overlays on, the overlay was written with the same format and size, and is still the file that
  was written (its size and mtime: ``visionkit overlays`` may have redrawn it since).

Anything else recomputes that image, and only that image: a changed ``--threshold`` re-parses every image,
one new image is parsed alone. Failed images are never kept (a rerun tries them again).

Each line is one image's spool record (see :mod:`visionkit.run.spool`) with a head first::

    {"_vk": {"sum": "<32 hex>", "key": "x", "sig": "...",
             "answer": [path, size, mtime_ns, ctime_ns, ino, dev, sha256],
             "image": [size, mtime_ns, ctime_ns, ino, dev],
             "overlay": ["jpg", 2048] | null, "detections": 3, "warnings": [[index, field, reason], ...]},
     "file_name": "a/x.jpg", "width": 640, "height": 480, "annotations": [...], "report": {...}}

``sum`` is the BLAKE2b digest of the rest of the line (everything after the digest itself), so a rerun
checks a kept line whole without parsing it: only the head is parsed (its annotation texts are spliced into
``annotations.json`` as they are, see :class:`visionkit.formats.coco_write.CocoWriter`), and the head's
fields are checked for the types the run reads (:func:`_head_fits`).

The file is written at the end of a run, atomically; a run killed before that leaves the previous file,
whose results are still checked one by one, so nothing stale is ever used. A line that cannot be read (cut
off, NUL-padded after a crash, edited by hand) is a miss, never an error: its digest no longer matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from json.decoder import scanstring
from pathlib import Path
from stat import S_ISREG
from typing import Any

from .._version import __version__
from ..core.detections import ParseWarning
from ..draw.overlay_files import OVERLAY_FORMATS
from ..errors import InputError
from ..formats.coco_write import encode_annotation
from ..media import imageio
from ..media.atomic import atomic_open
from ..media.filekind import open_regular
from .image_step import ImageResult

__all__ = ["RESULTS_NAME", "ResultCache", "answer_id"]

RESULTS_NAME = ".results.jsonl"
_FORMAT = 4  # part of every signature: bump it when what a line holds changes, so old lines miss
_HEAD = b'{"_vk": '
_SUM_AT = len('{"_vk": {"sum": "')  # the line's digest, 32 hex digits, is here
_SUM_END = _SUM_AT + 32
_PREFIX = b'{"_vk": {"sum": "'
_KEY_AT = _SUM_END + len('", "key": "')
_encode = json.JSONEncoder(ensure_ascii=False).encode  # one encoder, not one per call as json.dumps makes
_decode_head = json.JSONDecoder().raw_decode


def _digest(rest: bytes) -> bytes:
    return hashlib.blake2b(rest, digest_size=16).hexdigest().encode()


def _stamp(stat: os.stat_result) -> list:
    """What says a file was not touched since: an mtime can be restored (``touch -r``, ``cp -p``,
    ``rsync -t``, ``tar``), its ctime cannot (``utime`` sets it to now), and a copy has another inode.
    See https://git-scm.com/docs/git-update-index#_using_index_info (``core.trustctime``, ``checkStat``)."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


def answer_id(path: Path, known: Any = None) -> list | None:
    """``[path, size, mtime_ns, ctime_ns, ino, dev, sha256]`` of an answer file; ``known`` (such a list
    from an earlier run) saves the hashing when all but the hash are unchanged. None when the file cannot
    be read."""
    try:
        stat = os.stat(path)
        if not S_ISREG(stat.st_mode):  # a FIFO would block the read below
            return None
        now = [str(path), *_stamp(stat)]
        if isinstance(known, list) and len(known) == 7 and known[:6] == now:
            return known
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None
    return [*now, digest]


def _image_id(path: Path) -> list | None:
    try:
        return _stamp(os.stat(path))
    except OSError:
        return None


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _head_fits(head: Any, file_name: str) -> bool:
    """Whether a kept head (of a line whose digest matched) has every field the run reads, with the type
    and shape a fresh head has, and an image size today's ``--max-pixels`` accepts (a fresh run refuses a
    larger one). The digest rules out damage; this rules out a line that an older or other visionkit wrote
    with the same digest rule but other fields."""
    if not isinstance(head, dict):
        return False
    wh, labels, report = head.get("wh"), head.get("labels"), head.get("report")
    warnings, batch = head.get("warnings"), head.get("batch")
    return (isinstance(wh, list) and len(wh) == 2 and all(type(v) is int and v > 0 for v in wh)
            and wh[0] * wh[1] <= imageio.MAX_PIXELS and head.get("file") == file_name
            and isinstance(labels, dict) and all(_count(n) for n in labels.values())
            and isinstance(report, dict) and all(_count(n) for n in report.values())
            and _count(head.get("detections")) and type(head.get("points")) is bool
            and isinstance(warnings, list) and all(isinstance(w, list) and len(w) == 3 for w in warnings)
            and (batch is None or (isinstance(batch, list) and len(batch) == 2
                                   and isinstance(batch[0], dict | None)
                                   and isinstance(batch[1], str | None))))


class ResultCache:
    """The previous run's kept results (read) and the heads of this run's fresh ones (made).

    ``options``: what shapes an image's annotations (task, threshold, ...); ``overlay``: ``(format,
    max_side)``, or None when the run draws no overlays. Used from the run's main thread only.
    """

    def __init__(self, out: Path, options: dict, overlay: tuple[str, int | None] | None):
        self.out = Path(out)
        self.path = self.out / RESULTS_NAME
        self._options = json.dumps([_FORMAT, __version__, options], sort_keys=True).encode()
        self._overlay = None if overlay is None else list(overlay)
        self._index: dict[str, int] = {}  # key -> offset of its line in the previous file
        self._fh = None
        self.hits = 0
        # The previous file is still what this run would write: every line indexed, and every image looked
        # up so far a hit on the next line, kept as it was. Then save() leaves it alone.
        self._same = False
        self._next = 0
        self._kept_line: bytes | None = None
        try:  # a FIFO or a folder in its place: no kept results (it is replaced at the end), never a hang
            self._fh = open_regular(self.path, "rb")
            self._scan()
        except (OSError, InputError):
            self._index.clear()

    def _scan(self) -> None:
        offset, same = 0, True
        for line in self._fh:
            key = None
            if line.startswith(_HEAD) and line.endswith(b"\n"):
                with contextlib.suppress(ValueError):  # the key alone: the whole head is read when asked for
                    key = scanstring(line[:4096].decode("utf-8", "replace"), _KEY_AT)[0]
            if key is None or key in self._index:
                same = False  # a line save() would drop
            if key is not None:
                self._index[key] = offset
            offset += len(line)
        self._same = same

    def _sig(self, answer: list) -> str:
        return hashlib.sha256(self._options + str(answer[-1]).encode()).hexdigest()[:32]

    def lookup(self, key: str, file_name: str, image: Path, answer: Path | None) -> tuple[dict, bytes] | None:
        """``(head, line)`` of this image's kept result when it still fits (see the module doc), else
        None. Each key is looked up once per run."""
        offset = self._index.pop(key, None)
        if offset is None:
            return None
        hit = self._lookup(offset, key, file_name, image, answer)
        if hit is None or hit[1] is not self._kept_line or offset != self._next:
            self._same = False  # the line goes, or changes, or comes in another order
        else:
            self._next = offset + len(hit[1])
        return hit

    def _lookup(self, offset: int, key: str, file_name: str, image: Path,
                answer: Path | None) -> tuple[dict, bytes] | None:
        if answer is None or self._fh is None:
            return None
        try:
            self._fh.seek(offset)
            line = self._kept_line = self._fh.readline()
            # the digest covers the whole line: cut off, padded with NULs or edited, it is a miss here
            if not (line.endswith(b"\n") and line.startswith(_PREFIX)
                    and line[_SUM_AT:_SUM_END] == _digest(line[_SUM_END:])):
                return None
            head = _decode_head(line.decode("utf-8"), len(_HEAD))[0]  # the head alone, not the annotations
            kept = head.get("answer")
            now = answer_id(answer, kept)
            if (now is None or head.get("sig") != self._sig(now) or head.get("key") != key
                    or head.get("image") != _image_id(image) or not _head_fits(head, file_name)):
                return None
            if self._overlay is not None and (head.get("overlay") is None
                                              or head["overlay"] != self._overlay_id(key)):
                return None  # drawn with other settings, redrawn since (``visionkit overlays``), or gone
            if now is not kept:  # the same answer in a touched or moved file: record its new stamps
                record = json.loads(line)
                head = record["_vk"]
                head["answer"] = now
                line = self.line(head, record)
        except (OSError, ValueError, TypeError, AttributeError, KeyError, IndexError):
            return None
        self.hits += 1
        return head, line

    def head(self, result: ImageResult, record: dict, image: Path, answer: Path | None) -> dict:
        """The head of a fresh result whose answer was read from ``answer`` (None: not from a file). It
        holds what the run needs of an image without reading its whole record: its labels (counted), its
        export report, its size and whether it has points."""
        found = None if answer is None else answer_id(answer)
        labels: dict[str, int] = {}
        for ann in record["annotations"]:
            labels[ann["label"]] = labels.get(ann["label"], 0) + 1
        # each annotation as [label, its JSON without the label and the opening brace]: annotations.json
        # gets the text as it is, after its ids (CocoWriter.add_encoded)
        record["annotations"] = [encode_annotation(a) for a in record["annotations"]]
        return {"key": result.key, "file": result.file, "sig": None if found is None else self._sig(found),
                "answer": found, "image": _image_id(image),
                "overlay": None if result.overlay_error else self._overlay_id(result.key),
                "detections": result.detections,
                "warnings": [[w.index, w.field, w.reason] for w in result.warnings], "labels": labels,
                "report": record.pop("report", {}), "wh": [record["width"], record["height"]],
                "points": bool(record.get("points")), "rotated": result.rotated,
                # a batch answer's tokens are billed to every --batch run that uses it (run.usage)
                "batch": [result.usage, result.model_version] if result.source == "batch" else None}

    def kept_result(self, head: dict, file_name: str, origin: str) -> ImageResult:
        """The :class:`ImageResult` of a kept result (``origin``: "replay" or "cache")."""
        batch = head.get("batch")
        usage, version = batch if isinstance(batch, list) and len(batch) == 2 else (None, None)
        return ImageResult(file_name, head["key"], True, "batch" if batch else origin,
                           detections=int(head.get("detections") or 0), warnings=self.warnings(head),
                           usage=usage, model_version=version, rotated=head.get("rotated") is True)

    def spool_line(self, result: ImageResult, record: dict | tuple[dict, bytes], image: Path,
                   answer: Path | None) -> tuple[bytes, dict]:
        """``(line, head)`` of a finished image: a kept ``(head, line)`` as it is, or a fresh record with
        its head (``answer``: the file its answer was read from)."""
        if isinstance(record, tuple):
            return record[1], record[0]
        self._same = False  # a fresh line
        head = self.head(result, record, image, answer)
        return self.line(head, record), head

    @staticmethod
    def line(head: dict, record: dict) -> bytes:
        """One line of the file: ``record`` (a spool record) with ``head`` first."""
        record.pop("_vk", None)
        head = {"sum": "0" * 32, **{k: v for k, v in head.items() if k != "sum"}}
        data = (_encode({"_vk": head, **record}) + "\n").encode("utf-8")
        return data[:_SUM_AT] + _digest(data[_SUM_END:]) + data[_SUM_END:]

    @staticmethod
    def warnings(head: dict) -> tuple[ParseWarning, ...]:
        return tuple(ParseWarning(*w) for w in head.get("warnings") or ())

    def _overlay_id(self, key: str) -> list | None:
        """``[format, max_side, size, mtime_ns]`` of the image's overlay as this run draws it, or None
        (no overlays in this run, or the file is not there)."""
        if self._overlay is None:
            return None
        try:
            st = os.stat(self.out / "overlays" / f"{key}{OVERLAY_FORMATS[self._overlay[0]]}")
        except OSError:
            return None
        return [*self._overlay, st.st_size, st.st_mtime_ns]

    def save(self, lines: Iterable[bytes]) -> None:
        """Write this run's lines, then the previous file's lines of the images this run did not look up
        (not among its inputs), atomically. Not fsynced: a lost file only costs a recompute. Nothing is
        written when the previous file already holds exactly that (a rerun that kept every line as it was)."""
        if self._same:
            return
        with atomic_open(self.path, "wb", durable=False) as fh:
            for line in lines:
                fh.write(line)
            if self._fh is not None:
                for offset in self._index.values():
                    self._fh.seek(offset)
                    fh.write(self._fh.readline())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
