"""Evaluate predictions against ground truth with COCOeval, joined by file name and category name.

* **Images** are joined by ``file_name``, not by id (ids differ between tools), exact names first. A
  prediction whose file name is not in the truth is then matched by its base name, but only when exactly
  one truth image has that base name, no other prediction has that truth image (by its exact name or its
  base name), so two predicted images are never joined onto one truth image; otherwise it is listed under
  ``unmatched_images`` and left out. Truth images with no prediction count as all missed. A file name
  listed twice in one dataset is an InputError.
* **Categories** are mapped by name with the same normalisation (case, spaces, simple plurals,
  :func:`visionkit.core.text.normalize_label`) and aliases as :func:`visionkit.to_coco`. The truth's ids are
  taken as they are, 0 included (Roboflow exports a supercategory with id 0). When two truth categories
  normalise to the same name and only one has truth objects (a Roboflow supercategory named like its
  class), that one is used; otherwise that is an InputError naming the truth file. Unmapped predictions
  are counted under ``unmapped_labels`` and left out.
* **Scores.** A VLM gives none. Predictions without a ``score`` get :data:`DEFAULT_SCORE` (1.0). With one
  constant score there is no ranking, so AP then measures precision and recall at a single operating point,
  not a PR curve; the result says so in ``notes``. Consensus scores (:mod:`visionkit.quality.consensus`)
  make the curve real.
* **COCOeval** from pycocotools, or faster-coco-eval when installed (``backend="auto"``); both give the
  same numbers. Segmentation results are compressed RLE without ``bbox`` (with a ``bbox``, pycocotools
  takes the box area as the mask area); predictions without a mask are left out of ``segm`` and counted.
  An empty result list is evaluated without ``loadRes`` (which crashes on ``[]``). Both files are streamed:
  only the predictions of the truth's images are kept, and COCOeval runs on a chunk of truth images at a
  time, merged before one ``accumulate()`` (:mod:`visionkit.quality._cocoeval_chunks`), so memory follows
  a chunk, not the truth or the run; the numbers are those of one COCOeval over the whole truth.
* **Label confusions:** a truth object that no prediction of its class matches (IoU >= 0.5) but a
  prediction of another class does, counted per (truth, predicted) pair.
* **Per image:** matches at IoU 0.5 (greedy by score, as COCO does), with precision, recall and F1, so a
  report can show the worst images first.
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..core.text import normalize_label
from ..errors import ConfigError, InputError, VisionkitError
from ..formats.coco_read import segmentation_rle
from ..formats.coco_stream import CocoFile, ImageEntry
from ._cocoeval_chunks import ChunkedCocoEval, chunks
from .datasets import DatasetSource, ann_rle, category_names, dataset_path

__all__ = ["BACKENDS", "DEFAULT_SCORE", "STAT_NAMES", "evaluate"]

#: Score given to predictions that have none (see the module docstring).
DEFAULT_SCORE = 1.0
BACKENDS = ("auto", "pycocotools", "faster-coco-eval")
#: The 12 numbers of COCOeval.summarize(), in order.
STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
              "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")
MATCH_IOU = 0.5


def _faster_available() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def _backend(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "auto":
        return "faster-coco-eval" if _faster_available() else "pycocotools"
    if name == "faster-coco-eval" and not _faster_available():
        raise ConfigError("backend 'faster-coco-eval' is not installed (pip install faster-coco-eval)")
    return name


class _TruthCategories:
    """Label -> the truth's category id, by normalised name and aliases; the truth's ids as they are."""

    def __init__(self, categories: list[Mapping], used: Counter, aliases: Mapping[str, str] | None,
                 name: str):
        self._index: dict[str, int] = {}
        owner: dict[str, dict] = {}
        ids: dict[int, str] = {}
        for pos, cat in enumerate(categories):
            try:
                cat_id = int(cat["id"])
            except (TypeError, ValueError) as exc:
                raise InputError(f"{name}: categories[{pos}] has id {cat['id']!r}; expected an "
                                 "integer") from exc
            label = str(cat["name"])
            if cat_id in ids:
                raise InputError(f"{name}: category id {cat_id} is used twice ({ids[cat_id]!r} and "
                                 f"{label!r})")
            ids[cat_id] = label
            key = normalize_label(label)
            other = owner.get(key)
            if other is None:
                owner[key], self._index[key] = {"id": cat_id, "name": label}, cat_id
                continue
            mine, theirs = used[str(cat_id)] > 0, used[str(other["id"])] > 0
            if mine == theirs:
                raise InputError(
                    f"{name}: categories {other['name']!r} (id {other['id']}) and {label!r} (id {cat_id}) "
                    "are one name once case, spaces and plurals are ignored, so a predicted label cannot be "
                    "mapped to one of them; rename or merge one")
            if mine:  # the other has no truth objects (e.g. a supercategory): this one is the class
                owner[key], self._index[key] = {"id": cat_id, "name": label}, cat_id
        for alias, target in (aliases or {}).items():
            cat_id = self._index.get(normalize_label(target))
            if cat_id is None:
                raise ConfigError(f"alias {alias!r} points to {target!r}, which is not a category of {name}")
            self._index[normalize_label(alias)] = cat_id

    def lookup(self, label: str) -> int | None:
        return self._index.get(normalize_label(label))


def _join_images(pred: list[ImageEntry], truth: list[ImageEntry]) -> tuple[dict[int, int], list[str]]:
    """``{pred image position: truth image position}`` by exact file name, then by an unambiguous base
    name (one truth image has it, and no other predicted image claims that truth image), and the unmatched
    names in prediction order. Each truth image is joined to at most one predicted image. (File names are
    unique within a file: the reader checks it.)"""
    exact = {t.file_name: t.pos for t in truth}
    pred_pos = {p.file_name: p.pos for p in pred}
    base: dict[str, list[int]] = {}
    for file_name, truth_pos in exact.items():
        base.setdefault(PurePosixPath(file_name).name, []).append(truth_pos)
    joined = {pred_pos[n]: exact[n] for n in pred_pos if n in exact}
    claimed = set(joined.values())
    wanted: dict[int, list[str]] = {}  # truth position -> the predicted names whose base name points at it
    for file_name in pred_pos:
        if file_name not in exact:
            candidates = base.get(PurePosixPath(file_name).name, [])
            if len(candidates) == 1 and candidates[0] not in claimed:
                wanted.setdefault(candidates[0], []).append(file_name)
    for truth_pos, names in wanted.items():
        if len(names) == 1:
            joined[pred_pos[names[0]]] = truth_pos
    unmatched = [n for n, p in pred_pos.items() if p not in joined]
    return joined, unmatched


def _results(pred: CocoFile, truth: CocoFile, joined: dict[int, int], cats: _TruthCategories, iou_type: str,
             default_score: float, counts: Counter, unmapped: Counter) -> dict[int, list[dict]]:
    """COCO results rows in the truth's image and category ids, from the predictions of the joined images
    only (streamed: the other predictions are never kept), by truth image id."""
    rows: dict[int, list[dict]] = {}
    for record in pred.records(only=joined):
        src, dst = record.image, truth.images[joined[record.image.pos]]
        if record.annotations and (src.width, src.height) != (dst.width, dst.height):
            raise InputError(f"{src.file_name}: predicted on a {src.width}x{src.height} image, "
                             f"but the truth's {dst.file_name} is {dst.width}x{dst.height}")
        for ann, k in zip(record.annotations, record.indices):
            name = pred.names[ann["category_id"]]
            category_id = cats.lookup(name)
            if category_id is None:
                unmapped[name] += 1
                continue
            score = ann.get("score")
            if score is None:
                counts["no_score"] += 1
                score = default_score
            row: dict[str, Any] = {"image_id": dst.id, "category_id": category_id, "score": float(score)}
            if iou_type == "bbox":
                row["bbox"] = [float(v) for v in ann["bbox"]]
            else:
                rle = ann_rle(ann, dst.width, dst.height, what=f"{pred.name}: annotations[{k}].segmentation")
                if rle is None:
                    counts["no_mask"] += 1
                    continue
                row["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"]}
            rows.setdefault(dst.id, []).append(row)
    return rows


def _per_class(ev: Any, names: Mapping[int, str], gt_count: Counter, dt_count: Counter) -> list[dict]:
    precision = np.asarray(ev.eval["precision"])  # [T, R, K, A, M]
    cat_ids = [int(c) for c in ev.params.catIds]
    out = []
    for k, cat_id in enumerate(cat_ids):
        p = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        out.append({"category_id": cat_id, "name": names[cat_id], "truth": gt_count[cat_id],
                    "predicted": dt_count[cat_id],
                    "AP": float(p[p > -1].mean()) if (p > -1).any() else None,
                    "AP50": float(p50[p50 > -1].mean()) if (p50 > -1).any() else None})
    return out


def _ious(dts: list[dict], gts: list[dict], iou_type: str, size: tuple[int, int]) -> np.ndarray:
    if not dts or not gts:
        return np.zeros((len(dts), len(gts)))
    crowd = [int(bool(g.get("iscrowd"))) for g in gts]
    if iou_type == "bbox":
        return np.asarray(mask_utils.iou([d["bbox"] for d in dts], [g["bbox"] for g in gts], crowd))
    width, height = size
    g_rles = [segmentation_rle(g, height, width, error=InputError) for g in gts]  # checked by evaluate()
    g_rles = [r if r is not None else mask_utils.frPyObjects([list(g["bbox"])], height, width)[0]
              for r, g in zip(g_rles, gts)]
    return np.asarray(mask_utils.iou([d["segmentation"] for d in dts], g_rles, crowd))


def _per_image(chunk: list[tuple[Mapping, list[dict], list[dict]]], names: Mapping[int, str],
               iou_type: str, images: list[dict], confusions: Counter) -> None:
    """Per-image TP/FP/FN at IoU 0.5 (appended to ``images``) and the label confusions (counted), for a
    chunk of ``(truth image, its truth annotations, its results rows)``."""
    for image, gts, rows in chunk:
        image_id = int(image["id"])
        dts = sorted(rows, key=lambda r: -r["score"])
        iou = _ious(dts, gts, iou_type, (int(image["width"]), int(image["height"])))
        crowd = np.array([bool(g.get("iscrowd")) for g in gts], dtype=bool)
        same = np.array([[d["category_id"] == g["category_id"] for g in gts] for d in dts], dtype=bool)
        same = same.reshape(len(dts), len(gts))
        taken = np.zeros(len(gts), dtype=bool)
        tp = fp = 0
        for d in range(len(dts)):
            ok = same[d] & ~taken & (iou[d] >= MATCH_IOU)
            if ok.any():
                g = int(np.argmax(np.where(ok, iou[d], -1)))
                if not crowd[g]:
                    taken[g] = True
                    tp += 1
            else:
                fp += 1
        fn = int((~taken & ~crowd).sum())
        for g in np.flatnonzero(~taken & ~crowd):
            other = (~same[:, g]) & (iou[:, g] >= MATCH_IOU) if dts else np.zeros(0, bool)
            if other.any():
                d = int(np.argmax(np.where(other, iou[:, g], -1)))
                confusions[(names[int(gts[g]["category_id"])], names[dts[d]["category_id"]])] += 1
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
        images.append({"image_id": image_id, "file_name": str(image["file_name"]), "truth": tp + fn,
                       "predicted": len(dts), "tp": tp, "fp": fp, "fn": fn, "precision": precision,
                       "recall": recall, "f1": f1})


def evaluate(pred: DatasetSource, truth: DatasetSource, *, iou_type: str = "segm",
             aliases: Mapping[str, str] | None = None, default_score: float = DEFAULT_SCORE,
             backend: str = "auto") -> dict:
    """COCOeval of ``pred`` (a run folder, COCO file or dict) against ``truth``; a JSON-ready dict.

    Keys: ``iou_type``, ``backend``, ``stats`` (the 12 numbers), ``summary`` (name -> number),
    ``summary_text`` (COCOeval's printout), ``per_class``, ``confusions``, ``images`` (per image, worst F1
    first), ``unmatched_images``, ``unmapped_labels``, ``counts`` and ``notes``. See the module docstring.

    Raises:
        ConfigError: bad ``iou_type`` or ``backend``.
        InputError: unreadable or inconsistent inputs (the message names the file and field).
    """
    if iou_type not in ("segm", "bbox"):
        raise ConfigError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    backend = _backend(backend)
    # Both files are checked, then streamed: only the predictions of the images the truth names are kept,
    # and the truth is read a chunk of images at a time into COCOeval (see _cocoeval_chunks), so memory
    # follows a chunk of the truth, not the run.
    pred_file = CocoFile(pred, what="predictions")
    truth_file = CocoFile(truth, what="ground truth")
    truth_name = _source_name(truth, "ground truth")
    used, gt_count, truth_objects = _check_truth(truth_file, iou_type)
    cats = _TruthCategories(truth_file.categories, used, aliases, truth_name)
    names = category_names({"categories": truth_file.categories})
    joined, unmatched = _join_images(pred_file.images, truth_file.images)
    counts: Counter = Counter()
    unmapped: Counter = Counter()
    rows = _results(pred_file, truth_file, joined, cats, iou_type, default_score, counts, unmapped)
    n_rows = sum(len(r) for r in rows.values())
    dt_count = Counter(r["category_id"] for image_rows in rows.values() for r in image_rows)
    copy_truth = isinstance(truth, Mapping)  # COCOeval writes into the truth's annotations
    images: list[dict] = []
    confusions: Counter = Counter()
    try:
        coco = ChunkedCocoEval((i.id for i in truth_file.images), truth_file.categories, iou_type, backend)
        records = ((_image_dict(r.image), copy.deepcopy(r.annotations) if copy_truth else r.annotations,
                    rows.pop(r.image.id, [])) for r in truth_file.records(keypoints=True))
        for chunk in chunks(records):
            coco.add([c[0] for c in chunk], [a for c in chunk for a in c[1]],
                     [r for c in chunk for r in c[2]])
            _per_image(chunk, names, iou_type, images, confusions)
        ev, text = coco.finish()
    except VisionkitError as exc:  # a truth mask that does not decode
        raise InputError(f"{truth_file.name}: {exc}") from exc
    stats = [float(v) for v in ev.stats[:12]]
    images.sort(key=lambda r: (r["f1"] if r["f1"] is not None else 2.0, r["file_name"]))
    per_image_max = max((r["predicted"] for r in images), default=0)
    notes = []
    if counts["no_score"]:
        notes.append(f"{counts['no_score']} of {n_rows + counts['no_mask']} predictions have no score and "
                     f"were given {default_score:g}: with one constant score there is no ranking, so AP "
                     "measures precision and recall at one operating point, not a PR curve")
    if counts["no_mask"]:
        notes.append(f"{counts['no_mask']} predictions have no mask and are left out of segm evaluation")
    if unmatched:
        notes.append(f"{len(unmatched)} predicted images are not in the ground truth and were left out")
    if unmapped:
        notes.append(f"{sum(unmapped.values())} predictions have labels that map to no truth category")
    if per_image_max > 100:
        notes.append("some images have more than 100 predictions; COCOeval (maxDets=100) keeps the 100 "
                     "with the highest scores")
    return {
        "iou_type": iou_type, "backend": backend,
        "stats": stats, "summary": dict(zip(STAT_NAMES, stats)), "summary_text": text,
        "per_class": _per_class(ev, names, gt_count, dt_count),
        "confusions": [{"truth": t, "predicted": p, "count": n}
                       for (t, p), n in sorted(confusions.items(), key=lambda kv: (-kv[1], kv[0]))],
        "images": images,
        "unmatched_images": unmatched,
        "unmapped_labels": dict(sorted(unmapped.items())),
        "counts": {"truth_images": len(truth_file.images), "predicted_images": len(pred_file.images),
                   "joined_images": len(joined), "results": n_rows, "truth_objects": truth_objects,
                   **{k: v for k, v in counts.items() if v}},
        "notes": notes,
    }


def _check_truth(truth: CocoFile, iou_type: str) -> tuple[Counter, Counter, int]:
    """One streamed pass over the truth: the fields COCOeval reads are there and RLE counts decode to the
    image's size. Returns the annotations per category id (as text), the non-crowd ones per category id,
    and their total."""
    used: Counter = Counter()
    gt_count: Counter = Counter()
    first: dict[int, int] = {}  # annotation id -> where it was first used
    for record in truth.records(keypoints=True):
        for ann, pos in zip(record.annotations, record.indices):
            for key in ("id", "area", "iscrowd"):  # COCOeval reads them; say so instead of a KeyError
                if key not in ann:
                    raise InputError(f"{truth.name}: annotations[{pos}].{key}: expected a value (COCOeval "
                                     "needs it); the field is missing")
            # COCOeval indexes the truth by annotation id: a repeated id silently scores another
            # image's object (and, evaluated in chunks, a different one per chunking)
            if first.setdefault(ann["id"], pos) != pos:
                raise InputError(f"{truth.name}: annotations[{pos}].id: expected an id no other annotation "
                                 f"has; {ann['id']} is also the id of annotations[{first[ann['id']]}]")
            what = f"{truth.name}: annotations[{pos}].segmentation"
            if isinstance(ann.get("segmentation"), Mapping):  # pycocotools trusts RLE counts: check them
                ann_rle(ann, record.image.width, record.image.height, what=what)
            elif iou_type == "segm" and not ann.get("segmentation") and "keypoints" not in ann:
                raise InputError(f"{what}: expected a mask (polygons or RLE), which COCOeval's segm "
                                 f"evaluation needs; got {ann.get('segmentation', 'nothing')!r} (or evaluate "
                                 "with bbox)")
            used[str(ann["category_id"])] += 1
            if not ann.get("iscrowd"):
                gt_count[int(ann["category_id"])] += 1
    return used, gt_count, sum(gt_count.values())


def _image_dict(image: ImageEntry) -> dict:
    return {"id": image.id, "file_name": image.file_name, "width": image.width, "height": image.height}


def _source_name(source: DatasetSource, what: str) -> str:
    """How an error names a dataset: its file, or ``the <what> dict``."""
    return f"the {what} dict" if isinstance(source, Mapping) else f"{what} {dataset_path(source)}"


def default_eval_path(pred: str | os.PathLike) -> str:
    """Where ``visionkit eval`` writes ``eval.json``: inside a run folder, else beside the COCO file."""
    path = os.fspath(pred)
    return os.path.join(path if os.path.isdir(path) else os.path.dirname(path) or ".", "eval.json")
