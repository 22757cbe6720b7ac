"""Label Studio pre-annotations: ``tasks_<split>.json`` (tasks with ``predictions``) + ``config.xml``.

Each image is a task whose ``data.image`` is a Label Studio *local files* URL,
``/data/local-files/?d=<path>``, the image's path relative to the document root: by default the export
folder itself (``?d=images/<split>/<file_name>``), or ``ls_root`` (``--ls-root``), a folder holding the
export. Label Studio serves it when started with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<that root>`` (absolute), and the project has a *Local files*
storage whose path is ``<the export folder>/images`` (add it; do not sync it: the tasks come from the
JSON). See https://labelstud.io/guide/storage#Local-storage.

Each detection is one region of the task's one prediction (``model_version`` ``"visionkit"``), in Label
Studio's own JSON (https://labelstud.io/guide/predictions):

* a mask -> ``brushlabels`` (``from_name`` ``"mask"``): the exact pixels as Label Studio's brush RLE,
  encoded by label-studio-converter's ``brush.mask2rle`` (an RGBA run-length code of the whole image);
  with ``polygons=True`` -> ``polygonlabels`` (``"polygon"``): the outline, holes filled and several
  parts joined into one polygon by zero-width bridges, as in the YOLO export (a mask too small for a
  polygon stays a brush);
* a box-only detection (no mask) -> ``rectanglelabels`` (``"box"``), never a rectangle AND a mask;
* coordinates of rectangles and polygons are percentages of the image size, as Label Studio wants;
* ``score``: the detection's score, when the answer gave one.

``config.xml`` is the labelling config whose tag names (``image``, ``mask``, ``polygon``, ``box``) and
label values match the results; create the project with it, then import the tasks.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

from ..core.detections import Detections
from ..errors import ConfigError, ExportError
from ..media.atomic import AtomicFile, StreamWriter, write_bytes_atomic

__all__ = ["label_config", "local_files_url", "task", "TasksWriter", "write_split_tasks", "relative_to_root",
           "require_brush", "write_config"]


def local_files_url(relative: str) -> str:
    """The URL Label Studio's local-files storage serves ``relative`` (to its document root) at."""
    return "/data/local-files/?d=" + quote(Path(relative).as_posix(), safe="/")


def label_config(names: Sequence[str], *, polygons: bool = False) -> str:
    """The labelling config XML: an ``Image`` and one control per region type, each with every label."""
    labels = "".join(f"\n    <Label value={quoteattr(str(n))}/>" for n in names)
    tags = [("BrushLabels", "mask")] + ([("PolygonLabels", "polygon")] if polygons else []) \
        + [("RectangleLabels", "box")]
    controls = "".join(f'\n  <{tag} name="{name}" toName="image">{labels}\n  </{tag}>' for tag, name in tags)
    return f'<View>\n  <Image name="image" value="$image" zoom="true"/>{controls}\n</View>\n'


def require_brush() -> None:
    """Check that Label Studio's own brush encoder (label-studio-converter) is installed.

    Raises:
        ConfigError: it is not, saying how to install it (or to write polygons instead).
    """
    try:
        from label_studio_converter.brush import mask2rle  # noqa: F401
    except ImportError as exc:
        raise ConfigError("the label-studio export writes masks with label-studio-converter's brush "
                          'encoder, which is not installed: pip install "visionkit[label-studio]" (or export '
                          "masks as polygons with --polygons)") from exc


def _brush_rle(mask: np.ndarray) -> list[int]:
    require_brush()
    from label_studio_converter.brush import mask2rle

    return [int(v) for v in mask2rle(mask.astype(np.uint8) * 255)]


def _percent(xy: np.ndarray, width: int, height: int) -> list[list[float]]:
    return (np.asarray(xy, dtype=np.float64).reshape(-1, 2) / [width, height] * 100).round(4).tolist()


def task(image_url: str, image_wh: tuple[int, int], dets: Detections, cats, *, polygons: bool = False,
         report: Counter | None = None, data: dict | None = None) -> dict:
    """One Label Studio task with the detections as its prediction. ``cats`` is a
    :class:`~visionkit.formats.coco.CategoryMap`: a detection whose label it lacks is left out and
    counted (``unmapped:<label>``); its region's label is the category's name."""
    from .coco import image_annotations
    from .coco_read import has_mask, rle_to_crop, segmentation_rle
    from .yolo import merge_parts

    report = Counter() if report is None else report
    width, height = image_wh
    names = {c["id"]: c["name"] for c in cats.categories}
    common = {"to_name": "image", "original_width": int(width), "original_height": int(height),
              "image_rotation": 0}
    results, scores = [], []
    for ann in image_annotations(dets, polygons=polygons, polygon_holes="fill", report=report):
        cat = cats.lookup(ann["label"])
        if cat is None:
            report[f"unmapped:{ann['label']}"] += 1
            continue
        name = names[cat]
        seg = ann["segmentation"]
        region: dict
        if not has_mask(ann):
            x, y, w, h = ann["bbox"]
            (px, py), (pw, ph) = _percent([x, y, w, h], width, height)
            region = {"from_name": "box", "type": "rectanglelabels",
                      "value": {"x": px, "y": py, "width": pw, "height": ph, "rotation": 0,
                                "rectanglelabels": [name]}}
        elif isinstance(seg, list):
            ring = merge_parts([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in seg])
            if len(seg) > 1:
                report["parts_merged"] += 1
            region = {"from_name": "polygon", "type": "polygonlabels",
                      "value": {"points": _percent(ring, width, height), "closed": True,
                                "polygonlabels": [name]}}
        else:
            crop = rle_to_crop(segmentation_rle(ann, height, width))
            mask = np.zeros((height, width), dtype=bool)  # the brush RLE codes the whole image
            mask[crop.y0:crop.y0 + crop.data.shape[0], crop.x0:crop.x0 + crop.data.shape[1]] = crop.data
            region = {"from_name": "mask", "type": "brushlabels",
                      "value": {"format": "rle", "rle": _brush_rle(mask), "brushlabels": [name]}}
        region = {"id": f"vk{len(results) + 1}", **region, **common}
        if "score" in ann:
            region["score"] = ann["score"]
            scores.append(ann["score"])
        results.append(region)
    prediction: dict = {"model_version": "visionkit", "result": results}
    if scores:
        prediction["score"] = round(float(np.mean(scores)), 4)
    return {"data": {"image": image_url, **(data or {})}, "predictions": [prediction]}


class TasksWriter(StreamWriter):
    """``dest/tasks_<part>.json``, a JSON array, written one task at a time as the images come (memory stays
    flat), with the bytes ``json.dumps(tasks, ensure_ascii=False)`` of the whole list would give; put in
    place atomically by :meth:`close` (:meth:`discard` drops it). Image URLs are relative to ``root`` (the
    document root; default ``dest``) as if ``dest`` were at ``final`` (where a staging folder's contents
    end up; default ``dest``)."""

    def __init__(self, dest: Path, part: str, cats, report: Counter, *, polygons: bool = False,
                 root: Path | None = None, final: Path | None = None) -> None:
        self._prefix = "" if root is None else relative_to_root(dest if final is None else final, root)
        self._part, self._cats, self._report, self._polygons = part, cats, report, polygons
        self._file = AtomicFile(Path(dest) / f"tasks_{part}.json")
        self._file.write(b"[")
        self.tasks = self.regions = 0

    def add(self, name: str, image_wh: tuple[int, int], dets: Detections) -> int:
        """Write the task of one image (under ``images/<part>/``); returns its regions."""
        url = local_files_url(f"{self._prefix}images/{self._part}/{name}")
        one = task(url, image_wh, dets, self._cats, polygons=self._polygons, report=self._report,
                   data={"split": self._part, "file_name": name})
        try:
            text = (", " if self.tasks else "") + json.dumps(one, ensure_ascii=False)
            data = text.encode("utf-8")
        except (UnicodeEncodeError, ValueError) as exc:
            raise ExportError(f"cannot write {self._file.path} ({name}): {exc}") from exc
        self._file.write(data)
        regions = len(one["predictions"][0]["result"])
        self.tasks += 1
        self.regions += regions
        return regions

    def close(self) -> None:
        self._file.write(b"]")
        self._file.close()

    def discard(self) -> None:
        self._file.discard()


def write_split_tasks(dest: Path, part: str, items: Iterable[tuple[str, tuple[int, int], Detections]], cats,
                      report: Counter, *, polygons: bool = False, root: Path | None = None,
                      final: Path | None = None) -> int:
    """Write ``dest/tasks_<part>.json`` for images under ``dest/images/<part>/`` (see :class:`TasksWriter`),
    streamed; returns the regions written."""
    with TasksWriter(dest, part, cats, report, polygons=polygons, root=root, final=final) as writer:
        for name, wh, dets in items:
            writer.add(name, wh, dets)
    return writer.regions


def relative_to_root(dest: Path, root: Path) -> str:
    """``dest``'s path under the document root ``root``, ending in ``/`` (``""`` when they are one).

    Raises:
        ExportError: ``dest`` is not inside ``root`` (Label Studio serves nothing outside its root).
    """
    dest, root = Path(dest).resolve(), Path(root).resolve()
    try:
        rel = dest.relative_to(root).as_posix()
    except ValueError:
        raise ExportError(f"--ls-root {root}: the export folder {dest} is not inside it; Label Studio's "
                          "local files must be under its document root") from None
    return "" if rel == "." else rel + "/"


def write_config(dest: Path, names: Sequence[str], *, polygons: bool = False) -> None:
    """Write ``dest/config.xml`` (see :func:`label_config`)."""
    write_bytes_atomic(dest / "config.xml", label_config(names, polygons=polygons).encode("utf-8"))
