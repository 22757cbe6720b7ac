"""``python -m visionkit.testing``: a FakeGemini from the shell, printing its base URL.

::

    python -m visionkit.testing --port 0 --replay fixtures/replay --images fixtures/images
    python -m visionkit.testing --dialects --seg-tokens

The first line on stdout is the base URL (``http://127.0.0.1:<port>``); pass it as ``--base-url``. Any
API key is accepted. Ctrl-C stops the server.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from .dialects import Dialects
from .fake_gemini import FakeGemini

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m visionkit.testing``: serve a FakeGemini until Ctrl-C, printing its URL."""
    parser = argparse.ArgumentParser(prog="python -m visionkit.testing",
                                     description="A local stand-in for the Gemini REST API (no key needed; "
                                                 "any key is accepted).")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free port)")
    parser.add_argument("--replay", metavar="DIR",
                        help="answer with recorded answers DIR/<stem>.json|.txt, matched to --images by the "
                             "size each image is sent at (default: the built-in answer)")
    parser.add_argument("--images", nargs="+", metavar="INPUT",
                        help="the images the --replay answers belong to")
    parser.add_argument("--max-side", type=int, default=1024,
                        help="the client's --max-side, to match --replay answers (default 1024)")
    parser.add_argument("--dialects", action="store_true",
                        help="enforce each model's rules (thinking 400s, retired 404s, polygons, usage, flex "
                             "drops) and answer as that model would (default: off)")
    parser.add_argument("--seg-tokens", action="store_true",
                        help="with --dialects, 2.5 models answer PNG-mask prompts with <seg_N> tokens")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer (default 0)")
    parser.add_argument("--log", action="store_true",
                        help="print one line per request on stderr: for generateContent requests and batch "
                             "lines the model, thinking, mediaResolution, serviceTier, the prompt's start; "
                             "for others (Models API, batch jobs, files) the method and path (default: off)")
    args = parser.parse_args(argv)
    responder = None
    if args.replay:
        if not args.images:
            parser.error("--replay needs --images (the answers are matched to images by their sent size)")
        from .replay_responder import ReplayResponder

        responder = ReplayResponder(args.images, args.replay, max_side=args.max_side)
    dialects: bool | Dialects = Dialects(seg_tokens=args.seg_tokens) if args.dialects else False
    server = FakeGemini(responder, latency=args.latency, dialects=dialects, port=args.port,
                        log=log_request if args.log else None).start()
    print(server.base_url, flush=True)
    print(f"FakeGemini serving on {server.base_url}; try: GEMINI_API_KEY=any visionkit label IMAGES "
          f"--out OUT --base-url {server.base_url}   (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0



def log_request(record, stream=None) -> None:
    """The ``--log`` line of one request (``FakeGemini(log=...)``): generateContent requests and batch lines
    in full, the others by method and path."""
    stream = stream or sys.stderr
    if record.kind not in ("generate", "batch_line"):
        extra = ""
        if record.kind == "batch_create" and isinstance(record.json, dict):
            lines = ((record.json.get("batch") or {}).get("inputConfig") or {}).get("requests") or {}
            extra = f" ({len(lines.get('requests') or [])} inline lines)" if lines else " (file input)"
        print(f"[{record.index}] {record.kind} {record.method} {record.path}{extra}", file=stream, flush=True)
        return
    config = record.generation_config
    body = record.json if isinstance(record.json, dict) else {}
    where = "batch line" if record.kind == "batch_line" else f"[{record.index}]"
    print(f"{where} {record.model} thinking={config.get('thinkingConfig')} "
          f"media={config.get('mediaResolution')} tier={body.get('serviceTier', '-')} "
          f"image={record.image_wh} prompt={record.text[:90]!r}", file=stream, flush=True)
