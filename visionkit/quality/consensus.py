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

The runs are read through :mod:`visionkit.formats.coco_stream`: checked first, then streamed side by side
in image order, one image's objects matched at a time (:func:`write_consensus` writes the merged file the
same way, so memory holds a few hundred bytes per image). Runs that list their images in different
orders still work: an image a run lists early waits in memory until the others reach it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.detections import Detections
from ..core.maskcrop import MaskCrop
from ..core.overlap import majority_crop, pair_iou
from ..core.text import normalize_label
from ..errors import ConfigError, ExportError, InputError, VisionkitError
from ..formats.coco import CategoryMap, to_coco
from ..formats.coco_stream import CocoFile, ImageRecord
from ..formats.coco_write import CocoWriter
from .datasets import DatasetSource, ann_to_crop

__all__ = ["DEFAULT_IOU", "consensus", "consensus_items", "match", "write_consensus"]

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


def _decode(coco: CocoFile, record: ImageRecord, run: int) -> list[_Obj]:
    """The objects of one image of one run: box from ``bbox`` (clipped), mask trimmed to its pixels."""
    width, height = record.image.width, record.image.height
    objs = []
    for ann, k in zip(record.annotations, record.indices):
        x, y, w, h = (float(v) for v in ann["bbox"])
        box = np.clip(np.array([x, y, x + w, y + h]), 0, [width, height, width, height])
        try:
            mask = ann_to_crop(ann, width, height)
        except VisionkitError as exc:
            raise InputError(f"{coco.name}: annotations[{k}].segmentation: {exc}") from exc
        objs.append(_Obj(run, coco.names[ann["category_id"]], box, mask))
    return objs


class _Lockstep:
    """Each run's records, taken by file name in the union order; runs that list their images in the same
    order are streamed side by side, one image each. An image a run lists earlier than the others waits
    in a buffer (only runs in different orders hold more than one)."""

    def __init__(self, files: list[CocoFile]):
        self._files = files
        self._iters = [f.records() for f in files]
        self._buffers: list[dict[str, ImageRecord]] = [{} for _ in files]

    def take(self, k: int, file_name: str) -> ImageRecord:
        buffer = self._buffers[k]
        if file_name in buffer:
            return buffer.pop(file_name)
        for record in self._iters[k]:
            if record.image.file_name == file_name:
                return record
            buffer[record.image.file_name] = record
        raise InputError(f"{self._files[k].name} changed while it was being read ({file_name} is gone)")


_Item = tuple[str, tuple[int, int], Detections]


def consensus_items(runs: Sequence[DatasetSource], *, iou: float = DEFAULT_IOU,
                    names: Sequence[str] | None = None) -> tuple[Iterator[_Item], dict, Counter]:
    """The streaming core of :func:`consensus`: ``(items, report, labels)``.

    ``items`` yields ``(file_name, (width, height), Detections)`` one image at a time; ``report`` is
    filled in as they are taken (complete once ``items`` is exhausted); ``labels`` counts every label the
    runs use (the merged labels are among them). The runs are checked before this returns.
    """
    if len(runs) < 2:
        raise ConfigError(f"consensus needs at least two runs, got {len(runs)}")
    if not 0 < iou <= 1:
        raise ConfigError(f"consensus iou must be in (0, 1], got {iou}")
    if names is None:
        names = [os.fspath(r) if not isinstance(r, Mapping) else f"run {k + 1}" for k, r in enumerate(runs)]
    files = [CocoFile(r, what="run") for r in runs]
    sizes: dict[str, tuple[int, int]] = {}
    present: dict[str, list[int]] = {}
    for k, coco in enumerate(files):
        for image in coco.images:
            wh = sizes.setdefault(image.file_name, (image.width, image.height))
            if wh != (image.width, image.height):
                raise InputError(f"{image.file_name}: has different sizes in the runs ({wh[0]}x{wh[1]} and "
                                 f"{image.width}x{image.height} in {coco.name})")
            present.setdefault(image.file_name, []).append(k)
    labels: Counter = Counter()
    for coco in files:
        labels.update({coco.names[c]: n for c, n in coco.counts.items()})
    report = {"runs": list(names), "iou": iou, "images": 0, "objects": 0, "votes": {},
              "label_disagreements": []}

    def items() -> Iterator[_Item]:
        votes: Counter = Counter()
        lockstep = _Lockstep(files)
        for file_name, runs_with in present.items():
            wh = sizes[file_name]
            groups = _merge_image([_decode(files[k], lockstep.take(k, file_name), k) for k in runs_with], iou)
            dets = _merge_groups(groups, file_name, wh, len(runs_with), names, votes,
                                 report["label_disagreements"])
            report["images"] += 1
            report["objects"] += len(dets)
            report["votes"] = {str(k): votes[k] for k in sorted(votes)}
            yield file_name, wh, dets

    return items(), report, labels


def _merge_groups(groups: list[list[_Obj]], file_name: str, wh: tuple[int, int], runs: int,
                  names: Sequence[str], votes: Counter, disagreements: list) -> Detections:
    boxes, labels, scores, masks = [], [], [], []
    for group in groups:
        label, shown = _vote_label(group)
        if len({normalize_label(s) for s in shown}) > 1:
            disagreements.append({"file_name": file_name, "object": len(labels), "label": label,
                                  "labels": shown, "runs": [names[m.run] for m in group]})
        votes[len(group)] += 1
        boxes.append(np.median(np.stack([m.xyxy for m in group]), axis=0))
        labels.append(label)
        scores.append(round(len(group) / runs, 4))
        masks.append(majority_crop([m.mask for m in group if m.mask is not None]))
    return Detections(np.array(boxes).reshape(-1, 4), labels, wh, scores=np.array(scores),
                      masks=tuple(masks) if any(m is not None for m in masks) else None)


def _info(runs: int, names: Sequence[str], iou: float) -> dict:
    return {"description": f"visionkit consensus of {runs} runs", "consensus": {
        "runs": list(names), "iou": iou, "score": "fraction of runs that found the object"}}


def consensus(runs: Sequence[DatasetSource], *, iou: float = DEFAULT_IOU,
              names: Sequence[str] | None = None) -> tuple[dict, dict]:
    """Merge two or more runs into one COCO dataset whose scores are the fraction of runs that agree.

    The merged dataset is built in memory; :func:`write_consensus` streams it to a file instead.

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
        InputError: an unreadable or malformed run (naming the file, the index and the field), or one
            image with different sizes in two runs.
    """
    items, report, _ = consensus_items(runs, iou=iou, names=names)
    dataset = to_coco(list(items), info=_info(len(runs), report["runs"], iou))
    return dataset, report


def write_consensus(runs: Sequence[DatasetSource], path: str | os.PathLike, *, iou: float = DEFAULT_IOU,
                    names: Sequence[str] | None = None) -> dict:
    """:func:`consensus` streamed into the COCO file ``path`` (written atomically), one image at a time;
    returns the report. The runs are checked before ``path``'s folder is made. The file's categories are
    every label the runs use, sorted (see :class:`~visionkit.formats.coco.CategoryMap`)."""
    items, report, labels = consensus_items(runs, iou=iou, names=names)  # the runs are checked here
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the output folder {path.parent}: {exc}") from exc
    cats = CategoryMap().fit(labels.elements())
    with CocoWriter(path, cats, info=_info(len(runs), report["runs"], iou)) as writer:
        for file_name, wh, dets in items:
            writer.add(file_name, wh, dets)
    return report
