"""Answer a :class:`~visionkit.testing.fake_gemini.FakeGemini` request with a recorded answer.

``ReplayResponder(images, replay)`` prepares every image the way :class:`visionkit.gemini.GeminiClient`
does, remembers the size it would be sent at, and answers a generateContent request whose image has that
size with ``replay/<stem>.json`` (a full response, sent as is) or ``replay/<stem>.txt`` (the model's text,
wrapped in a response). This lets the online pipeline run end to end against recorded answers, e.g. the
bundled fixtures, whose images all have distinct sent sizes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..gemini.images import DEFAULT_MAX_SIDE, prepare_image
from ..media.imageio import iter_images
from .fake_records import RecordedRequest
from .fake_responses import text_response

__all__ = ["ReplayResponder"]


class ReplayResponder:
    """A FakeGemini responder that picks the recorded answer by the sent image's size."""

    def __init__(self, images: Iterable[str | os.PathLike], replay: str | os.PathLike,
                 max_side: int = DEFAULT_MAX_SIDE):
        replay = Path(replay)
        self.answers: dict[tuple[int, int], dict] = {}
        for path, _ in iter_images(images):
            sent_wh = prepare_image(path, max_side=max_side).sent_wh
            if sent_wh in self.answers:
                raise InputError(f"{path}: two images would be sent at {sent_wh}; the responder cannot "
                                 "tell them apart")
            found = [p for p in (replay / f"{path.stem}.json", replay / f"{path.stem}.txt") if p.is_file()]
            if not found:
                raise InputError(f"no recorded answer for {path.name} in {replay}")
            text = found[0].read_text(encoding="utf-8")
            self.answers[sent_wh] = json.loads(text) if found[0].suffix == ".json" else text_response(text)

    def __call__(self, request: RecordedRequest) -> dict:
        try:
            return self.answers[request.image_wh]
        except KeyError:
            raise LookupError(f"no recorded answer for an image of size {request.image_wh}") from None
