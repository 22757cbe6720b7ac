"""The ``--batch`` half of ``visionkit label``: record the run's arguments, submit (or resume) its Batch API
jobs, wait, and hand the saved answers to the label run. ``visionkit batch collect`` runs the same label run
(see :mod:`.batch`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from ..errors import ConfigError
from ..media.atomic import write_json_atomic
from ..run.batching import BatchStatus, answers_only, fingerprint, poll, submit
from ..run.model_check import check_model

__all__ = ["run_jobs"]

_PATH_ARGS = ("out", "categories")


# -- label --batch ---------------------------------------------------------------------------------------

def _save_args(args: argparse.Namespace, client: Any) -> None:
    saved = {k: v for k, v in vars(args).items() if k not in ("func", "command") and not callable(v)}
    # The settings the saved answers are matched by, as RESOLVED now ($VISIONKIT_MODEL, the default model,
    # the client's defaults): 'batch collect' runs in another shell, maybe after an upgrade, and must not
    # resolve them again, or every paid answer would look stale.
    for name in ("model", "max_side", "media_resolution"):
        saved[name] = getattr(client, name, saved.get(name))
    saved["inputs"] = [str(Path(p).resolve()) for p in args.inputs]
    for name in _PATH_ARGS:
        if saved.get(name):
            saved[name] = str(Path(saved[name]).resolve())
    for name in ("batch_collect_only", "refresh_models"):
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
            refresh = getattr(args, "refresh_models", False)
            fleet = check_model(client, refresh=refresh)  # a wrong key or model stops here: nothing written
            if fleet is not None and not fleet.announced:  # said once, up front, even with -q (as online)
                fleet.announced = True
                for message in (fleet.line(), *fleet.notices):
                    reporter.notice(message)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            _save_args(args, client)
            st = submit(args.inputs, args.out, client=client, task=args.task, prompt=args.prompt,
                        classes=classes, max_requests=args.batch_max_requests,
                        concurrency=args.concurrency, on_event=bar.event, refresh_models=refresh,
                        # the selection the label run below applies: never pay for an excluded image
                        glob=args.glob, exclude=args.exclude, limit=args.limit)
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
