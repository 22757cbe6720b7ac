"""What a labeling run would do, without doing it: ``visionkit label --dry-run``.

For each input image: ``request`` (online, no saved answer fits), ``reuse`` (a saved answer in
``OUT/responses`` fits the request and the image), ``replay`` (a replay answer is found) or ``fail`` (no
replay answer, or an ambiguous one). Inputs left out (output folders, ``--glob``/``--exclude``/``--limit``)
are in the notices. Nothing is sent and nothing is written: ``keys.json`` is read, not recorded.

The token estimate is for the images to request, input side only: the image as sent (longest side at most
``max_side``, never upscaled) plus the prompt text. Image tokens follow Google's rule for Gemini 2.x
("258 tokens if both dimensions <= 384 pixels. Larger images are tiled into 768x768 pixel tiles, each
costing 258 tokens", with a crop unit of min(width, height) / 1.5; ai.google.dev/gemini-api/docs/
image-understanding, "Token calculation"); Gemini 3 models are counted at the 1120 tokens of
``media_resolution_high`` (ai.google.dev/gemini-api/docs/media-resolution), an upper bound, or at the
level ``media_resolution`` names. Text is
counted at about 4 characters a token. Output tokens depend on the answer and are not estimated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, VisionkitError
from ..media import imageio
from .answer_source import AnswerSource, RateLimiter, ResponseStore, request_record
from .inputs import find_inputs, no_images_error
from .keys import run_keys, stem_owners

__all__ = ["Plan", "PlannedImage", "image_tokens", "plan"]

_TILE_TOKENS = 258  # Gemini 2.x, per 768x768 tile (or per image when both sides <= 384)
_GEMINI3_IMAGE_TOKENS = 1120  # media_resolution_high, the default for images
# The other levels, per image: low 280 and ultra_high 2240 from third-party tables quoted in
# GEMINI-API-FACTS.md section 6, medium 560 as Google's table gives for PDFs at that level; upper bounds.
_GEMINI3_BY_RESOLUTION = {"low": 280, "medium": 560, "high": 1120, "ultra_high": 2240}


@dataclass(frozen=True)
class PlannedImage:
    file: str
    key: str
    action: str  # "request", "reuse", "replay" or "fail"
    detail: str = ""
    tokens: int = 0  # estimated input tokens, for "request"


@dataclass
class Plan:
    images: list[PlannedImage] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(p.action == action for p in self.images)

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.images)


def image_tokens(size_wh: tuple[int, int], model: str, max_side: int | None,
                 media_resolution: str | None = None) -> int:
    """Estimated input tokens of one image of ``size_wh`` as sent to ``model`` (see the module doc)."""
    from ..gemini.prompts import model_family

    if model_family(model) in ("3", "3-pro"):
        return _GEMINI3_BY_RESOLUTION.get(media_resolution or "high", _GEMINI3_IMAGE_TOKENS)
    width, height = size_wh
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    if width <= 384 and height <= 384:
        return _TILE_TOKENS
    crop = max(1, math.floor(min(width, height) / 1.5))
    return _TILE_TOKENS * math.ceil(width / crop) * math.ceil(height / crop)


def plan(inputs: Iterable[str | os.PathLike], out: str | os.PathLike, *, task: str = "segment",
         replay: str | os.PathLike | None = None, prompt: str | None = None,
         classes: Sequence[str] | None = None, model: str | None = None, max_side: int | None = 1024,
         glob: Sequence[str] = (), exclude: Sequence[str] = (), limit: int | None = None,
         media_resolution: str | None = None) -> Plan:
    """What :func:`visionkit.label` with these arguments would request, reuse, replay or fail.

    Raises:
        InputError, ConfigError: as :func:`visionkit.label` would before any work (no images, a missing
        replay folder, a bad filter).
    """
    from ..gemini.models import resolve_model

    model = resolve_model(model)  # as the client would: --model, else $VISIONKIT_MODEL, else the default
    out = Path(out)
    replay_dir = None if replay is None else Path(replay)
    if replay_dir is not None and not replay_dir.is_dir():
        raise InputError(f"replay folder {replay_dir} does not exist")
    found = find_inputs(inputs, out, glob=glob, exclude=exclude, limit=limit)
    if not found.images:
        raise no_images_error(found)
    store = ResponseStore(out / "responses")
    keys, _ = run_keys(found.images, out, store.owner)
    source = AnswerSource(replay_dir, store, None, RateLimiter(None), task, prompt, classes,
                          stem_owners=stem_owners(found.images, keys))
    source.request = request_record(task, prompt, classes, model, max_side, media_resolution)
    prompt_tokens = 0 if replay_dir is not None else _prompt_tokens(task, classes, prompt)
    result = Plan(notices=list(found.notices))
    for (path, root), key in zip(found.images, keys):
        file_name = path.relative_to(root).as_posix()
        result.images.append(_plan_one(source, path, file_name, key, model, max_side, prompt_tokens,
                                       media_resolution))
    return result


def _plan_one(source: AnswerSource, path: Path, file_name: str, key: str, model: str,
              max_side: int | None, prompt_tokens: int, media_resolution: str | None) -> PlannedImage:
    try:
        size_wh = imageio.image_size(path)  # as the label run does: an unreadable image fails first
        if source.replay is not None:
            found = source.replay_file(path, file_name, key)
            return PlannedImage(file_name, key, "replay", str(found))
        answer, stale = source.store.load(key, source.request, path)
        if answer is not None:
            return PlannedImage(file_name, key, "reuse", str(source.store.path(key)))
        tokens = image_tokens(size_wh, model, max_side, media_resolution) + prompt_tokens
        return PlannedImage(file_name, key, "request", stale or "", tokens)
    except VisionkitError as exc:
        return PlannedImage(file_name, key, "fail", str(exc))


def _prompt_tokens(task: str, classes: Sequence[str] | None, prompt: str | None) -> int:
    from ..gemini.prompts import build_prompt

    return math.ceil(len(build_prompt(task, classes, prompt)) / 4)
