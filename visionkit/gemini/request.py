"""The one place a generateContent request body for an image is built.

Stable API (used by :meth:`GeminiClient.annotate` and by Batch API JSONL writers)::

    from visionkit.gemini.request import RequestOptions, build_request

    body = build_request(image, task, model, options)     # -> dict, the full generateContent body

* ``image``: a :class:`~visionkit.gemini.images.PreparedImage` (sent as ``inlineData``) or an image part
  dict as is (e.g. ``{"fileData": {...}}`` from the Files API, or a ready ``{"inlineData": ...}``).
* ``task``: ``"detect"`` or ``"segment"``.
* ``model``: the model id; its registry row (:mod:`visionkit.gemini.models`) decides the thinking config,
  the temperature, the mask format asked for and whether ``mediaResolution`` may be sent.
* ``options``: a :class:`RequestOptions` (all optional).

The body is ``{"contents": [{"role": "user", "parts": [<image part>, {"text": <prompt>}]}],
"generationConfig": {...}}`` plus ``"serviceTier"`` for flex/priority. Google's advice for one image: the
image part first, then the text. :func:`plan_request` returns the pieces (prompt text, mask format and the
point order the prompt declares) for callers that need to know how to parse the answer.

``RequestOptions.media_resolution`` ``low|medium|high`` goes in ``generationConfig.mediaResolution``
(``MEDIA_RESOLUTION_*``); ``ultra_high`` exists only per part (Gemini 3; ``mediaResolution: {"level":
"MEDIA_RESOLUTION_ULTRA_HIGH"}`` on the image part), per GEMINI-API-FACTS section 8 ([SDK] ``types.py``
``PartMediaResolution``; Vertex 3 Flash model page). ``service_tier`` ``flex``/``priority`` is sent as the
request's ``serviceTier`` (Google's flex-inference page: "specify the service_tier as flex in your
request"; omitted = standard).
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .images import PreparedImage
from .models import MEDIA_RESOLUTIONS, ModelInfo, lookup
from .prompts import MASK_FORMATS, build_generation_config, build_prompt, check_task, normalize_classes
from .thinking import AUTO

__all__ = ["SERVICE_TIERS", "RequestOptions", "RequestPlan", "as_contents", "build_request", "encode_request",
           "image_part", "plan_request"]

#: ``--tier`` choices. "standard" sends nothing (the API's default).
SERVICE_TIERS = ("standard", "flex", "priority")


@dataclass(frozen=True)
class RequestOptions:
    """What a request asks for, besides the image, the task and the model.

    Attributes:
        prompt: your own prompt, used as is (default: :func:`~visionkit.gemini.prompts.build_prompt`).
        classes: label names the answer must use.
        json_mode: force (True) or forbid (False) JSON mode; None: on for detect, off for segment.
        generation_config: merged over the defaults (see ``build_generation_config``).
        media_resolution: ``"low"``, ``"medium"``, ``"high"``, ``"ultra_high"`` or None (the model's default).
        service_tier: ``"standard"``, ``"flex"``, ``"priority"`` or None (= standard).
        mask_format: ``"png"``, ``"polygon"`` or ``"none"`` to override the registry (segment only).
        thinking: ``"auto"`` (the registry), a thinkingConfig dict, or None for none.
    """

    prompt: str | None = None
    classes: Sequence[str] | None = None
    json_mode: bool | None = None
    generation_config: Mapping[str, Any] | None = None
    media_resolution: str | None = None
    service_tier: str | None = None
    mask_format: str | None = None
    thinking: Mapping[str, Any] | None | str = AUTO

    def __post_init__(self) -> None:
        if self.classes is not None:
            names = normalize_classes(self.classes)
            object.__setattr__(self, "classes", tuple(names) if names else None)
        if self.media_resolution is not None and self.media_resolution not in MEDIA_RESOLUTIONS:
            raise ConfigError(f"media_resolution must be one of {', '.join(MEDIA_RESOLUTIONS)}, "
                              f"got {self.media_resolution!r}")
        if self.service_tier is not None and self.service_tier not in SERVICE_TIERS:
            raise ConfigError(f"service_tier must be one of {', '.join(SERVICE_TIERS)}, "
                              f"got {self.service_tier!r}")
        if self.mask_format is not None and self.mask_format not in MASK_FORMATS:
            raise ConfigError(f"mask_format must be one of {', '.join(MASK_FORMATS)}, "
                              f"got {self.mask_format!r}")


@dataclass(frozen=True)
class RequestPlan:
    """How one request asks: its prompt text, generationConfig and what the answer's masks will be.

    Attributes:
        text: the prompt text.
        generation_config: the ``generationConfig`` object.
        mask_format: ``"png"``, ``"polygon"``, ``"none"`` (segment), or None (detect).
        mask_order: ``"yx"`` when the prompt states the polygon point order (the default polygon prompt),
            else None (your own prompt: the parser decides the order from the box).
        info: the model's registry row.
    """

    text: str
    generation_config: dict
    mask_format: str | None
    mask_order: str | None
    info: ModelInfo


def plan_request(task: str, model: str, options: RequestOptions | None = None) -> RequestPlan:
    """The prompt and generationConfig for ``task`` on ``model`` (see the module docstring).

    Raises:
        ConfigError: a bad task, option, or a media resolution the model does not take.
    """
    check_task(task)
    options = options or RequestOptions()
    info = lookup(model)
    mask_format = None
    if task == "segment":
        mask_format = options.mask_format or info.masks
    text = build_prompt(task, options.classes, options.prompt, mask_format=mask_format or "png")
    config = build_generation_config(model, "detect" if mask_format == "none" else task, options.classes,
                                     json_mode=options.json_mode, overrides=options.generation_config,
                                     thinking=options.thinking, mask_format=mask_format or "png")
    media = options.media_resolution
    if media is not None:
        if info.media == "no":
            raise ConfigError(f"model {model} does not accept mediaResolution; drop --media-resolution")
        if media == "ultra_high" and info.media == "global":
            raise ConfigError(f"media_resolution ultra_high is a per-part setting of Gemini 3 models; "
                              f"{model} takes low, medium or high")
        if media != "ultra_high":
            config.setdefault("mediaResolution", MEDIA_RESOLUTIONS[media])
    order = "yx" if mask_format == "polygon" and options.prompt is None else None
    return RequestPlan(text, config, mask_format, order, info)


def as_contents(parts_or_contents: Any) -> list[dict]:
    """A str, a list of parts (str or dict) or a list of Content dicts -> ``contents``."""
    if isinstance(parts_or_contents, (str, Mapping)):
        parts_or_contents = [parts_or_contents]
    items = list(parts_or_contents)
    if not items:
        raise ConfigError("generate needs at least one part")
    if all(isinstance(item, Mapping) and "parts" in item for item in items):
        return [dict(item) for item in items]
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.append({"text": item})
        elif isinstance(item, Mapping) and "parts" not in item:
            parts.append(dict(item))
        else:
            raise ConfigError("generate takes a list of parts (str or part dicts) or a list of contents "
                              f"({{'role', 'parts'}} dicts), not a mix; got {type(item).__name__}")
    return [{"role": "user", "parts": parts}]


class _Base64(str):
    """Base64 text made here: its letters (``A-Za-z0-9+/=``) are JSON as they are, so
    :func:`encode_request` splices its bytes in instead of having ``json.dumps`` scan it for escapes."""

    __slots__ = ("raw",)


def _base64(data: bytes) -> _Base64:
    raw = base64.b64encode(data)
    text = _Base64(raw.decode("ascii"))
    text.raw = raw
    return text


def encode_request(body: Mapping[str, Any]) -> bytes:
    """``json.dumps(body).encode("utf-8")``, the same bytes, built faster: the base64 image data that
    :func:`image_part` made is spliced in, not scanned for escapes by ``json.dumps`` (which cost more than
    the base64 encoding itself for a 1024-pixel JPEG, measured: docs/performance.md)."""
    spliced: list[bytes] = []

    def swap(value: Any) -> Any:
        if isinstance(value, _Base64) and getattr(value, "raw", None) is not None:
            spliced.append(value.raw)
            return f"{token}{len(spliced) - 1}."
        if isinstance(value, Mapping):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    token = f"vk-base64-{secrets.token_hex(8)}-"
    text = json.dumps(swap(body)).encode("utf-8")
    pieces, rest = [], text
    for i, raw in enumerate(spliced):
        mark = f"{token}{i}.".encode("ascii")
        head, found, rest = rest.partition(mark)
        if not found or mark in rest:  # cannot happen (a random token); the plain way then
            return json.dumps(body).encode("utf-8")
        pieces += (head, raw)
    return b"".join((*pieces, rest))


def image_part(image: PreparedImage | Mapping[str, Any]) -> dict:
    """The content part for ``image``: ``inlineData`` for a PreparedImage, a part dict copied as is."""
    if isinstance(image, PreparedImage):
        data = _base64(image.data)
        return {"inlineData": {"mimeType": image.mime_type, "data": data}}
    if isinstance(image, Mapping):
        return copy.deepcopy(dict(image))
    raise ConfigError(f"image must be a PreparedImage or a part dict, not {type(image).__name__}")


def build_request(image: PreparedImage | Mapping[str, Any], task: str, model: str,
                  options: RequestOptions | None = None) -> dict:
    """The full generateContent request body for one image (see the module docstring for the contract).

    Raises:
        ConfigError: a bad task, option or image.
    """
    options = options or RequestOptions()
    plan = plan_request(task, model, options)
    part = image_part(image)
    if options.media_resolution == "ultra_high":
        part["mediaResolution"] = {"level": MEDIA_RESOLUTIONS["ultra_high"]}
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [part, {"text": plan.text}]}],
                            "generationConfig": plan.generation_config}
    if options.service_tier in ("flex", "priority"):
        body["serviceTier"] = options.service_tier
    return body
