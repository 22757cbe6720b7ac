"""A labelling run's model notices and token bill: what is said once up front, and ``OUT/usage.json``.

``OUT/usage.json`` (online and ``--batch`` runs)::

    {"model": "gemini-3.8-flash", "service_tier": "standard", "images_requested": 8, "reasked": 1,
     "usage": {"prompt": ..., "candidates": ..., "thoughts": ..., "cached": ..., "total": ...,
               "requests": 9},                                   # every billed request of the run
     "images": {...}, "probes": {...},                           # usage = images + probes
     "model_line": "gemini-3.8-flash: GA; ... -> sending thinkingLevel low",
     "answered_by": {"gemini-3.8-flash": 8},                     # each answer's modelVersion
     "price_in": 0.3, "price_out": 2.5, "cost_usd": 0.0123}      # prices only when given

Only this run's requests are counted; answers reused from ``OUT/responses`` cost nothing again (their
own usage stays in each saved response's ``"visionkit"`` entry). ``images`` is exactly the sum of the
per-image entries (each answer's ``"visionkit"`` usage, re-asks included); ``probes`` are the text-only
requests that learned the model's thinking setting (:mod:`visionkit.gemini.fleet`). In a ``--batch`` run
``images`` sums the batch answers the dataset is built from (``service_tier`` ``"batch"``, their
``batch_answers`` count), and the cost prices them at half the interactive price, the Batch API's price
(ai.google.dev/gemini-api/docs/batch-api: "50% of the cost of interactive requests"); probes are
interactive requests, at the full price.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.usage import Usage
from .reask import saved_meta

__all__ = ["BATCH_DISCOUNT", "answer_usage", "model_notices", "run_cost", "write_usage"]

#: The Batch API's price as a share of the interactive one (see the module docstring).
BATCH_DISCOUNT = 0.5


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
    batch = bool(getattr(client, "answers_only", False))
    data: dict[str, Any] = {"model": getattr(client, "model", None),
                            "service_tier": "batch" if batch else (getattr(client, "service_tier", None)
                                                                   or "standard"),
                            "images_requested": summary.requested, "reasked": summary.reasked,
                            "usage": usage.to_json(), "images": summary.image_usage.to_json(),
                            "probes": summary.probe_usage.to_json()}
    if batch:
        data["batch_answers"] = summary.batch_answers
    if summary.model_line:
        data["model_line"] = summary.model_line
    if summary.answered_by:
        data["answered_by"] = dict(summary.answered_by)
    if prices is not None:
        data.update(price_in=prices[0], price_out=prices[1],
                    cost_usd=round(run_cost(summary, prices, batch), 6))
    write_json_atomic(path, data)


def run_cost(summary: Any, prices: tuple[float, float], batch: bool) -> float:
    """USD of the run: the images at the batch price in a ``--batch`` run, the probes at the full one."""
    share = BATCH_DISCOUNT if batch else 1.0
    return summary.image_usage.cost(*prices) * share + summary.probe_usage.cost(*prices)
