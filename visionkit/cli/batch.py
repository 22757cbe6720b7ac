"""``visionkit batch {status,collect,cancel} DIR`` (the ``--batch`` half of ``visionkit label`` is in
:mod:`._batch_jobs`).

``label --batch`` records its arguments in ``DIR/batch/run.json`` (paths made absolute; no key; the model,
``max_side`` and ``media_resolution`` as resolved by the client), so ``batch collect DIR`` is the same label
run, from any folder and any environment, without submitting anything new.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, TextIO

from ..core.usage import Usage
from ..errors import InputError
from ..media.filekind import read_regular_text
from ..run.batching import DEFAULT_POLL_INTERVAL, cancel, poll, status
from ._label import add_label_arguments
from ._label import run as run_label

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``visionkit batch``."""
    p = sub.add_parser("batch", help="status, collect or cancel the Batch API jobs of a 'label --batch' run",
                       description="Act on the batch jobs recorded in DIR/batch by "
                                   "'visionkit label --batch'.")
    p.add_argument("action", choices=("status", "collect", "cancel"),
                   help="status: poll each job once and show it; collect: wait for the jobs, save their "
                        "answers and write DIR/annotations.json etc. (submits nothing new); cancel: cancel "
                        "the unfinished jobs")
    p.add_argument("dir", metavar="DIR", help="the --out folder of the 'label --batch' run")
    p.add_argument("--base-url", help="API base URL (default: the one the run used)")
    p.add_argument("--poll-interval", type=float, default=None, metavar="S",
                   help="collect: seconds before the first poll (default: the run's, else "
                        f"{DEFAULT_POLL_INTERVAL:g})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="debug log of requests on stderr (the API key is never logged)")
    p.set_defaults(func=run)


# -- visionkit batch ACTION DIR ----------------------------------------------------------------------------

def _load_args(out: Path) -> dict:
    path = out / "batch" / "run.json"
    try:
        return json.loads(read_regular_text(path, expected="the batch run's options, a JSON file"))
    except FileNotFoundError:
        raise InputError(f"{out} holds no batch run ({path} is missing); start one with "
                         "'visionkit label INPUT... --out DIR --batch'") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _label_args(saved: dict, args: argparse.Namespace) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False)
    add_label_arguments(parser)
    ns = parser.parse_args(["x", "--out", "x"])  # today's defaults for every label flag
    for key, value in saved.items():
        if hasattr(ns, key):
            setattr(ns, key, value)
    ns.batch, ns.no_wait, ns.batch_collect_only = True, False, True
    ns.replay = None
    if args.base_url:
        ns.base_url = args.base_url
    if args.poll_interval is not None:
        ns.poll_interval = args.poll_interval
    ns.quiet = args.quiet or ns.quiet
    ns.verbose = args.verbose
    return ns


def _client(saved: dict, args: argparse.Namespace):
    from ..gemini import GeminiClient
    from ..gemini.images import DEFAULT_MAX_SIDE
    from ..gemini.models import resolve_model

    return GeminiClient(model=resolve_model(saved.get("model")),  # the run's model, never today's default
                        base_url=args.base_url or saved.get("base_url"), timeout=saved.get("timeout") or 60.0,
                        max_side=saved.get("max_side") or DEFAULT_MAX_SIDE)


def _describe(job: Any) -> str:
    counts = ""
    if job.request_count is not None or job.succeeded_count is not None:
        counts = (f"  {job.succeeded_count or 0}/{job.request_count or job.requests} done"
                  + (f", {job.failed_count} failed" if job.failed_count else ""))
    age = ""
    if job.submitted_at:
        age = f"  submitted {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(job.submitted_at))}"
    extra = f"  ({job.error})" if job.error else ""
    extra += f"  {job.line_failures} lines failed" if job.step == "collected" and job.line_failures else ""
    extra += f"  tokens: {Usage.of(job.usage).describe()}" if job.usage else ""
    head = f"{job.name or job.id}\t{job.step}\t{job.state or '-'}\t{job.requests} requests"
    return head + counts + age + extra


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    out = Path(args.dir)
    saved = _load_args(out)
    if args.action == "collect":
        return run_label(_label_args(saved, args), stdout, stderr)
    with _client(saved, args) as client:
        if args.action == "cancel":
            refused: list[str] = []

            def event(message: str) -> None:
                if message.startswith("warning: could not cancel"):
                    refused.append(message)
                    stderr.write(message + "\n")  # shown even with -q: a job may still be running
                elif not args.quiet:
                    stderr.write(message + "\n")

            names = cancel(out, client=client, on_event=event)
            stdout.write(f"cancel requested for {len(names)} job(s); 'visionkit batch status {out}' shows "
                         "when they end\n")
            return 1 if refused else 0
        st = poll(out, client=client, wait=False, collect_results=False, submit_held=False,
                  on_event=None if args.quiet else (lambda m: stderr.write(m + "\n")))
    if not st.jobs:
        st = status(out)
    for job in st.jobs:
        stdout.write(_describe(job) + "\n")
    stdout.write(f"{len(st.jobs)} job(s), {len(st.active)} unfinished; {st.succeeded} of {st.requests} "
                 f"requests answered, {st.failed} failed\n")
    tokens = Usage()
    for job in st.jobs:
        if job.usage:
            tokens.add(Usage.of(job.usage))
    stdout.write(f"tokens so far: {tokens.describe()} (the answers of collected jobs, billed at the Batch "
                 "API "
                 "price; a job's tokens are known once it is collected)\n")
    return 0
