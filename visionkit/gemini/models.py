"""The model registry: what each Gemini model id accepts, in one table.

Every request is built from :func:`lookup` (see :mod:`visionkit.gemini.request`). One row per model-id
pattern (a regular expression matched against the whole id, ``models/`` prefix removed; the first row
that matches wins, so specific rows come first):

============================  ========  ===================  =======  ========  ===========================
model id                      thinking  least thinking sent  masks    media     status
============================  ========  ===================  =======  ========  ===========================
gemini-4-argon*               level     level ``low``        polygon  unknown   GA 2026-10-13
gemini-4-hydrogen*            level     level ``low``        polygon  unknown   GA 2026-11-12 (short-lived)
gemini-4-neon*                level     level ``low``        polygon  unknown   GA 2026-11-18
gemini-3.x-flash-lite*        level     level ``minimal``    polygon  per part  GA (preview if named so)
gemini-3.8-flash*             level     level ``low``        polygon  per part  GA 2026-09-02
gemini-3.7-flash*             level     level ``low``        polygon  per part  routed to 3.8 (2026-10-08)
gemini-3.6-flash*             level     level ``low``        polygon  per part  GA
gemini-3.5-flash*             level     level ``low``        polygon  per part  routed to 3.6 (2026-10-08)
gemini-3-flash-preview        level     level ``minimal``    polygon  per part  preview
gemini-3.1-pro*               level     level ``low``        polygon  per part  preview
gemini-3-pro*                 level     level ``low``        polygon  per part  preview
gemini-2.5-flash-lite*        budget    budget ``0``         PNG      global    GA
gemini-2.5-flash*             budget    budget ``0``         PNG      global    routed (off 2026-12-01)
gemini-2.5-pro*               budget    budget ``128``       PNG      global    routed (off 2026-12-01)
gemini-2.0-*                  -         -                    -        -         retired 2026-06-01
gemini-1.x-*                  -         -                    -        -         retired (before 2.0)
gemini-robotics-er-1.5/1.6*   -         -                    -        -         retired 2026-08-31
gemini-robotics-er-2*         unknown   nothing              polygon  unknown   preview
anything else                 unknown   nothing (no guess)   polygon  unknown   unknown
============================  ========  ===================  =======  ========  ===========================

"least thinking" is the ``thinkingConfig`` sent so labelling spends as few thought tokens as the model
allows. ``thinkingBudget`` and ``thinkingLevel`` are never sent together (the API answers 400). For an id
the table does not know, or a row without a thinking rule, a labelling run LEARNS the setting before the
first image (:mod:`visionkit.gemini.fleet`: models.get, then text-only probes following the 400s) and
remembers it per user (:mod:`visionkit.gemini.model_cache`); a row with a sourced rule always wins.

Masks: ``png`` = Gemini 2.5's base64 PNG probability map, ``polygon`` = ``[[y, x], ...]`` on 0-1000 (the
prompt states the order), ``none`` = the model gives no masks (segmentation asks for boxes only).

Media resolution: ``global`` = ``generationConfig.mediaResolution`` (LOW, MEDIUM, HIGH); ``per part`` =
also ``mediaResolution: {level}`` on the image part, which alone offers ULTRA_HIGH (Gemini 3); ``unknown``
= sent as asked.

Status: ``ga``, ``preview`` (the id says so), ``deprecated`` (a shutdown is announced; still called, with
one warning naming the replacements), ``routed`` (the id still answers, but as another model, named by
``routed_to`` and by each response's ``modelVersion``) or ``retired`` (refused before any image is sent,
naming the replacements). Sources of each row are in :data:`MODELS` (``source``) and in docs/models.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from ..errors import ConfigError

__all__ = [
    "DEFAULT_MODEL",
    "LEVEL_ORDER",
    "MEDIA_RESOLUTIONS",
    "MODEL_ENV_VAR",
    "MODELS",
    "UNKNOWN",
    "ModelInfo",
    "lookup",
    "resolve_model",
    "status_note",
]

#: The default model: the newest GA Flash model (GA 2026-09-02); see docs/models.md for why.
DEFAULT_MODEL = "gemini-3.8-flash"

#: Environment variable that overrides the default model.
MODEL_ENV_VAR = "VISIONKIT_MODEL"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: thinkingLevel values from least to most thinking (``xhigh``: gemini-4-hydrogen and -neon).
LEVEL_ORDER = ("minimal", "low", "medium", "high", "xhigh")

#: ``--media-resolution`` choices and their API enum values.
MEDIA_RESOLUTIONS = {"low": "MEDIA_RESOLUTION_LOW", "medium": "MEDIA_RESOLUTION_MEDIUM",
                     "high": "MEDIA_RESOLUTION_HIGH", "ultra_high": "MEDIA_RESOLUTION_ULTRA_HIGH"}

_CURRENT = ("gemini-3.8-flash", "gemini-3.6-flash", "gemini-3.1-flash-lite")


@dataclass(frozen=True)
class ModelInfo:
    """One row of the registry.

    Attributes:
        pattern: regular expression matched against the whole model id (lower case).
        name: the row's name in messages and docs.
        thinking: ``"level"`` (``thinkingLevel``), ``"budget"`` (``thinkingBudget``), ``"none"`` (the model
            does not think) or ``"unknown"`` (send nothing).
        levels: the thinkingLevel values the model accepts (level models).
        least: the ``thinkingConfig`` sent for "as little thinking as possible", or None to send none.
        masks: ``"png"``, ``"polygon"`` or ``"none"``.
        media: ``"global"``, ``"per_part"``, ``"no"`` or ``"unknown"`` (see the module docstring).
        status: ``"ga"``, ``"preview"``, ``"deprecated"``, ``"routed"``, ``"retired"`` or ``"unknown"``.
        date: the GA date, or the shutdown date of a deprecated or retired model (text; sources may differ).
        replacements: model ids to use instead (deprecated and retired rows).
        temperature: the temperature sent, or None for the model's default (Google: keep 1.0 on Gemini 3).
        source: where the row's facts come from.
        routed_to: the model that answers for a routed id.
    """

    pattern: str
    name: str
    thinking: str
    levels: tuple[str, ...] = ()
    least: dict | None = None
    masks: str = "polygon"
    media: str = "unknown"
    status: str = "ga"
    date: str | None = None
    replacements: tuple[str, ...] = ()
    temperature: float | None = None
    source: str = ""
    routed_to: str | None = None
    _regex: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def matches(self, model: str) -> bool:
        return self._regex.fullmatch(model) is not None

    @property
    def least_level(self) -> str | None:
        """The lowest accepted thinkingLevel, or None."""
        return next((lv for lv in LEVEL_ORDER if lv in self.levels), None)


_LEVEL_FLASH = ("low", "medium", "high")
_LEVEL_G4 = ("low", "medium", "high", "xhigh")
_CHANGELOG = "ai.google.dev/gemini-api/docs/changelog"
_ROUTED_2026_10_08 = f"routing since 2026-10-08: {_CHANGELOG} (2026-10-08 entry)"
_OFF_2026_12_01 = ("switched off 2026-12-01 and routed onward: dev.to/aideprecations 'What to do before "
                   "Gemini 2.5 Pro and 2.5 Flash are retired' (quoting ai.google.dev/gemini-api/docs/"
                   "deprecations, read 2026-11-10); a reseller reports 2026-11-12 (docs.laozhang.ai): "
                   "sources conflict")
_LEVEL_ALL = ("minimal", "low", "medium", "high")
_GEMINI3_THINKING_DOC = "ai.google.dev/gemini-api/docs/thinking (thinking levels table)"

#: The registry, most specific rows first.
MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(r"gemini-4-argon(-[a-z0-9.-]+)?", "Gemini 4 Argon", "level", _LEVEL_FLASH,
              {"thinkingLevel": "low"}, "polygon", "unknown", "ga", "GA 2026-10-13",
              source="levels low|medium|high, default medium: ai.google.dev/gemini-api/docs/generate-content/"
                     "latest-model and docs.cloud.google.com/gemini-enterprise-agent-platform/models/guides/"
                     "gemini-4-argon; GA 2026-10-13: Gemini API changelog, via dev.to/aihubmix 'Gemini 4 "
                     "Argon thinking_level'; minimal refused: superagenticai/superqode v2.22.0; 'being "
                     "retired': docs.apiyi.com/en/live/2026-12 (third party, unconfirmed)"),
    ModelInfo(r"gemini-4-hydrogen(-[a-z0-9.-]+)?", "Gemini 4 Hydrogen", "level", _LEVEL_G4,
              {"thinkingLevel": "low"}, "polygon", "unknown", "ga",
              "GA 2026-11-12, short lifecycle (>= 45 days' deprecation notice)",
              source="levels LOW|MEDIUM|HIGH (default)|XHIGH and the short lifecycle: docs.cloud.google.com/"
                     "gemini-enterprise-agent-platform/models/guides/gemini-4-hydrogen; released 2026-11-12: "
                     "docs.sim.ai/models/google/gemini-4-hydrogen"),
    ModelInfo(r"gemini-4-neon(-[a-z0-9.-]+)?", "Gemini 4 Neon", "level", _LEVEL_G4,
              {"thinkingLevel": "low"}, "polygon", "unknown", "ga", "GA 2026-11-18",
              source="thinkingBudget and MINIMAL give 400, default high, temperature ignored: dev.to/"
                     "aihubmix 'gemini-4-neon migration'; levels low|medium|high|xhigh: "
                     "documentation.s3ns.fr/gemini-enterprise-agent-platform/models/guides/gemini-4-neon "
                     "(Google's guide, mirrored) and "
                     "docs.laozhang.ai (2026-11-22); released 2026-11-18: ivanusto/mitosis-orchestrator "
                     "v2.7.8"),
    ModelInfo(r"gemini-3(\.\d+)?-flash-lite(-[a-z0-9.-]+)?", "Gemini 3.x Flash-Lite", "level", _LEVEL_ALL,
              {"thinkingLevel": "minimal"}, "polygon", "per_part", "ga",
              source="Flash-Lite accepts minimal: modelflow-ai PR #163 ('confirmed against the live API'), "
                     "BerriAI/litellm-docs PR #1505; polygons: discuss.ai.google.dev/t/146559"),
    ModelInfo(r"gemini-3\.8-flash(-[a-z0-9.-]+)?", "Gemini 3.8 Flash", "level", _LEVEL_FLASH,
              {"thinkingLevel": "low"}, "polygon", "per_part", "ga", "GA 2026-09-02",
              source="minimal -> 400 'Allowed values are: medium, low, high': BerriAI/litellm-docs PR #1505, "
                     "can1357/oh-my-pi#10543, modelflow-ai PR #163; GA date: Google Cloud 3.8 Flash guide"),
    ModelInfo(r"gemini-3\.7-flash(-[a-z0-9.-]+)?", "Gemini 3.7 Flash", "level", _LEVEL_FLASH,
              {"thinkingLevel": "low"}, "polygon", "per_part", "routed",
              "GA 2026-08-13; routed to gemini-3.8-flash since 2026-10-08", ("gemini-3.8-flash",),
              source="minimal -> 400: simonw/llm-gemini#145, fishjar/kiss-translator#1048 and PR #1051, "
                     f"google/xrblocks PR #530; GA date: modeldex.dev; {_ROUTED_2026_10_08}; "
                     "gemini-3.8-flash "
                     "takes the same levels", routed_to="gemini-3.8-flash"),
    ModelInfo(r"gemini-3\.6-flash(-[a-z0-9.-]+)?", "Gemini 3.6 Flash", "level", _LEVEL_FLASH,
              {"thinkingLevel": "low"}, "polygon", "per_part", "ga",
              source="thinkingBudget 0 -> 400: google/xrblocks PR #474; 'low' is accepted by every Gemini 3 "
                     "model in the sources (minimal unverified, so not sent)"),
    ModelInfo(r"gemini-3\.5-flash(-[a-z0-9.-]+)?", "Gemini 3.5 Flash", "level", _LEVEL_FLASH,
              {"thinkingLevel": "low"}, "polygon", "per_part", "routed",
              "GA 2026-05-19; routed to gemini-3.6-flash since 2026-10-08", ("gemini-3.6-flash",),
              source="GA date: modeldex.dev; polygon masks: discuss.ai.google.dev/t/146559; "
                     "minimal unverified for 3.5+ Flash (3.7/3.8 reject it), so low is sent; "
                     f"{_ROUTED_2026_10_08}", routed_to="gemini-3.6-flash"),
    ModelInfo(r"gemini-3-flash(-preview)?(-[a-z0-9.-]+)?", "Gemini 3 Flash (preview)", "level", _LEVEL_ALL,
              {"thinkingLevel": "minimal"}, "polygon", "per_part", "preview",
              source=f"{_GEMINI3_THINKING_DOC}: Gemini 3 Flash takes minimal|low|medium|high"),
    ModelInfo(r"gemini-3\.1-pro(-[a-z0-9.-]+)?", "Gemini 3.1 Pro", "level", _LEVEL_FLASH,
              {"thinkingLevel": "low"}, "polygon", "per_part", "preview",
              source="cannot turn thinking off, use low: roboflow/inference google_gemini/v6.py comments"),
    ModelInfo(r"gemini-3-pro(-[a-z0-9.-]+)?", "Gemini 3 Pro", "level", ("low", "high"),
              {"thinkingLevel": "low"}, "polygon", "per_part", "preview",
              source=f"{_GEMINI3_THINKING_DOC}: Gemini 3 Pro takes low|high, thinking cannot be off"),
    ModelInfo(r"gemini-2\.5-flash-lite(-[a-z0-9.-]+)?", "Gemini 2.5 Flash-Lite", "budget", (),
              {"thinkingBudget": 0}, "png", "global", "ga", temperature=0.5,
              source="thinkingBudget 0 turns thinking off: ai.google.dev thinking docs; PNG masks: "
                     "image-understanding segmentation docs (2025); no shutdown date found in the sources"),
    ModelInfo(r"gemini-2\.5-flash(-[a-z0-9.-]+)?", "Gemini 2.5 Flash", "budget", (),
              {"thinkingBudget": 0}, "png", "global", "routed",
              "switched off 2026-12-01, routed to gemini-3.5-flash-lite (sources conflict on the date)",
              ("gemini-3.5-flash-lite", *_CURRENT), 0.5,
              source="PNG masks with thinkingBudget 0: image-understanding docs (2025); seg tokens "
                     "since 2026: discuss.ai.google.dev/t/146559; shutdown 2026-10-16: aiweekly.co, quoting "
                     f"the deprecations page; {_OFF_2026_12_01}", routed_to="gemini-3.5-flash-lite"),
    ModelInfo(r"gemini-2\.5-pro(-[a-z0-9.-]+)?", "Gemini 2.5 Pro", "budget", (),
              {"thinkingBudget": 128}, "png", "global", "routed",
              "switched off 2026-12-01, routed to gemini-3.8-flash (sources conflict on the date)",
              ("gemini-3.8-flash", "gemini-3.1-pro-preview"), 0.5,
              source="cannot go to 0; budget range 128-32768: ai.google.dev thinking docs; "
                     + _OFF_2026_12_01,
              routed_to="gemini-3.8-flash"),
    ModelInfo(r"gemini-2\.0-[a-z0-9.-]+", "Gemini 2.0", "none", status="retired",
              date="shut down 2026-06-01", replacements=_CURRENT,
              source="aiweekly.co and modeldex.dev alerts (2026-06), quoting Google Cloud docs"),
    ModelInfo(r"gemini-1\.[05]-[a-z0-9.-]+|gemini-pro(-vision)?", "Gemini 1.x", "none", status="retired",
              date="shut down before the 2.0 family (2026-06-01)", replacements=_CURRENT,
              source="older than Gemini 2.0, whose shutdown on 2026-06-01 is sourced above"),
    ModelInfo(r"gemini-robotics-er-1\.[56](-[a-z0-9.-]+)?", "Gemini Robotics-ER 1.x", "none",
              status="retired", date="1.6 shut down 2026-08-31",
              replacements=("gemini-robotics-er-2-preview",),
              source="ai.google.dev robotics overview (1.6 shutdown 2026-08-31); 1.5 is older"),
    ModelInfo(r"gemini-robotics-er-2(-[a-z0-9.-]+)?", "Gemini Robotics-ER 2", "unknown", status="preview",
              source="id seen in modeldex.dev (2026-11); its thinking rules are not documented"),
)

#: The row for ids the table does not know: no thinking field, polygon masks, media sent as asked.
UNKNOWN = ModelInfo(r"(?!)", "unknown model", "unknown", status="unknown",
                    source="fallback: send nothing the model might reject")


def resolve_model(model: str | None) -> str:
    """``model``, else ``$VISIONKIT_MODEL``, else :data:`DEFAULT_MODEL`; checked, ``models/`` removed.

    Raises:
        ConfigError: not a model id, or a retired model (the message names its replacements).
    """
    chosen = model if model is not None and str(model).strip() else os.environ.get(MODEL_ENV_VAR, "").strip()
    name = str(chosen or DEFAULT_MODEL).strip().removeprefix("models/")
    if not _MODEL_ID.match(name):
        raise ConfigError(f"model must be a model id such as {DEFAULT_MODEL!r}, got {name!r}")
    info = lookup(name)
    if info.status == "retired":
        raise ConfigError(f"{status_note(name, info)}; requests to a retired id return 404 "
                          f"(set --model or {MODEL_ENV_VAR})")
    return name


def lookup(model: str) -> ModelInfo:
    """The registry row for ``model`` (a ``models/`` prefix is ignored), or :data:`UNKNOWN`."""
    name = str(model).strip().lower().removeprefix("models/")
    for info in MODELS:
        if info.matches(name):
            if info.status == "ga" and "preview" in name:
                return replace(info, status="preview")
            return info
    return UNKNOWN


def status_note(model: str, info: ModelInfo | None = None) -> str:
    """A sentence about a deprecated, routed or retired model, naming its replacements ('' otherwise)."""
    info = info or lookup(model)
    if info.status not in ("retired", "deprecated", "routed"):
        return ""
    verb = {"retired": "is retired", "deprecated": "is deprecated",
            "routed": f"is routed to {info.routed_to} (its answers come from that model)"}[info.status]
    when = f" ({info.date})" if info.date and info.status != "routed" else ""
    use = f"; use {', '.join(info.replacements)} instead" if info.replacements else ""
    return f"{model} {verb}{when}{use}"
