"""Seeded synthetic detection / instance-segmentation sets of shapes, written in the VOC or COCO release layout.

Each image holds 1-4 shapes of :data:`CLASSES` (a subset of :data:`mec_eval.data.shapes.KINDS`, so a
detector learns the task in a short CPU schedule) drawn over a textured background with
:func:`mec_eval.data.shapes.compose`. Later objects may hide parts of earlier ones; a new object is
placed again while it would leave less than :data:`MIN_VISIBLE` of an earlier one visible. Boxes and
masks are read off the *visible* pixels, so an occluded object's box is that of what shows.

* ``layout="voc"``: ``VOCdevkit/VOC2007/{Annotations/<id>.xml, JPEGImages/<id>.jpg,
  ImageSets/Main/{trainval,test}.txt}`` with the devkit's 1-based inclusive pixel boxes; a few objects
  (about :data:`DIFFICULT_RATE`, at random: the devkit flag is a human judgement) carry
  ``<difficult>1</difficult>``. The class names go to ``VOC2007/classes.txt`` (read by the loader).
* ``layout="coco"``: ``annotations/instances_{train,val}2017.json`` + ``{train,val}2017/<id:012d>.jpg``.
  Unoccluded shapes without holes get a polygon segmentation (their outline), every other object a
  compressed RLE (so both forms appear); ``bbox`` and ``area`` are read off the mask pycocotools
  decodes from that segmentation. Category ids have gaps (1, 3, 5, ...) as COCO's do.

The folder is written under a temporary name and renamed when complete; a marker file holds the
arguments, so a second call with the same arguments returns the finished folder without writing.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from mec_eval.data.shapes import (SUPERSAMPLE, ObjectSpec, _distinct_colour, add_pixel_noise, compose, object_mask,
                                  outline, render_background)
from mec_eval.utils import UserError

CLASSES = ("circle", "square", "triangle", "star", "ring")
HOLLOW = frozenset({"ring"})  # kinds with a cut-out: a COCO polygon cannot hold a hole, so they get RLE
SIZE_RANGE = (0.18, 0.7)  # circumscribed diameter / shorter image side: COCO small, medium and large all occur
MIN_VISIBLE = 0.5  # an object keeps at least this fraction of its pixels visible
DIFFICULT_RATE = 0.1
MARKER = "MEC_EVAL_SHAPES_DETECTION.json"
CLASS_LIST_FILE = "classes.txt"
SPLITS = {"voc": ("trainval", "test"), "coco": ("train2017", "val2017")}
_SPLIT_CODES = {"trainval": 0, "train2017": 0, "test": 1, "val2017": 1}
_PLACEMENT_TRIES = 20


def _size_hw(image_size) -> tuple[int, int]:
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if not (isinstance(h, int) and isinstance(w, int) and 32 <= h <= 4096 and 32 <= w <= 4096):
        raise ValueError(f"image_size must be an int or (h, w) of ints in 32..4096, got {image_size!r}")
    return h, w


def _scene(rng: np.random.Generator, h: int, w: int) -> tuple[Image.Image, list[ObjectSpec], list[np.ndarray]]:
    """One image: its objects in drawing order and their visible boolean masks [h, w]."""
    side = max(h, w)
    background = render_background(rng, side * SUPERSAMPLE)
    objects: list[ObjectSpec] = []
    full: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, 5))):
        for _try in range(_PLACEMENT_TRIES):
            size = float(rng.uniform(*SIZE_RANGE) * min(h, w))
            centre = (float(rng.uniform(size / 2, w - size / 2)), float(rng.uniform(size / 2, h - size / 2)))
            spec = ObjectSpec(CLASSES[int(rng.integers(len(CLASSES)))], (0, 0, 0), centre, size,
                              float(rng.uniform(0.0, 360.0)))
            mask = object_mask(spec, side)[:h, :w]
            # Keep earlier objects mostly visible: what they still show once this one covers them.
            if mask.any() and all((m & ~mask & ~_cover(full[i + 1:], m)).sum() >= MIN_VISIBLE * m.sum()
                                  for i, m in enumerate(full)):
                objects.append(replace(spec, colour=_distinct_colour(rng, background, spec, side)))
                full.append(mask)
                break
    image = add_pixel_noise(rng, compose(background, objects, side), max_sigma=6.0).crop((0, 0, w, h))
    visible = [m & ~_cover(full[i + 1:], m) for i, m in enumerate(full)]
    return image, objects, visible


def _cover(masks: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    """The union of ``masks`` (all False when there are none)."""
    return np.logical_or.reduce(masks) if masks else np.zeros_like(like)


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(first column, first row, last column, last row) of the True pixels, inclusive."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _voc_xml(image_id: str, h: int, w: int, objects: list[tuple[str, tuple[int, int, int, int], bool]]) -> str:
    parts = [f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>",
             "<source><database>mec-eval shapes-detection</database></source>",
             f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size><segmented>0</segmented>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        # The devkit's boxes are 1-based and inclusive: pixel column c is coordinate c + 1.
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>{int(difficult)}</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
                     f"<xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax></bndbox></object>")
    return "\n".join(parts) + "\n</annotation>\n"


def _write_voc(folder: Path, sizes: dict[str, int], h: int, w: int, seed: int) -> None:
    voc = folder / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    (voc / CLASS_LIST_FILE).write_text("\n".join(CLASSES) + "\n")
    number = 0
    for split, n in sizes.items():
        ids = []
        for index in range(n):
            number += 1
            image_id = f"{number:06d}"
            rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
            image, objects, visible = _scene(rng, h, w)
            rows = [(spec.kind, _extent(m), bool(rng.random() < DIFFICULT_RATE)) for spec, m in zip(objects, visible)]
            image.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
            (voc / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, h, w, rows))
            ids.append(image_id)
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def _segmentation(spec: ObjectSpec, visible: np.ndarray, occluded: bool, h: int, w: int):
    """A polygon list for a whole hole-free shape, else a compressed RLE of the visible mask (counts str)."""
    if not occluded and spec.kind not in HOLLOW:
        (poly, _filled), = outline(spec)
        clipped = np.clip(poly, 0.0, [w, h])
        return [[round(float(v), 2) for v in clipped.reshape(-1)]]
    rle = mask_util.encode(np.asfortranarray(visible.astype(np.uint8)))
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def _decoded(segmentation, h: int, w: int) -> np.ndarray:
    """The mask pycocotools makes of ``segmentation`` (what a reader's ``annToMask`` returns)."""
    if isinstance(segmentation, list):
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, h, w))
    else:
        rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return mask_util.decode(rle).astype(bool)


def _coco_json(split: str, n: int, h: int, w: int, seed: int, folder: Path, first_id: int) -> dict:
    images, annotations = [], []
    for index in range(n):
        image_id = first_id + index
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
        image, objects, visible = _scene(rng, h, w)
        file_name = f"{image_id:012d}.jpg"
        image.save(folder / split / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        for spec, mask in zip(objects, visible):
            occluded = bool((object_mask(spec, max(h, w))[:h, :w] & ~mask).any())
            segmentation = _segmentation(spec, mask, occluded, h, w)
            decoded = _decoded(segmentation, h, w)
            if not decoded.any():
                continue
            x0, y0, x1, y1 = _extent(decoded)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": 2 * CLASSES.index(spec.kind) + 1, "iscrowd": 0,
                                "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1], "area": int(decoded.sum()),
                                "segmentation": segmentation})
    categories = [{"id": 2 * i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]
    return {"info": {"description": "mec-eval shapes-detection (synthetic)"}, "licenses": [],
            "images": images, "annotations": annotations, "categories": categories}


def _write_coco(folder: Path, sizes: dict[str, int], h: int, w: int, seed: int) -> None:
    (folder / "annotations").mkdir()
    first_id = 1
    for split, n in sizes.items():
        (folder / split).mkdir()
        content = _coco_json(split, n, h, w, seed, folder, first_id)
        (folder / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))
        first_id += n


def write_shapes_detection(root, layout: str = "voc", n_train: int = 64, n_test: int = 32, image_size=160,
                           seed: int = 0) -> Path:
    """Write (or find) the set under ``root``; return the folder a loader takes.

    VOC: the ``VOCdevkit`` folder (for :class:`~mec_eval.data.detection.VOCDetection` with sets
    ``(("2007", "trainval"),)`` / ``(("2007", "test"),)``); COCO: the folder holding ``annotations/``
    (for :class:`~mec_eval.data.detection.COCODetection` with split "train" / "val").
    """
    if layout not in SPLITS:
        raise ValueError(f"layout must be 'voc' or 'coco', got {layout!r}")
    h, w = _size_hw(image_size)
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")
    args = {"layout": layout, "n_train": n_train, "n_test": n_test, "image_size": [h, w], "seed": seed,
            "classes": list(CLASSES), "format": 1}
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:10]
    root = Path(root)
    final = root / f"shapes-detection-{layout}-{digest}"
    found = _finished(final, args)
    if found is None:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
        try:
            writer = _write_voc if layout == "voc" else _write_coco
            writer(tmp, dict(zip(SPLITS[layout], (n_train, n_test))), h, w, seed)
            (tmp / MARKER).write_text(json.dumps(args, sort_keys=True) + "\n")
            try:
                os.rename(tmp, final)
            except OSError:
                # Another process finished the same set first: use its copy if it is complete.
                if _finished(final, args) is None:
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final / "VOCdevkit" if layout == "voc" else final


def _finished(folder: Path, args: dict) -> Path | None:
    """``folder`` if it holds a complete set written with ``args``; a folder of other content is an error."""
    marker = folder / MARKER
    if not folder.exists():
        return None
    try:
        written = json.loads(marker.read_text())
    except (OSError, ValueError):
        written = None
    if written != args:
        raise UserError(f"{folder} exists but is not a shapes-detection set written by these arguments "
                        f"(no matching {MARKER}); remove it")
    return folder

