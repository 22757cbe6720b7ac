"""COCOeval in chunks of images, merged before one ``accumulate()``: memory follows a chunk, not the truth.

COCOeval's ``evaluate()`` works per (image, category): the IoUs, the greedy matches and the
``evalImgs`` entries of one image never look at another image. Only ``accumulate()`` pools the images
(per category and area range it concatenates every image's detections and sorts them by score). So the
truth is evaluated a chunk of images at a time (:data:`CHUNK_IMAGES` images or :data:`CHUNK_OBJECTS`
truth + predicted objects, whichever comes first), each chunk's per-image results are kept in compact
form, and one ``accumulate()`` and ``summarize()`` run over all of them, with the parameters of an
evaluation of every truth image at once. The numbers are COCOeval's own (its ``accumulate`` and
``summarize`` run unchanged); ``tests/test_eval.py`` checks them against one whole-truth COCOeval.

* **pycocotools** keeps ``evalImgs`` as a list of dicts (``dtScores``, ``dtMatches``, ``gtIgnore``,
  ``dtIgnore`` ...; about 1 KB each, four per image and category present). Per chunk only what
  ``accumulate()`` reads is kept, in flat arrays: the scores (float64), whether each detection is matched
  (``dtMatches != 0``, which is all ``accumulate`` asks of it, so a truth object with id 0 counts as
  unmatched exactly as in pycocotools) and ignored at each IoU threshold (bool), and the number of
  non-ignored truth objects. :class:`_EvalImgs` hands ``accumulate()`` each entry as a dict built on
  demand.
* **faster-coco-eval** keeps its per-image results in C++ (``ImageEvaluation``, ``separate_eval=True``,
  about 2 KB each: too many to keep); the same four things are read from each one's pickled state and
  kept in the same arrays. Its C++ ``accumulate`` takes every ImageEvaluation at once, so it is called
  once per (category, area range) with that slice's entries rebuilt (:func:`_faster_accumulate`):
  https://github.com/MiXaiLL76/faster_coco_eval, ``faster_eval_api.py``.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["CHUNK_IMAGES", "CHUNK_OBJECTS", "ChunkedCocoEval", "chunks"]

#: A chunk ends after this many truth images, or this many truth + predicted objects.
CHUNK_IMAGES = 100
CHUNK_OBJECTS = 2_500


def _classes(backend: str) -> tuple[Any, Any]:
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCO
        from faster_coco_eval import COCOeval_faster as COCOeval
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    return COCO, COCOeval


class _EvalImgs:
    """pycocotools' ``evalImgs`` (a K x A x I list of dicts or None), rebuilt one entry at a time from the
    compact arrays (see the module docstring); ``accumulate()`` only indexes it, one (category, area)
    block of I images after another, so each block's positions are looked up once."""

    def __init__(self, index: np.ndarray, starts: np.ndarray, scores: np.ndarray, matched: np.ndarray,
                 ignored: np.ndarray, npig: np.ndarray, blocks: int, n_img: int):
        self._index, self._starts, self._scores = index, starts, scores
        self._matched, self._ignored, self._npig = matched, ignored, npig
        self._blocks, self._n_img = blocks, n_img
        self._block, self._dense = -1, np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self._blocks * self._n_img

    def block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """The image positions of a (category, area) block that have an entry, and those entries."""
        lo, hi = np.searchsorted(self._index, [block * self._n_img, (block + 1) * self._n_img])
        return self._index[lo:hi] - block * self._n_img, np.arange(lo, hi)

    def entry(self, j: int) -> dict:
        a, b = self._starts[j], self._starts[j + 1]
        return {"dtScores": self._scores[a:b], "dtMatches": self._matched[:, a:b],
                "dtIgnore": self._ignored[:, a:b], "gtIgnore": np.zeros(int(self._npig[j]), dtype=bool)}

    def __getitem__(self, key: int) -> dict | None:
        block, i = divmod(int(key), self._n_img)
        if block != self._block:
            positions, entries = self.block(block)
            self._block, self._dense = block, np.full(self._n_img, -1, np.int64)
            self._dense[positions] = entries
        j = int(self._dense[i])
        return None if j < 0 else self.entry(j)


class ChunkedCocoEval:
    """Feed it chunks (:meth:`add`), then :meth:`finish` for the evaluator (``eval``, ``params``,
    ``stats`` as after ``accumulate()`` and ``summarize()``) and the printed summary."""

    def __init__(self, image_ids: Iterable[int], categories: list[dict], iou_type: str, backend: str):
        self._coco, self._cocoeval = _classes(backend)
        self._faster = backend == "faster-coco-eval"
        self._iou_type, self._categories = iou_type, categories
        self._image_ids = sorted(int(i) for i in image_ids)
        self._rank = {image_id: i for i, image_id in enumerate(self._image_ids)}
        self._cat_ids = sorted({int(c["id"]) for c in categories})
        self._areas = 4  # COCOeval's area ranges: all, small, medium, large
        self._parts: list[tuple] = []  # compact arrays per chunk

    def _evaluator(self, gt: Any, dt: Any) -> Any:
        if self._faster:
            return self._cocoeval(gt, dt, self._iou_type, print_function=print, separate_eval=True)
        return self._cocoeval(gt, dt, self._iou_type)

    def add(self, images: list[dict], annotations: list[dict], rows: list[dict]) -> None:
        """Evaluate one chunk: its truth images (dicts with id, file_name, width, height), their truth
        annotations and the results rows of those images (rows are copied, not changed)."""
        truth = {"info": {}, "licenses": [], "images": images, "categories": self._categories,
                 "annotations": annotations}
        with contextlib.redirect_stdout(io.StringIO()):  # COCO and COCOeval print; the library must not
            gt = self._coco()
            gt.dataset = truth
            gt.createIndex()
            if rows:
                dt = gt.loadRes([dict(r) for r in rows])  # loadRes writes into the rows: give it copies
            else:  # loadRes crashes on []
                dt = self._coco()
                dt.dataset = {"images": list(images), "categories": list(self._categories), "annotations": []}
                dt.createIndex()
            ev = self._evaluator(gt, dt)
            ev.params.imgIds = sorted(int(i["id"]) for i in images)
            ev.params.catIds = self._cat_ids
            ev.evaluate()
        ids = [int(i) for i in ev.params.imgIds]
        ranks = np.array([self._rank[i] for i in ids], dtype=np.int64)
        n_img, total = len(ids), len(self._image_ids)
        thresholds = len(ev.params.iouThrs)
        index, sizes, scores, matched, ignored, npig = [], [], [], [], [], []
        for pos, entry in enumerate(self._entries(ev, thresholds)):
            if entry is None:
                continue
            block, i = divmod(pos, n_img)  # block = category * areas + area
            index.append(block * total + int(ranks[i]))
            sizes.append(len(entry[0]))
            scores.append(entry[0])
            matched.append(entry[1])
            ignored.append(entry[2])
            npig.append(entry[3])
        if index:
            self._parts.append((np.array(index, dtype=np.int64), np.array(sizes, dtype=np.int64),
                                np.concatenate(scores),
                                np.concatenate(matched, axis=1), np.concatenate(ignored, axis=1),
                                np.array(npig, dtype=np.int64)))

    def _entries(self, ev: Any, thresholds: int) -> Iterable[tuple | None]:
        """Each ``evalImgs`` entry of a chunk as (scores, matched, ignored, non-ignored truth count), or
        None: an (image, category) with neither truth nor predictions."""
        if not self._faster:
            for entry in ev.evalImgs:
                if entry is None:
                    yield None
                    continue
                yield (np.asarray(entry["dtScores"], dtype=np.float64),
                       (np.asarray(entry["dtMatches"]) != 0).reshape(thresholds, -1),
                       np.asarray(entry["dtIgnore"], dtype=bool).reshape(thresholds, -1),
                       int(np.count_nonzero(np.asarray(entry["gtIgnore"]) == 0)))
            return
        for entry in ev._evalImgs_cpp:
            # faster-coco-eval's ImageEvaluation state: detection matches (T x D), truth matches,
            # detection scores, truth ignores, detection ignores (T x D), matched pairs
            dt_matches, _, dt_scores, gt_ignores, dt_ignores, _ = entry.__getstate__()
            if not dt_scores and not gt_ignores:
                yield None
                continue
            yield (np.asarray(dt_scores, dtype=np.float64),
                   (np.asarray(dt_matches) != 0).reshape(thresholds, -1),
                   np.asarray(dt_ignores, dtype=bool).reshape(thresholds, -1),
                   len(gt_ignores) - int(np.count_nonzero(gt_ignores)))

    def finish(self) -> tuple[Any, str]:
        """``accumulate()`` over every chunk and ``summarize()``: the evaluator and its printout."""
        ev = self._evaluator(None, None)
        p = ev.params
        p.imgIds, p.catIds = self._image_ids, self._cat_ids
        # what evaluate() does to the parameters before it copies them for accumulate()
        p.imgIds = list(np.unique(p.imgIds))
        p.catIds = list(np.unique(p.catIds))
        p.maxDets = sorted(p.maxDets)
        entries = self._merged(len(p.catIds) * self._areas, len(p.iouThrs))
        if self._faster:
            ev.eval = _faster_accumulate(p, entries)
        else:
            ev._paramsEval, ev.evalImgs = copy.deepcopy(p), entries
            with contextlib.redirect_stdout(io.StringIO()):
                ev.accumulate()
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            ev.summarize()
        return ev, summary.getvalue()

    def _merged(self, blocks: int, thresholds: int) -> _EvalImgs:
        n_img = len(self._image_ids)
        if not self._parts:
            empty = np.zeros((thresholds, 0), dtype=bool)
            return _EvalImgs(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0), empty, empty,
                             np.zeros(0, np.int64), blocks, n_img)
        index, sizes, scores, matched, ignored, npig = (list(x) for x in zip(*self._parts))
        self._parts = []
        index, sizes, npig = np.concatenate(index), np.concatenate(sizes), np.concatenate(npig)
        scores = np.concatenate(scores)
        matched, ignored = np.concatenate(matched, axis=1), np.concatenate(ignored, axis=1)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        order = np.argsort(index, kind="stable")
        # the detections re-laid in the order of the sorted entries
        new_sizes = sizes[order]
        new_starts = np.concatenate([[0], np.cumsum(new_sizes)])
        dets = (np.arange(new_starts[-1]) - np.repeat(new_starts[:-1], new_sizes)
                + np.repeat(starts[:-1][order], new_sizes))
        return _EvalImgs(index[order], new_starts, scores[dets], matched[:, dets], ignored[:, dets],
                         npig[order], blocks, n_img)


def _faster_accumulate(p: Any, entries: _EvalImgs) -> dict:
    """faster-coco-eval's C++ accumulate, one (category, area range) at a time: it takes every
    ImageEvaluation of its input at once, so each call gets one category's and area's (one per image,
    rebuilt from the compact arrays); the pieces are laid into COCOeval's arrays. Each (category, area)
    is pooled on its own in accumulate() too, so the numbers are the same as one call over all."""
    from faster_coco_eval.core.faster_eval_api import _C

    shape = (len(p.iouThrs), len(p.recThrs), len(p.catIds), len(p.areaRng), len(p.maxDets))
    precision, scores = -np.ones(shape), -np.ones(shape)
    recall = -np.ones((shape[0], *shape[2:]))
    n_img, kind = len(p.imgIds), _C.ImageEvaluation
    empty = kind()
    for k in range(shape[2]):
        for a in range(shape[3]):
            part = copy.copy(p)
            part.catIds, part.areaRng, part.areaRngLbl = [p.catIds[k]], [p.areaRng[a]], [p.areaRngLbl[a]]
            evals = [empty] * n_img
            for i, j in zip(*entries.block(k * shape[3] + a)):
                e = entries.entry(int(j))
                one = kind.__new__(kind)  # pybind11 unpickling: __setstate__ on an uninitialised object
                one.__setstate__((e["dtMatches"].ravel().tolist(), [], e["dtScores"].tolist(),
                                  e["gtIgnore"].tolist(), e["dtIgnore"].ravel().tolist(), []))
                evals[int(i)] = one
            out = _C.COCOevalAccumulate(part, evals)
            precision[:, :, k, a, :] = np.asarray(out["precision"]).reshape(shape[:2] + (shape[4],))
            scores[:, :, k, a, :] = np.asarray(out["scores"]).reshape(shape[:2] + (shape[4],))
            recall[:, k, a, :] = np.asarray(out["recall"]).reshape(shape[0], shape[4])
    return {"params": p, "counts": list(shape), "precision": precision, "recall": recall, "scores": scores}


def chunks(records: Iterable[tuple[Mapping, list[dict], list[dict]]]
           ) -> Iterable[list[tuple[Mapping, list[dict], list[dict]]]]:
    """Group ``(image, truth annotations, rows)`` into chunks of at most :data:`CHUNK_IMAGES` images and
    about :data:`CHUNK_OBJECTS` objects."""
    chunk: list = []
    objects = 0
    for item in records:
        chunk.append(item)
        objects += len(item[1]) + len(item[2])
        if len(chunk) >= CHUNK_IMAGES or objects >= CHUNK_OBJECTS:
            yield chunk
            chunk, objects = [], 0
    if chunk:
        yield chunk
