"""The report's gallery data, sharded: ``report/pages/NNNNN.js``, one file per :data:`PAGE_SIZE` cards.

``index.html`` embeds only what every view needs (class names, the order, how many pages, how many images
match each filter); the page's script loads the card pages one by one as the reader scrolls, by adding a
``<script src>`` (which works from ``file://``, where ``fetch`` of a local file does not). Each page file
is ``vkReportPage(N, [cards]);``. So a report of a million images is a small HTML file and 2,000 small
page files, and :func:`visionkit.quality.report.build_report` holds one short JSON string per card, not
the cards' objects.

Every piece of data in a script is JSON with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, so no label
or file name can end a script element (``</script>``), open an HTML comment that swallows the rest of the
page (``<!--<script>``), or break a line in a JavaScript string (U+2028/U+2029 before ES2019); ``>`` and
``&`` for good measure, as Django's json_script and Go's html/template do. JSON's ``\\uXXXX`` escapes read
back as the same characters.
https://html.spec.whatwg.org/multipage/scripting.html#restrictions-for-contents-of-script-elements
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..media.atomic import write_bytes_atomic

__all__ = ["PAGE_SIZE", "Gallery", "script_json"]

#: Cards per page file.
PAGE_SIZE = 500
_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026", 0x2028: "\\u2028",
            0x2029: "\\u2029"}


def script_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element and a JavaScript file."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_ESCAPES)


class Gallery:
    """Cards collected one at a time (each kept as its JSON text), then written as page files."""

    def __init__(self) -> None:
        self._cards: list[tuple] = []
        self.warned = 0
        self.by_class: Counter = Counter()
        self.by_class_warned: Counter = Counter()

    def add(self, card: dict) -> None:
        """Add a card (``f`` file, ``c`` class indices, ``w`` warnings, ``e`` F1 or None, ...)."""
        warned = bool(card["w"])
        self.warned += warned
        for c in card["c"]:
            self.by_class[c] += 1
            self.by_class_warned[c] += warned
        e = card["e"]
        self._cards.append((e is None, e if e is not None else 0.0, card["f"], script_json(card)))

    def __len__(self) -> int:
        return len(self._cards)

    def write(self, out: Path, *, worst_first: bool, build: str) -> dict:
        """Write ``out/pages/*.js`` (stale pages of an earlier, longer report are removed) and return the
        data ``index.html`` embeds."""
        if worst_first:
            self._cards.sort(key=lambda c: c[:3])
        pages = out / "pages"
        pages.mkdir(parents=True, exist_ok=True)
        count = 0
        for start in range(0, len(self._cards), PAGE_SIZE):
            chunk = ",".join(c[3] for c in self._cards[start:start + PAGE_SIZE])
            write_bytes_atomic(pages / f"{count:05d}.js", f"vkReportPage({count},[{chunk}]);\n".encode(),
                               durable=False)
            count += 1
        for stale in pages.glob("*.js"):
            if not stale.stem.isdigit() or int(stale.stem) >= count:
                os.unlink(stale)
        return {"pages": count, "total": len(self._cards), "warned": self.warned,
                "byClass": {str(k): v for k, v in sorted(self.by_class.items())},
                "byClassWarned": {str(k): v for k, v in sorted(self.by_class_warned.items()) if v},
                "build": build}
