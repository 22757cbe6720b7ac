"""``visionkit batch {status,collect,cancel} DIR`` and the ``--batch`` half of ``visionkit label``.

``label --batch`` records its arguments in ``DIR/batch/run.json`` (paths made absolute; no key), so
``batch collect DIR`` is the same label run, from any folder, without submitting anything new.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, TextIO

from ..batching import (
    DEFAULT_POLL_INTERVAL,
    MAX_POLL_INTERVAL,
    MAX_REQUESTS_PER_JOB,
    BatchStatus,
    answers_only,
    cancel,
    fingerprint,
    poll,
    status,
    submit,
)
from ..coco import write_json_atomic
from ..errors import ConfigError, InputError

__all__ = ["DEFAULT_POLL_INTERVAL", "MAX_POLL_INTERVAL", "MAX_REQUESTS_PER_JOB", "add_parser", "run",
           "run_jobs"]

_PATH_ARGS = ("out", "categories")


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


# -- label --batch ---------------------------------------------------------------------------------------

def _save_args(args: argparse.Namespace) -> None:
    saved = {k: v for k, v in vars(args).items() if k not in ("func", "command") and not callable(v)}
    saved["inputs"] = [str(Path(p).resolve()) for p in args.inputs]
    for name in _PATH_ARGS:
        if saved.get(name):
            saved[name] = str(Path(saved[name]).resolve())
    for name in ("batch_collect_only",):
        saved.pop(name, None)
    write_json_atomic(Path(args.out) / "batch" / "run.json", saved, indent=1)


class _Bar:
    """The batch progress line: jobs by state, requests done and failed, elapsed time."""

    def __init__(self, stream: TextIO, quiet: bool):
        self.stream, self.quiet = stream, quiet
        self.tty = stream.isatty()
        self.last = ""
        self.shown = False

    def event(self, message: str) -> None:
        if self.quiet and not message.startswith("warning"):
            return
        self.clear()
        self.stream.write(message + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\033[K")
            self.shown = False

    def progress(self, st: BatchStatus) -> None:
        if self.quiet or not st.jobs:
            return
        states: dict[str, int] = {}
        for job in st.jobs:
            label = job.state or job.step
            states[label] = states.get(label, 0) + 1
        elapsed = int(st.elapsed)
        line = (f"[batch] {len(st.jobs)} job{'s' if len(st.jobs) != 1 else ''}: "
                + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
                + f" | {st.succeeded}/{st.requests} done, {st.failed} failed"
                + f" | {elapsed // 3600:02d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}")
        if self.tty:
            self.stream.write("\r" + line + "\033[K")
            self.shown = True
        elif line.split(" | ")[:2] != self.last.split(" | ")[:2]:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last = line

    def finish(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.shown = False


def run_jobs(args: argparse.Namespace, client_factory: Any, reporter: Any, stdout: TextIO,
             stderr: TextIO) -> tuple[Any, int | None]:
    """Submit (unless collecting only), wait and save the answers of ``label --batch``.

    Returns ``(client_factory, None)`` for the label run that follows (its client answers from the saved
    responses only), or ``(None, exit_status)`` when there is nothing more to do (``--no-wait``).
    """
    if args.replay:
        raise ConfigError("--batch and --replay exclude each other: --replay labels from recorded answers")
    if args.batch_max_requests < 1:
        raise ConfigError(f"--batch-max-requests must be >= 1, got {args.batch_max_requests}")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    bar = _Bar(stderr, args.quiet)
    client = client_factory()
    try:
        if not getattr(args, "batch_collect_only", False):
            Path(args.out).mkdir(parents=True, exist_ok=True)
            _save_args(args)
            st = submit(args.inputs, args.out, client=client, task=args.task, prompt=args.prompt,
                        classes=classes, max_requests=args.batch_max_requests,
                        concurrency=args.concurrency, on_event=bar.event)
            if args.no_wait:
                for job in st.active:
                    stdout.write(f"{job.name or job.id}\t{job.state or job.step}\t{job.requests} requests\n")
                stdout.write(f"{len(st.active)} batch job(s) running; see 'visionkit batch status "
                             f"{args.out}', collect with 'visionkit batch collect {args.out}'\n")
                client.close()
                return None, 0
        try:
            collect_only = getattr(args, "batch_collect_only", False)
            st = poll(args.out, client=client, poll_interval=args.poll_interval, on_progress=bar.progress,
                      on_event=bar.event, submit_held=not collect_only,
                      request=None if collect_only else fingerprint(client, args.task, args.prompt, classes))
        finally:
            bar.finish()
    except BaseException:
        client.close()
        raise
    ended = [j for j in st.jobs if j.step == "ended"]
    stdout.write(f"batch: {len(st.jobs)} job(s), {st.succeeded} of {st.requests} requests answered, "
                 f"{st.failed} failed" + (f"; {len(ended)} job(s) ended without results" if ended else "")
                 + "\n")
    answers = answers_only(args.out, client, owns=True)
    return (lambda: answers), None


# -- visionkit batch ACTION DIR ----------------------------------------------------------------------------

def _load_args(out: Path) -> dict:
    path = out / "batch" / "run.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{out} holds no batch run ({path} is missing); start one with "
                         "'visionkit label INPUT... --out DIR --batch'") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _label_args(saved: dict, args: argparse.Namespace) -> argparse.Namespace:
    from . import build_parser

    ns = build_parser().parse_args(["label", "x", "--out", "x"])  # today's defaults for every label flag
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

    return GeminiClient(model=saved.get("model") or "gemini-2.5-flash",
                        base_url=args.base_url or saved.get("base_url"),
                        timeout=saved.get("timeout") or 60.0, max_side=saved.get("max_side") or 1024)


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
    head = f"{job.name or job.id}\t{job.step}\t{job.state or '-'}\t{job.requests} requests"
    return head + counts + age + extra


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    out = Path(args.dir)
    saved = _load_args(out)
    if args.action == "collect":
        from . import label as label_cli

        return label_cli.run(_label_args(saved, args), stdout, stderr)
    with _client(saved, args) as client:
        if args.action == "cancel":
            names = cancel(out, client=client, on_event=None if args.quiet else
                           (lambda m: stderr.write(m + "\n")))
            stdout.write(f"cancel requested for {len(names)} job(s); 'visionkit batch status {out}' shows "
                         "when they end\n")
            return 0
        st = poll(out, client=client, wait=False, collect_results=False, submit_held=False,
                  on_event=None if args.quiet else (lambda m: stderr.write(m + "\n")))
    if not st.jobs:
        st = status(out)
    for job in st.jobs:
        stdout.write(_describe(job) + "\n")
    stdout.write(f"{len(st.jobs)} job(s), {len(st.active)} unfinished; {st.succeeded} of {st.requests} "
                 f"requests answered, {st.failed} failed\n")
    return 0
