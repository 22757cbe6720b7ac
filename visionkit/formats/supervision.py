"""Interop with the supervision library (``pip install "visionkit[supervision]"``): the one place that
converts between :class:`visionkit.Detections` and ``supervision.Detections``.

* boxes: ``xyxy`` as is (float pixels, same convention: continuous edges, x1/y1 exclusive);
* labels: ``data["class_name"]`` (supervision's own key for names), and ``class_id`` = the label's index
  in ``classes`` (default: the sorted distinct labels);
* scores: ``confidence`` (NaN where an item had none);
* masks: supervision holds full ``(N, H, W)`` bool masks, so :func:`to_supervision` builds them (memory
  N x image size, supervision's choice); :func:`from_supervision` turns them back into crops. A
  visionkit item without a mask becomes an all-False mask, and an all-False mask comes back as no mask;
* points: ``data["point_xy"]`` ``(N, 2)``, when there are points.

Round trips are exact on boxes, labels, scores and mask pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.detections import Detections
from ..core.maskcrop import MaskCrop
from ..errors import ConfigError

__all__ = ["to_supervision", "from_supervision"]


def _sv() -> Any:
    try:
        import supervision
    except ImportError as exc:
        raise ConfigError('supervision interop needs the supervision package: '
                          'pip install "visionkit[supervision]"') from exc
    return supervision


def to_supervision(detections: Detections, classes: Sequence[str] | None = None) -> Any:
    """A ``supervision.Detections`` with the same boxes, labels, scores and masks.

    Args:
        classes: names whose index is ``class_id``; default: the sorted distinct labels. A label not in
            it raises :class:`ConfigError`.
    """
    sv = _sv()
    labels = [str(v) for v in detections.labels]
    names = sorted(set(labels)) if classes is None else [str(c) for c in classes]
    index = {n: i for i, n in enumerate(names)}
    missing = sorted(set(labels) - set(index))
    if missing:
        raise ConfigError(f"labels {missing} are not in classes {names}")
    masks = None
    if detections.masks is not None:
        width, height = detections.image_wh
        masks = np.zeros((len(detections), height, width), dtype=bool)
        for i, crop in enumerate(detections.masks):
            if crop is not None:
                x0, y0, x1, y1 = crop.xyxy
                masks[i, y0:y1, x0:x1] = crop.data
    data: dict[str, np.ndarray] = {"class_name": np.asarray(labels, dtype=object).astype(str)}
    if detections.points is not None:
        data["point_xy"] = np.asarray(detections.points, dtype=np.float64)
    return sv.Detections(
        xyxy=np.asarray(detections.xyxy, dtype=np.float64).reshape(-1, 4).copy(),
        mask=masks,
        confidence=None if detections.scores is None else np.asarray(detections.scores).copy(),
        class_id=np.asarray([index[n] for n in labels], dtype=int),
        data=data,
    )


def from_supervision(sv_detections: Any, image_wh: tuple[int, int] | None = None,
                     classes: Sequence[str] | None = None) -> Detections:
    """A visionkit :class:`Detections` from a ``supervision.Detections``.

    Args:
        image_wh: ``(width, height)``; optional when the detections carry masks (taken from their shape).
        classes: names for ``class_id`` when ``data["class_name"]`` is absent; without either, the label
            is the class id as text.

    Raises:
        ConfigError: supervision is missing, no image size is known, or a mask's size differs from it.
    """
    _sv()
    mask = getattr(sv_detections, "mask", None)
    if image_wh is None:
        if mask is None:
            raise ConfigError("from_supervision needs image_wh when the detections have no masks")
        image_wh = (int(mask.shape[2]), int(mask.shape[1]))
    width, height = (int(v) for v in image_wh)
    n = len(sv_detections)
    data = getattr(sv_detections, "data", {}) or {}
    if "class_name" in data:
        labels = [str(v) for v in data["class_name"]]
    elif sv_detections.class_id is not None and classes is not None:
        labels = [str(classes[int(c)]) for c in sv_detections.class_id]
    elif sv_detections.class_id is not None:
        labels = [str(int(c)) for c in sv_detections.class_id]
    else:
        labels = [""] * n
    crops = None
    if mask is not None:
        if mask.shape[1:] != (height, width):
            raise ConfigError(f"masks are {mask.shape[2]}x{mask.shape[1]}, the image is {width}x{height}")
        crops = tuple(_crop(mask[i]) for i in range(n))
        if all(c is None for c in crops):
            crops = None
    xyxy = np.clip(np.asarray(sv_detections.xyxy, dtype=np.float64).reshape(-1, 4), 0,
                   [width, height, width, height])
    points = data.get("point_xy")
    return Detections(xyxy, labels, (width, height),
                      scores=None if sv_detections.confidence is None else sv_detections.confidence,
                      points=None if points is None else np.asarray(points, dtype=np.float64),
                      masks=crops)


def _crop(full: np.ndarray) -> MaskCrop | None:
    rows = np.flatnonzero(full.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(full.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return MaskCrop(np.ascontiguousarray(full[y0:y1, x0:x1], dtype=bool), x0, y0)
