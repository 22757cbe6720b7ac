"""``visionkit models [--online]``: the model registry and what was learned, as one table."""

from __future__ import annotations

import argparse
from typing import TextIO

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``visionkit models``."""
    p = sub.add_parser("models", help="list the model table, what was learned about other models, and "
                                      "(--online) what the API offers",
                       description="The registry of Gemini models visionkit knows (id pattern, status, the "
                                   "thinking setting it sends, masks, source, date), then the models it "
                                   "learned (the per-user cache). --online adds every model the API offers "
                                   "for generateContent, marking the ids the table does not know.")
    p.add_argument("--online", action="store_true",
                   help="also ask the Models API (models.list, free; needs GEMINI_API_KEY) (default: off)")
    p.add_argument("--base-url", help="API base URL (default: $GEMINI_BASE_URL or Google's endpoint)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug log of requests on stderr")
    p.set_defaults(func=run)


def _table(rows: list[tuple[str, ...]], stdout: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] + "\n")


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from ..gemini.fleet import describe_thinking, sourced_rule
    from ..gemini.model_cache import ModelCache
    from ..gemini.models import MODELS, lookup

    rows: list[tuple[str, ...]] = [("ID PATTERN", "STATUS", "THINKING SENT", "MASKS", "DATE", "SOURCE")]
    for info in MODELS:
        sent = "-" if info.status == "retired" else (describe_thinking(info.least) if sourced_rule(info)
                                                       else "learned when used")
        rows.append((info.pattern, info.status, sent, info.masks, info.date or "-", info.source))
    cache = ModelCache()
    learned = cache.entries()
    for model, entry in sorted(learned.items()):
        status = "learned (expired)" if entry.get("stale") else "learned"
        rows.append((model, status, describe_thinking(entry.get("sent")), lookup(model).masks,
                     str(entry.get("date", "-")), f"{cache.path}: {entry.get('sent_source', '')}"))
    _table(rows, stdout)
    for warning in cache.warnings:
        stderr.write(f"warning: {warning}\n")
    if not args.online:
        stdout.write(f"{len(MODELS)} table rows, {len(learned)} learned models (in {cache.path}); --online "
                     "adds what the API offers\n")
        return 0
    from ..gemini import GeminiClient
    from ..gemini.fleet import list_models

    with GeminiClient(base_url=args.base_url) as client:
        offered = list_models(client)
    rows = [("MODEL", "GENERATECONTENT", "THINKS", "IN THE TABLE")]
    unknown = 0
    for resource in offered:
        name = str(resource.get("name", "")).removeprefix("models/")
        methods = resource.get("supportedGenerationMethods") or []
        gen = "yes" if "generateContent" in methods else "no"
        thinks = {True: "yes", False: "no"}.get(resource.get("thinking"), "?")
        info = lookup(name)
        if name in learned:
            known = "learned"
        elif info.status == "unknown":
            known = "NOT IN THE TABLE"
            unknown += gen == "yes"
        else:
            known = info.name
        rows.append((name, gen, thinks, known))
    stdout.write("\n")
    _table(rows, stdout)
    stdout.write(f"{len(offered)} models offered; {unknown} with generateContent are not in the table "
                 "(visionkit "
                 "learns their thinking rules on first use)\n")
    return 0
