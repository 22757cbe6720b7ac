"""Default prompts and ``generationConfig`` for detection and segmentation requests.

The prompts follow Google's spatial-understanding guidance: ask for a JSON list of items with ``box_2d``
(``[ymin, xmin, ymax, xmax]`` on a 0-1000 grid) and ``label`` (plus ``mask`` for segmentation), cap the
number of objects so the model does not loop, and ask for no code fencing.

Generation config per model comes from the registry (:mod:`visionkit.gemini.models`): the least thinking
the model allows (``thinkingBudget: 0`` on 2.5 Flash, ``thinkingLevel: "low"`` on 3.7/3.8 Flash and 3.x Pro,
``"minimal"`` on Flash-Lite, nothing for an unknown id) and its temperature (0.5 on 2.x, the default on 3.x).
``thinkingBudget`` and ``thinkingLevel`` are never sent together (the API answers 400).

Segmentation prompts come in two forms: Google's PNG wording for 2.5 models (``"the segmentation mask in key
\"mask\""``) and a polygon wording for 3.x models that states the point order (``[y, x]`` on 0-1000, like
``box_2d``), so the answer is parsed with that order known instead of guessed.

JSON mode (``responseMimeType: application/json``, plus ``responseSchema`` when ``classes`` are given) is on
by default for detection and OFF by default for segmentation: forcing JSON mode for masks has produced
placeholder strings instead of masks. Pass ``json_mode=True`` to force it anyway.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.tasks import TASKS, check_task  # re-exported: they live where the offline path can import them
from ..errors import ConfigError

__all__ = [
    "DEFAULT_MAX_OBJECTS",
    "MASK_FORMATS",
    "TASKS",
    "check_task",
    "build_generation_config",
    "build_prompt",
    "model_family",
    "normalize_classes",
    "response_schema",
]

#: Default cap on the number of objects asked for (keeps the model from repeating itself).
DEFAULT_MAX_OBJECTS = 25

_DETECT = ("Detect {targets} in the image (at most {limit} objects). Output a JSON list where each entry "
           "contains the 2D bounding box in \"box_2d\" and a text label in \"label\". \"box_2d\" is "
           "[ymin, xmin, ymax, xmax] normalized to 0-1000.")
_SEGMENT = ("Give the segmentation masks for {targets} (at most {limit} objects). Output a JSON list of "
            "segmentation masks where each entry contains the 2D bounding box in the key \"box_2d\", the "
            "segmentation mask in key \"mask\", and the text label in the key \"label\".")
_SEGMENT_POLYGON = ("Give the segmentation masks for {targets} (at most {limit} objects). Output a JSON "
                    "list where each entry contains the 2D bounding box in the key \"box_2d\" as [ymin, "
                    "xmin, ymax, xmax] normalized to 0-1000, the text label in the key \"label\", and "
                    "the object's outline in the key \"mask\" as a polygon: a list of [y, x] points "
                    "(y first, then x), normalized to 0-1000 like \"box_2d\", in order around the outline.")
#: Mask formats a segmentation prompt can ask for.
MASK_FORMATS = ("png", "polygon", "none")
_ALL_TARGETS = "the prominent objects"
_NO_FENCE = "Return only the JSON, without code fencing."


def normalize_classes(classes: Sequence[str] | None) -> list[str] | None:
    """Validate ``classes``: a list of non-empty strings, stripped, duplicates removed (order kept).

    Returns None for None or an empty list. Raises :class:`ConfigError` for a bare string or a non-string.
    """
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)):
        raise ConfigError(f"classes must be a list of names, not a single string ({classes!r}); "
                          "split it first")
    out: list[str] = []
    for name in classes:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"every class must be a non-empty string, got {name!r}")
        if name.strip() not in out:
            out.append(name.strip())
    return out or None


def build_prompt(task: str, classes: Sequence[str] | None = None, prompt: str | None = None, *,
                 max_objects: int = DEFAULT_MAX_OBJECTS, mask_format: str = "png") -> str:
    """The text prompt for ``task`` ("detect" or "segment").

    Args:
        task: "detect" or "segment".
        classes: when given, the prompt asks for these kinds of objects and says "Only use these labels".
        prompt: your own prompt, used as is; with ``classes``, the label constraint is appended to it.
        max_objects: the cap on objects stated in the default prompt.
        mask_format: for "segment": ``"png"`` (Google's 2.5 wording), ``"polygon"`` ([y, x] points on 0-1000,
            order stated) or ``"none"`` (the model gives no masks: the detection prompt is used).
    """
    if mask_format not in MASK_FORMATS:
        raise ConfigError(f"mask_format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
    if task == "segment" and mask_format == "none":
        task = "detect"
    check_task(task)
    names = normalize_classes(classes)
    labels = None
    if names is not None:
        labels = "Only use these labels: " + ", ".join(json.dumps(n) for n in names) + "."
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError("prompt must be a non-empty string")
        return prompt if labels is None else f"{prompt.rstrip()}\n{labels}"
    targets = _ALL_TARGETS if names is None else "every " + " and every ".join(names)
    template = _DETECT if task == "detect" else _SEGMENT_POLYGON if mask_format == "polygon" else _SEGMENT
    text = template.format(targets=targets, limit=max_objects)
    text += " " + (labels if labels is not None else "Use descriptive labels.")
    return f"{text} {_NO_FENCE}"


def model_family(model: str) -> str:
    """Classify a model id: ``"3"``, ``"3-pro"``, ``"2.5-flash"``, ``"2.5-pro"``, ``"2.x"`` or ``"other"``.

    A ``models/`` prefix is ignored. ``gemini-robotics-er-1.5*`` (built on 2.5 Flash) counts as 2.5 Flash.
    """
    name = model.lower().removeprefix("models/")
    if re.match(r"gemini-3(\.\d+)?-", name):
        return "3-pro" if "-pro" in name else "3"
    if name.startswith("gemini-2.5-pro"):
        return "2.5-pro"
    if name.startswith("gemini-2.5-flash") or name.startswith("gemini-robotics-er-1.5"):
        return "2.5-flash"
    if re.match(r"gemini-(2\.0|1\.5)-", name):
        return "2.x"
    return "other"


def response_schema(classes: Sequence[str], task: str, mask_format: str = "png") -> dict:
    """The OpenAPI-subset ``responseSchema``: an ARRAY of OBJECTs whose ``label`` is one of ``classes``."""
    check_task(task)
    names = normalize_classes(classes)
    if names is None:
        raise ConfigError("response_schema needs at least one class")
    props: dict[str, Any] = {
        "box_2d": {"type": "ARRAY", "items": {"type": "INTEGER", "minimum": 0, "maximum": 1000},
                   "minItems": 4, "maxItems": 4},
        "label": {"type": "STRING", "enum": names},
    }
    required = ["box_2d", "label"]
    if task == "segment" and mask_format != "none":
        props["mask"] = ({"type": "STRING"} if mask_format == "png" else
                         {"type": "ARRAY", "items": {"type": "ARRAY", "minItems": 2, "maxItems": 2,
                                                     "items": {"type": "INTEGER", "minimum": 0,
                                                               "maximum": 1000}}})
        required.append("mask")
    return {"type": "ARRAY",
            "items": {"type": "OBJECT", "properties": props, "required": required,
                      "propertyOrdering": list(props)}}


_CAMEL = re.compile(r"_([a-z])")


def _camel(key: str) -> str:
    return _CAMEL.sub(lambda m: m.group(1).upper(), key)


def _normalize_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """snake_case keys of generationConfig (and of its thinkingConfig) -> lowerCamelCase. Values such as
    schemas are kept verbatim."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        key = _camel(key)
        if key == "thinkingConfig" and isinstance(value, Mapping):
            value = {_camel(k): v for k, v in value.items()}
        out[key] = value
    return out


def build_generation_config(model: str, task: str, classes: Sequence[str] | None = None, *,
                            json_mode: bool | None = None,
                            overrides: Mapping[str, Any] | None = None,
                            thinking: Mapping[str, Any] | None | str = "auto",
                            mask_format: str = "png") -> dict:
    """The ``generationConfig`` for one request.

    Args:
        model: the model id; its registry row picks the thinking and temperature defaults.
        task: "detect" or "segment".
        classes: when given and JSON mode is on, a ``responseSchema`` restricting ``label`` to them is sent.
        json_mode: send ``responseMimeType: application/json`` (and the schema). None means the task's
            default: on for "detect", off for "segment" (JSON mode has produced placeholder masks).
        overrides: your generationConfig, merged over the defaults. snake_case keys are accepted and
            converted; a key set to None removes the default; a ``thinkingConfig`` replaces the default one
            entirely; a ``responseJsonSchema`` drops the default ``responseSchema``.

        thinking: ``"auto"`` (the registry's least thinking), a thinkingConfig dict, or None for none (what
            :mod:`visionkit.gemini.thinking` learned from a 400). ``overrides`` still win over it.

    Raises:
        ConfigError: bad task or classes, or a config with both ``thinkingBudget`` and ``thinkingLevel``.
    """
    from .models import lookup

    check_task(task)
    names = normalize_classes(classes)
    info = lookup(model)
    if json_mode is None:
        json_mode = task == "detect"
    config: dict[str, Any] = {}
    if info.temperature is not None:
        config["temperature"] = info.temperature
    chosen = info.least if isinstance(thinking, str) else thinking
    if chosen:
        config["thinkingConfig"] = copy.deepcopy(dict(chosen))
    if json_mode:
        config["responseMimeType"] = "application/json"
        if names is not None:
            config["responseSchema"] = response_schema(names, task, mask_format)
    if overrides:
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"generation_config must be a dict, not {type(overrides).__name__}")
        user = _normalize_keys(copy.deepcopy(dict(overrides)))
        if "responseJsonSchema" in user:
            config.pop("responseSchema", None)
        for key, value in user.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
    thinking = config.get("thinkingConfig")
    if isinstance(thinking, Mapping) and thinking.get("thinkingBudget") is not None \
            and thinking.get("thinkingLevel") is not None:
        raise ConfigError("thinkingConfig cannot set both thinkingBudget and thinkingLevel (the API "
                          "answers 400); use thinkingLevel for Gemini 3 and thinkingBudget for 2.5")
    return config
