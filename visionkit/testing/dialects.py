"""Per-model behaviour for :class:`~visionkit.testing.FakeGemini`, from one table.

``FakeGemini(dialects=True)`` enforces, per model id, the rules that break real requests (written from the
same public sources as :mod:`visionkit.gemini.models`, but independently of it, so a test against the fake
checks the client's table instead of repeating it):

* **thinking**: a ``thinkingLevel`` outside the model's levels -> 400 ``'<level>' is not a supported
  thinking level for this model. Allowed values are: <levels>.``; ``thinkingBudget: 0`` where thinking
  cannot be off -> 400 ``Budget 0 is invalid. This model only works in thinking mode.``; a level sent to a
  budget model (or a budget to a level-only one) -> 400; both at once -> 400;
* **retired** ids -> 404 ``models/<id> is not found for API version v1beta, or is not supported for
  generateContent.``;
* **masks**: segmentation prompts get polygons (``[[y, x], ...]`` on 0-1000) from 3.x models, PNG
  probability maps from 2.5 models, or ``<start_of_mask><seg_N>`` tokens from a 2.5 model told to
  (``Dialects(seg_tokens=True)``) unless the prompt asks for ``[y, x]`` polygons;
* **usageMetadata**: prompt tokens from the image's media resolution, thought tokens from the thinking
  level, candidate tokens from the answer's length;
* **flex drops**: with ``serviceTier: flex``, every ``flex_drop_every``-th flex request is answered 503
  UNAVAILABLE (a dropped request), so a client must retry it;
* **the fleet of December 2026** (GEMINI-API-FACTS section 9): Gemini 4 ids (``gemini-4-argon`` low|medium|
  high, default medium; ``gemini-4-hydrogen`` and ``gemini-4-neon`` low|medium|high|xhigh, default high;
  neon refuses any ``thinkingBudget`` and ``MINIMAL`` without listing what it allows), a ``gemini-4.N-flash-
  exp`` id no table knows (refuses MINIMAL in the Vertex wording, no list), routed ids (``gemini-3.7-flash``
  answers as ``gemini-3.8-flash``, ``gemini-3.5-flash`` as ``gemini-3.6-flash``: their ``modelVersion``),
  a model that does not think (``gemma-*``: any thinkingConfig is a 400) and one without generateContent
  (embeddings). Thought tokens are charged by level (:data:`THOUGHTS`), at the model's default level
  when none is sent. Each dialect also describes its model for the Models API (:meth:`Dialects.resource`).

Unknown ids (not in :data:`DIALECTS`) behave like :data:`UNKNOWN_DIALECT`: they accept no thinking field
other than a ``thinkingLevel`` in ``low|medium|high``, which exercises the client's 400-learning path.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .fake_responses import error_body, model_resource

__all__ = ["DEFAULT_OBJECTS", "DIALECTS", "LISTED", "THOUGHTS", "UNKNOWN_DIALECT", "Dialect", "Dialects"]


@dataclass(frozen=True)
class Dialect:
    """How one model family answers. ``levels``: accepted thinkingLevel values, in the order the API's
    message lists them; ``budget``: whether thinkingBudget is accepted; ``budget_zero``: whether 0 is."""

    pattern: str
    levels: tuple[str, ...] = ()
    budget: bool = False
    budget_zero: bool = False
    masks: str = "polygon"  # "polygon", "png"
    retired: bool = False
    image_tokens: int = 1120  # at the default media resolution
    default_level: str | None = None  # the level a request without thinkingConfig thinks at (None: 512)
    list_allowed: bool = True  # a refused level's 400 lists the allowed values (else Vertex wording)
    thinks: bool = True  # False: any thinkingConfig is a 400
    no_budget: bool = False  # any thinkingBudget is a 400 (levels only)
    routed_to: str | None = None  # the model that really answers (its modelVersion)
    methods: tuple[str, ...] = ("generateContent", "countTokens", "batchGenerateContent")


_FLASH = ("medium", "low", "high")  # as the API lists them for 3.7/3.8 Flash (simonw/llm-gemini#145)

_G4 = ("low", "medium", "high", "xhigh")

#: The table: first match wins.
DIALECTS: tuple[Dialect, ...] = (
    Dialect(r"gemini-3(\.\d+)?-flash-lite.*", ("minimal", "low", "medium", "high")),
    Dialect(r"gemini-3\.7-flash.*", _FLASH, routed_to="gemini-3.8-flash"),
    Dialect(r"gemini-3\.5-flash.*", _FLASH, routed_to="gemini-3.6-flash"),
    Dialect(r"gemini-3\.[5-9]-flash.*", _FLASH),
    Dialect(r"gemini-3-flash.*", ("minimal", "low", "medium", "high")),
    Dialect(r"gemini-3(\.\d+)?-pro.*", ("low", "medium", "high")),
    Dialect(r"gemini-2\.5-pro.*", budget=True, budget_zero=False, masks="png", image_tokens=258),
    Dialect(r"gemini-2\.5-flash.*", budget=True, budget_zero=True, masks="png", image_tokens=258),
    Dialect(r"gemini-2\.0-.*|gemini-1\.5-.*|gemini-robotics-er-1\..*", retired=True),
    Dialect(r"gemini-4-argon.*", ("low", "medium", "high"), default_level="medium"),
    Dialect(r"gemini-4-hydrogen.*", _G4, default_level="high"),
    Dialect(r"gemini-4-neon.*", _G4, default_level="high", list_allowed=False, no_budget=True),
    Dialect(r"gemini-4\.\d+-flash-exp.*", ("low", "medium", "high"), default_level="high", list_allowed=False,
            no_budget=True),
    Dialect(r"gemma-.*", thinks=False, image_tokens=258),
    Dialect(r"(gemini-)?(text-)?embedding.*", methods=("embedContent", "countTokens")),
)
#: The ids ``GET /v1beta/models`` lists (with dialects).
LISTED = ("gemini-3.8-flash", "gemini-3.6-flash", "gemini-3.5-flash-lite", "gemini-3.1-flash-lite",
          "gemini-3.1-pro-preview", "gemini-2.5-flash-lite", "gemini-4-argon", "gemini-4-hydrogen",
          "gemini-4-neon", "gemini-4.2-flash-exp", "gemma-3-27b-it", "gemini-embedding-2")
#: Any other id: thinkingLevel low|medium|high only, polygons.
UNKNOWN_DIALECT = Dialect(r".*", _FLASH)

#: The objects every dialect answer describes: ``(label, box_2d)``.
DEFAULT_OBJECTS = (("cup", (100, 150, 600, 700)), ("plate", (200, 40, 450, 300)),
                   ("fork", (650, 600, 950, 950)))

_MEDIA_TOKENS = {"MEDIA_RESOLUTION_LOW": 280, "MEDIA_RESOLUTION_MEDIUM": 560, "MEDIA_RESOLUTION_HIGH": 1120,
                 "MEDIA_RESOLUTION_ULTRA_HIGH": 2240}
#: Thought tokens per request at each thinking level.
THOUGHTS = {"minimal": 0, "low": 64, "medium": 256, "high": 1024, "xhigh": 4096}


def octagon_yx(box: tuple[int, int, int, int]) -> list[list[int]]:
    """An octagon inscribed in ``box_2d``, as ``[y, x]`` points on 0-1000."""
    y0, x0, y1, x1 = box
    h, w = y1 - y0, x1 - x0
    fy, fx = h // 4, w // 4
    return [[y0, x0 + fx], [y0, x1 - fx], [y0 + fy, x1], [y1 - fy, x1], [y1, x1 - fx], [y1, x0 + fx],
            [y1 - fy, x0], [y0 + fy, x0]]


_png_lock = threading.Lock()
_png: list[str] = []


def _png_mask() -> str:
    with _png_lock:
        if not _png:
            from PIL import Image, ImageDraw

            im = Image.new("L", (64, 64), 0)
            ImageDraw.Draw(im).polygon([(16, 0), (48, 0), (63, 16), (63, 48), (48, 63), (16, 63), (0, 48),
                                        (0, 16)], fill=255)
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            _png.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
        return _png[0]


class Dialects:
    """The rules of :data:`DIALECTS` for one :class:`FakeGemini` (thread-safe counters).

    Args:
        seg_tokens: 2.5 models answer PNG-mask prompts with ``<start_of_mask><seg_N>`` tokens.
        flex_drop_every: drop every n-th flex request with a 503 (0 = never).
        table: the dialect table (default :data:`DIALECTS`).
    """

    def __init__(self, *, seg_tokens: bool = False, flex_drop_every: int = 2,
                 table: tuple[Dialect, ...] = DIALECTS):
        self.seg_tokens = seg_tokens
        self.flex_drop_every = flex_drop_every
        self.table = table
        self.listed = LISTED  # the ids GET /v1beta/models lists
        self._lock = threading.Lock()
        self._flex_seen = 0
        self.flex_dropped = 0

    def of(self, model: str) -> Dialect:
        for d in self.table:
            if re.fullmatch(d.pattern, model):
                return d
        return UNKNOWN_DIALECT

    def reject(self, model: str, body: Mapping) -> tuple[int, dict] | None:
        """The error a real model returns for this request body, or None when it is accepted."""
        d = self.of(model)
        if d.retired:
            return 404, error_body(404, f"models/{model} is not found for API version v1beta, or is not "
                                        "supported for generateContent. Call ListModels to see the list of "
                                        "available models and their supported methods.")
        if "generateContent" not in d.methods:
            return 404, error_body(404, f"models/{model} is not found for API version v1beta, or is not "
                                        "supported for generateContent.")
        config = body.get("generationConfig") or {}
        thinking = config.get("thinkingConfig") if isinstance(config, Mapping) else None
        budget_0 = "Budget 0 is invalid. This model only works in thinking mode."
        if isinstance(thinking, Mapping) and thinking:
            level, budget = thinking.get("thinkingLevel"), thinking.get("thinkingBudget")
            if not d.thinks:
                return 400, error_body(400, f"Thinking is not enabled for models/{model}.")
            if level is not None and budget is not None:
                return 400, error_body(400, "You can only set only one of thinking budget and thinking "
                                            "level.")
            if level is not None:
                if not d.levels:
                    return 400, error_body(400, "Thinking level is not supported for this model.")
                if str(level).lower() not in d.levels:
                    if not d.list_allowed:
                        return 400, error_body(400, f"Thinking level THINKING_LEVEL_{str(level).upper()} is "
                                                    "unsupported for this model.")
                    return 400, error_body(400, f"'{level}' is not a supported thinking level for this "
                                                f"model. Allowed values are: {', '.join(d.levels)}.")
            if budget is not None and d.no_budget:  # gemini-4-neon: any budget is a 400
                return 400, error_body(400, "Thinking budget is not supported for this model. Use thinking "
                                            "level instead.")
            if budget == 0 and not (d.budget and d.budget_zero):
                return 400, error_body(400, budget_0)
        if body.get("serviceTier") == "flex" and self.flex_drop_every:
            with self._lock:
                self._flex_seen += 1
                drop = self._flex_seen % self.flex_drop_every == 1 % self.flex_drop_every
                self.flex_dropped += drop
            if drop:
                return 503, error_body(503, "The service is currently unavailable on the flex tier; the "
                                            "request was dropped. Please try again later.")
        return None

    def version(self, model: str) -> str:
        """The ``modelVersion`` an answer from ``model`` carries: the model that really answers."""
        return self.of(model).routed_to or model

    def resource(self, model: str) -> dict | None:
        """The Models API's description of ``model`` (None: 404, a retired id)."""
        d = self.of(model)
        if d.retired:
            return None
        if "generateContent" not in d.methods:
            return model_resource(model, thinking=False, methods=d.methods)
        return model_resource(model, thinking=d.thinks and bool(d.levels or d.budget))

    def answer(self, model: str, body: Mapping, text: str) -> dict:
        """The answer of ``model`` to a prompt ``text`` (see the module docstring), with usageMetadata."""
        d = self.of(model)
        items: list[dict[str, Any]] = []
        wants_masks = "mask" in text.lower()
        polygon_prompt = "[y, x] points" in text
        for label, box in DEFAULT_OBJECTS:
            item: dict[str, Any] = {"box_2d": list(box), "label": label}
            if wants_masks:
                if d.masks == "polygon" or polygon_prompt:
                    item["mask"] = octagon_yx(box)
                elif self.seg_tokens:
                    item["mask"] = "<start_of_mask>" + "".join(f"<seg_{n}>" for n in (4, 20, 37, 12)) \
                        + "<end_of_mask>"
                else:
                    item["mask"] = _png_mask()
            items.append(item)
        answer = json.dumps(items)
        return {"candidates": [{"content": {"role": "model", "parts": [{"text": answer}]},
                                "finishReason": "STOP", "index": 0}],
                "usageMetadata": self.usage(model, body, text, answer), "modelVersion": self.version(model)}

    def usage(self, model: str, body: Mapping, text: str, answer: str) -> dict:
        d = self.of(model)
        config = body.get("generationConfig") or {}
        image = d.image_tokens
        media = config.get("mediaResolution") if isinstance(config, Mapping) else None
        has_image = False
        for content in body.get("contents") or []:
            for part in content.get("parts") or []:
                if isinstance(part, Mapping) and isinstance(part.get("mediaResolution"), Mapping):
                    media = part["mediaResolution"].get("level") or media
                has_image |= isinstance(part, Mapping) and any(k in part for k in (
                    "inlineData", "inline_data", "fileData", "file_data"))
        if media in _MEDIA_TOKENS and d.levels:
            image = _MEDIA_TOKENS[media]
        image = image if has_image else 0  # a text-only request (a probe) has no image tokens
        thinking = config.get("thinkingConfig") if isinstance(config, Mapping) else None
        thinking = thinking if isinstance(thinking, Mapping) else {}
        if not d.thinks:
            thoughts = 0
        elif "thinkingLevel" in thinking:
            thoughts = THOUGHTS.get(str(thinking["thinkingLevel"]).lower(), 512)
        elif "thinkingBudget" in thinking:
            thoughts = min(int(thinking["thinkingBudget"]), 512)
        elif d.default_level is not None:
            thoughts = THOUGHTS[d.default_level]
        else:
            thoughts = 512 if d.levels or not d.budget_zero else 0
        prompt = image + max(1, len(text) // 4)
        candidates = max(1, len(answer) // 4)
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
                 "totalTokenCount": prompt + candidates + thoughts,
                 "promptTokensDetails": [{"modality": "IMAGE", "tokenCount": image},
                                         {"modality": "TEXT", "tokenCount": prompt - image}]}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage
