"""Consensus: a score where the model gives none, from two or more runs over the same images.

The runs can differ in model, prompt, temperature or day, and can be online, batch or replay runs: any
COCO dataset (a run folder's ``annotations.json``) works.

Per image (joined by ``file_name``):

1. **Matching.** Objects are matched across runs by IoU, class-agnostic (so label disagreements can be
   seen): mask IoU when both have masks, else box IoU (:func:`visionkit.core.overlap.pair_iou`). The
   first run's objects start the groups; each further run is matched to the groups by Hungarian matching
   (``scipy.optimize.linear_sum_assignment``) on the mean IoU with the group's members, and a pair is kept
   only when that IoU is ``>= iou``. Unmatched objects start new groups. A group holds at most one object
   per run.
2. **Score** = the fraction of runs that found the object: group size / number of runs that have the image
   (an image missing from a run, e.g. a failed image, does not count against its objects).
3. **Label** = the most common label in the group (compared after
   :func:`visionkit.core.text.normalize_label`); a tie goes to the earliest run. Groups whose members disagree
   are reported per object.
4. **Box** = the element-wise median of the members' boxes. **Mask** = per-pixel vote of the members'
   masks, on crops (:func:`visionkit.core.overlap.majority_crop`: at least half of the masks).

The merged dataset is ordinary COCO with a ``score`` on every annotation, so
:func:`visionkit.to_results` turns it into a valid results file and AP against ground truth ranks by
agreement.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.detections import Detections
from ..core.maskcrop import MaskCrop
from ..core.overlap import majority_crop, pair_iou
from ..core.text import normalize_label
from ..errors import ConfigError, InputError
from ..formats.coco import to_coco
from .datasets import DatasetSource, ann_to_crop, category_names, load_dataset

__all__ = ["DEFAULT_IOU", "consensus", "match"]

DEFAULT_IOU = 0.5


@dataclass
class _Obj:
    run: int
    label: str
    xyxy: np.ndarray
    mask: MaskCrop | None


def match(similarity: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Row/column pairs of a maximum-total-similarity assignment whose similarity is ``>= threshold``.

    Pairs below the threshold are set to 0 before solving, so a weak pair never displaces strong ones.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.size == 0:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:
        raise ConfigError("consensus needs scipy: pip install 'visionkit[quality]'") from exc
    usable = np.where(similarity >= threshold, similarity, 0.0)
    rows, cols = linear_sum_assignment(usable, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if similarity[r, c] >= threshold]


def _objects(data: Mapping, run: int) -> dict[str, tuple[tuple[int, int], list[dict]]]:
    """``{file_name: ((width, height), annotations)}`` of one run (masks decoded later, per image)."""
    names = category_names(data)
    by_id: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_id.setdefault(int(ann["image_id"]), []).append(ann)
    out = {}
    for image in data["images"]:
        anns = by_id.get(int(image["id"]), [])
        for ann in anns:
            ann["_label"] = names.get(int(ann["category_id"]), str(ann["category_id"]))
        out[str(image["file_name"])] = ((int(image["width"]), int(image["height"])), anns)
    return out


def _decode(anns: list[dict], run: int, wh: tuple[int, int]) -> list[_Obj]:
    width, height = wh
    objs = []
    for ann in anns:
        x, y, w, h = (float(v) for v in ann["bbox"])
        box = np.clip(np.array([x, y, x + w, y + h]), 0, [width, height, width, height])
        objs.append(_Obj(run, ann["_label"], box, ann_to_crop(ann, width, height)))
    return objs


def _vote_label(members: list[_Obj]) -> tuple[str, dict[str, int]]:
    votes = Counter(normalize_label(m.label) for m in members)
    best = max(votes.values())
    winner = next(normalize_label(m.label) for m in members if votes[normalize_label(m.label)] == best)
    spelling = next(m.label for m in members if normalize_label(m.label) == winner)
    shown = Counter(m.label for m in members)
    return spelling, dict(sorted(shown.items()))


def _merge_image(objs_by_run: list[list[_Obj]], iou: float) -> list[list[_Obj]]:
    groups: list[list[_Obj]] = []
    for objs in objs_by_run:
        if not groups:
            groups = [[o] for o in objs]
            continue
        sim = np.array([[np.mean([pair_iou(m.xyxy, o.xyxy, m.mask, o.mask) for m in g]) for o in objs]
                        for g in groups]).reshape(len(groups), len(objs))
        taken = set()
        for g, o in match(sim, iou):
            groups[g].append(objs[o])
            taken.add(o)
        groups.extend([o] for k, o in enumerate(objs) if k not in taken)
    return groups


def consensus(runs: Sequence[DatasetSource], *, iou: float = DEFAULT_IOU,
              names: Sequence[str] | None = None) -> tuple[dict, dict]:
    """Merge two or more runs into one COCO dataset whose scores are the fraction of runs that agree.

    Args:
        runs: run folders, COCO files or dataset dicts, over the same images.
        iou: minimum IoU for two objects of different runs to be the same object, in ``(0, 1]``.
        names: how to call the runs in the report (default: their paths, or ``run 1``, ``run 2``, ...).

    Returns:
        ``(dataset, report)``: the merged COCO dict (every annotation has ``score``), and a JSON-ready
        report with ``runs``, ``iou``, ``images``, ``objects``, ``votes`` (objects per number of runs
        that found them) and ``label_disagreements`` (per object: file, the object's index among the
        image's merged objects, the chosen label and every run's label).

    Raises:
        ConfigError: fewer than two runs, or ``iou`` outside ``(0, 1]``.
        InputError: an unreadable run, or one image with different sizes in two runs.
    """
    if len(runs) < 2:
        raise ConfigError(f"consensus needs at least two runs, got {len(runs)}")
    if not 0 < iou <= 1:
        raise ConfigError(f"consensus iou must be in (0, 1], got {iou}")
    if names is None:
        names = [os.fspath(r) if not isinstance(r, Mapping) else f"run {k + 1}" for k, r in enumerate(runs)]
    per_run = [_objects(load_dataset(r, what="run"), k) for k, r in enumerate(runs)]
    files: dict[str, None] = {}
    for run in per_run:
        files.update(dict.fromkeys(run))
    items, disagreements, votes = [], [], Counter()
    for file_name in files:
        present = [k for k, run in enumerate(per_run) if file_name in run]
        sizes = {per_run[k][file_name][0] for k in present}
        if len(sizes) > 1:
            raise InputError(f"{file_name}: has different sizes in the runs "
                             f"({', '.join(f'{w}x{h}' for w, h in sorted(sizes))})")
        wh = sizes.pop()
        groups = _merge_image([_decode(per_run[k][file_name][1], k, wh) for k in present], iou)
        boxes, labels, scores, masks = [], [], [], []
        for group in groups:
            label, shown = _vote_label(group)
            if len({normalize_label(s) for s in shown}) > 1:
                disagreements.append({"file_name": file_name, "object": len(labels), "label": label,
                                      "labels": shown, "runs": [names[m.run] for m in group]})
            votes[len(group)] += 1
            boxes.append(np.median(np.stack([m.xyxy for m in group]), axis=0))
            labels.append(label)
            scores.append(round(len(group) / len(present), 4))
            masks.append(majority_crop([m.mask for m in group if m.mask is not None]))
        dets = Detections(np.array(boxes).reshape(-1, 4), labels, wh, scores=np.array(scores),
                          masks=tuple(masks) if any(m is not None for m in masks) else None)
        items.append((file_name, wh, dets))
    report = {"runs": list(names), "iou": iou, "images": len(items),
              "objects": sum(len(d) for _, _, d in items),
              "votes": {str(k): votes[k] for k in sorted(votes)},
              "label_disagreements": disagreements}
    info = {"description": f"visionkit consensus of {len(runs)} runs", "consensus": {
        "runs": list(names), "iou": iou, "score": "fraction of runs that found the object"}}
    return to_coco(items, info=info), report
