"""Drop near-duplicate detections within one image, without confidence scores.

A VLM's answer has no scores, so score-based NMS (supervision's ``with_nms`` asserts that confidence
exists) cannot run. visionkit uses the answer order instead:

**Survivor rule.** Detections are visited in answer order. A detection is dropped when it overlaps an
earlier *surviving* detection of the same class (labels compared after
:func:`visionkit.core.text.normalize_label`; any class with ``class_agnostic=True``) with IoU ``>= iou``.
So the
first mention of an object survives, unchanged, and the repeats that answers produce when they loop near
the output limit are the ones dropped. This is greedy NMS with answer order as the priority.

**IoU.** Mask IoU when both detections have masks, computed on the crops' overlap window (see
:mod:`visionkit.core.overlap`); box IoU otherwise (vectorized over all pairs). A point (a zero-area box)
overlaps nothing and is never dropped.

Every drop adds a :class:`~visionkit.core.detections.ParseWarning` with ``field="dedupe"`` naming both
detection indices (positions in the Detections given, which equal the answer's item indices when the
parser skipped nothing). :func:`visionkit.to_coco` counts them as ``info["visionkit"]["dedupe_merged"]``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .detections import Detections, ParseWarning
from .overlap import box_iou, crop_iou
from .text import normalize_label

__all__ = ["DEDUPE_FIELD", "dedupe"]

#: ``ParseWarning.field`` of the warnings that :func:`dedupe` adds.
DEDUPE_FIELD = "dedupe"


def dedupe(dets: Detections, iou: float = 0.7, class_agnostic: bool = False) -> Detections:
    """Drop near-duplicates from ``dets`` (see the module docstring for the rule). Returns a new Detections.

    Args:
        dets: detections of one image.
        iou: a detection overlapping an earlier survivor with IoU ``>= iou`` is dropped; in ``(0, 1]``.
        class_agnostic: compare detections of different labels too.

    Raises:
        ConfigError: ``iou`` outside ``(0, 1]``.
    """
    if not isinstance(iou, (int, float)) or not 0 < iou <= 1:
        raise ConfigError(f"dedupe iou must be in (0, 1], got {iou!r}")
    n = len(dets)
    if n < 2:
        return dets
    masks = dets.masks if dets.masks is not None else (None,) * n
    boxes = box_iou(dets.xyxy, dets.xyxy)
    classes = np.zeros(n, dtype=np.intp) if class_agnostic else np.unique(
        [normalize_label(label) for label in dets.labels], return_inverse=True)[1].reshape(-1)
    areas = np.array([-1 if m is None else m.area() for m in masks])
    has_mask = areas >= 0
    # Mask IoU can only reach `iou` when the crops' windows overlap and the smaller mask is at least
    # `iou` times the larger one (inter <= min area, union >= max area): cheap vectorized pruning.
    both = has_mask[:, None] & has_mask[None, :]
    if both.any():
        win = np.array([m.xyxy if m is not None else (0, 0, 0, 0) for m in masks], dtype=np.int64)
        x0, y0, x1, y1 = (win[:, k] for k in range(4))
        windows_meet = ((np.minimum.outer(x1, x1) > np.maximum.outer(x0, x0))
                        & (np.minimum.outer(y1, y1) > np.maximum.outer(y0, y0)))
        lo, hi = np.minimum.outer(areas, areas), np.maximum.outer(areas, areas)
        # lo / hi, not lo >= iou * hi: division rounds monotonically, so a pair whose computed
        # inter / union reaches `iou` is never pruned at the boundary.
        ratio_ok = (hi > 0) & (lo / np.maximum(hi, 1) >= iou)
    else:
        windows_meet = ratio_ok = both
    # Pairs that can reach `iou`: a mask pair passing the pruning, or a box pair already at `iou`.
    possible = (classes[:, None] == classes[None, :]) & np.where(both, windows_meet & ratio_ok, boxes >= iou)
    alive = np.zeros(n, dtype=bool)
    warnings = list(dets.warnings)
    for j in range(n):
        hit = None
        for i in np.flatnonzero(possible[:j, j] & alive[:j]):  # earlier survivors, in answer order
            if both[i, j]:
                value, kind = crop_iou(masks[i], masks[j], int(areas[i]), int(areas[j])), "mask"
            else:
                value, kind = float(boxes[i, j]), "box"
            if value >= iou:
                hit = (int(i), value, kind)
                break
        if hit is None:
            alive[j] = True
            continue
        i, value, kind = hit
        warnings.append(ParseWarning(None, DEDUPE_FIELD,
                                     f"detection {j} ({dets.labels[j]!r}) duplicates detection {i} "
                                     f"({dets.labels[i]!r}): {kind} IoU {value:.3f} >= {iou:g}; "
                                     f"kept {i}, dropped {j}"))
    if alive.all():
        return dets
    out = dets[alive]
    return Detections(out.xyxy, out.labels, out.image_wh, scores=out.scores, points=out.points,
                      masks=out.masks, warnings=tuple(warnings))
