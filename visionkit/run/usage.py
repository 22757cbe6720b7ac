"""A labelling run's model notices and token bill: what is said once up front, and ``OUT/usage.json``.

``OUT/usage.json`` (online runs)::

    {"model": "gemini-3.8-flash", "service_tier": "standard", "images_requested": 8, "reasked": 1,
     "usage": {"prompt": ..., "candidates": ..., "thoughts": ..., "cached": ..., "total": ...,
               "requests": 9},
     "price_in": 0.3, "price_out": 2.5, "cost_usd": 0.0123}      # prices only when given

Only this run's requests are counted; answers reused from ``OUT/responses`` cost nothing again (their
own usage stays in each saved response's ``"visionkit"`` entry).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.usage import Usage
from .reask import saved_meta

__all__ = ["answer_usage", "model_notices", "write_usage"]


def answer_usage(answer: Any) -> dict | None:
    """The usage of the requests behind ``answer``: visionkit's summed entry, else its usageMetadata."""
    meta = saved_meta(answer)
    if isinstance(meta.get("usage"), Mapping):
        return dict(meta["usage"])
    if isinstance(answer, Mapping) and isinstance(answer.get("usageMetadata"), Mapping):
        return Usage.of(answer["usageMetadata"]).to_json()
    return None


def model_notices(client: Any, task: str) -> list[str]:
    """What to say once, before any image: a deprecated model, or a model that gives no masks."""
    info = getattr(client, "info", None)
    model = getattr(client, "model", "")
    if info is None:
        return []
    from ..gemini.models import status_note

    notes = []
    note = status_note(model, info)
    if note:
        notes.append(note)
    if task == "segment" and info.masks == "none":
        notes.append(f"{model} gives no segmentation masks: it is asked for boxes only, and the COCO "
                     "annotations will have no segmentation")
    return notes


def write_usage(path: Path, summary: Any, client: Any, prices: tuple[float, float] | None) -> None:
    """Write ``OUT/usage.json`` for the run (atomically)."""
    from ..media.atomic import write_json_atomic

    usage: Usage = summary.usage
    data: dict[str, Any] = {"model": getattr(client, "model", None),
                            "service_tier": getattr(client, "service_tier", None) or "standard",
                            "images_requested": summary.requested, "reasked": summary.reasked,
                            "usage": usage.to_json()}
    if prices is not None:
        data.update(price_in=prices[0], price_out=prices[1], cost_usd=round(usage.cost(*prices), 6))
    write_json_atomic(path, data)
