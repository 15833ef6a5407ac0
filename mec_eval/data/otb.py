"""OTB-2015 (OTB-100) single-object tracking sequences, and the synthetic videos written in its layout.

Layout: ``<root>/<Seq>/img/0001.jpg ...`` and ``<root>/<Seq>/groundtruth_rect.txt`` (one ``x,y,w,h``
line per annotated frame; comma, tab or space separated). A folder with ``groundtruth_rect.<k>.txt``
files holds several targets, each a sequence ``<Seq>-<k>`` (Jogging-1/-2, Skating2-1/-2; Human4-2).
Five sequences hold more images than annotations; :data:`FRAME_RANGES` has their official ranges
(OTB toolkit ``configSeqs.m`` startFrame / endFrame; the same five in got10k-toolkit ``datasets/otb.py``),
applied by image number when the counts differ. Sequences whose annotation starts later (BlurCar1 at
247, BlurCar3 at 3, BlurCar4 at 18, ...) ship only the annotated images, numbered from their start
frame, so their folders match their annotations as they are.
Boxes are read as written (OTB's own 1-based convention); the tracker and the metric use one convention.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mec_eval.data.frames import LazyFrames
from mec_eval.data.shapes_video import SyntheticVideo, make_videos
from mec_eval.utils import UserError, atomic_write_text

LAYOUT = "<root>/<Seq>/img/0001.jpg ... and <root>/<Seq>/groundtruth_rect.txt (x,y,w,h per line)"
# Official first / last annotated image numbers where they are not the whole img/ folder (configSeqs.m).
FRAME_RANGES = {"David": (300, 770), "Football1": (1, 74), "Freeman3": (1, 460), "Freeman4": (1, 283),
                "Diving": (1, 215)}
_SEPARATORS = re.compile(r"[,\t ]+")
_MARKER = "shapes_video.json"


def read_rects(path: str | Path) -> np.ndarray:
    """[N, 4] float boxes (x, y, w, h) of an OTB rectangle file; one UserError line when it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"rectangle file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"rectangle file {path} is a folder, not a text file") from None
    except UnicodeDecodeError:
        raise UserError(f"rectangle file {path} is not text (x,y,w,h per line)") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = _SEPARATORS.split(line.strip())
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 4 or not np.isfinite(values).all():
            raise UserError(f"{path} line {number}: expected 4 numbers x,y,w,h, got {line.strip()[:60]!r}")
        rows.append(values)
    if not rows:
        raise UserError(f"rectangle file {path} holds no boxes")
    return np.asarray(rows, dtype=np.float64)


@dataclass(frozen=True)
class OTBSequence:
    """One OTB target: name, lazy frames, per-frame ``{"box": (x, y, w, h)}``, and its annotation file."""

    name: str
    frames: LazyFrames
    annotations: list
    gt_file: Path

    @property
    def boxes(self) -> np.ndarray:
        return np.array([a["box"] for a in self.annotations])


def _images(folder: Path) -> list[tuple[int, Path]]:
    numbered = []
    for path in folder.iterdir():
        if path.suffix.lower() in (".jpg", ".jpeg", ".png") and path.stem.isdigit():
            numbered.append((int(path.stem), path))
    return sorted(numbered)


def _targets(folder: Path) -> list[tuple[str, Path]]:
    """(sequence name, annotation file) of every target in a sequence folder."""
    single = folder / "groundtruth_rect.txt"
    if single.is_file():
        return [(folder.name, single)]
    multi = sorted(folder.glob("groundtruth_rect.*.txt"))
    return [(f"{folder.name}-{p.name.split('.')[1]}", p) for p in multi if p.name.split(".")[1].isdigit()]


def _sequence(folder: Path, name: str, gt_file: Path) -> OTBSequence:
    boxes = read_rects(gt_file)
    images = _images(folder / "img") if (folder / "img").is_dir() else []
    if not images:
        raise UserError(f"OTB sequence {name}: no numbered images in {folder / 'img'} (expected {LAYOUT})")
    if len(images) != len(boxes) and folder.name in FRAME_RANGES:
        first, last = FRAME_RANGES[folder.name]
        images = [(n, p) for n, p in images if first <= n <= last]
    if len(images) != len(boxes):
        raise UserError(f"OTB sequence {name}: {len(boxes)} boxes in {gt_file.name} but {len(images)} images in "
                        f"{folder / 'img'}; the download is incomplete or the folder holds other files")
    return OTBSequence(name, LazyFrames([p for _, p in images]), [{"box": tuple(b)} for b in boxes], gt_file)


def load_otb(root: str | Path | None, sequences: list[str] | None = None) -> list[OTBSequence]:
    """The OTB sequences under ``root`` (all targets, or only the names in ``sequences``), sorted by name."""
    if not root:
        raise UserError(f"otb2015 needs data.root=<folder> laid out as {LAYOUT}")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"OTB root {root} is not a folder (expected {LAYOUT})")
    found = {name: (folder, gt) for folder in sorted(p for p in root.iterdir() if p.is_dir())
             for name, gt in _targets(folder)}
    if not found:
        raise UserError(f"no OTB sequences under {root} (expected {LAYOUT})")
    wanted = list(sequences) if sequences else sorted(found)
    unknown = [name for name in wanted if name not in found]
    if unknown:
        raise UserError(f"OTB sequence(s) {', '.join(map(str, unknown[:5]))} not under {root} "
                        f"(it holds {len(found)}: {', '.join(sorted(found)[:5])}, ...)")
    return [_sequence(*found[name][:1], name, found[name][1]) for name in wanted]


def sot_target(video: SyntheticVideo) -> tuple[int, np.ndarray]:
    """(track id, [T, 4] x, y, w, h boxes) of the object a synthetic SOT sequence follows.

    The track with the most visible frames (then the highest mean visibility) that is visible in the first
    frame; frames where it is hidden repeat its last visible box (OTB has no absent-target frames).
    """
    def score(track):
        seen = [e for e in track.frames if e is not None]
        return (track.frames[0] is not None, len(seen), sum(e.visibility for e in seen))
    track = max(video.tracks, key=score)
    boxes, last = [], None
    for entry in track.frames:
        last = entry.box if entry is not None else last
        x1, y1, x2, y2 = last
        boxes.append((x1, y1, x2 - x1, y2 - y1))
    return track.id, np.asarray(boxes)


def _written_with(marker: Path, arguments: dict) -> bool:
    try:
        return json.loads(marker.read_text()) == arguments
    except (OSError, ValueError):  # no or unreadable marker: not written by this generator
        return False


def reuse_or_create(root: Path, arguments: dict, write) -> Path:
    """``root`` as ``write(tmp)`` fills it, built in a temporary sibling and renamed into place.

    A ``root`` already written with the same ``arguments`` is reused; any other existing ``root`` is an error
    (never overwritten). Two writers at once: the first rename wins and the other's copy is dropped.
    """
    root = Path(root)
    arguments = json.loads(json.dumps(arguments, sort_keys=True))  # as the marker reads back (tuples: lists)
    marker = root / _MARKER
    if root.exists():
        if _written_with(marker, arguments):
            return root
        raise UserError(f"{root} exists but was not written by this generator with the same arguments; "
                        "choose another folder or remove it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write(tmp)
        atomic_write_text(tmp / _MARKER, json.dumps(arguments, sort_keys=True))
        os.replace(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if _written_with(marker, arguments):  # another writer finished first
            return root
        raise
    return root


def write_shapes_otb(root: str | Path, n_videos: int, seed: int, **kw) -> Path:
    """Write ``make_videos(n_videos, seed, **kw)`` as an OTB tree (JPEG q95 frames, one target each)."""
    arguments = {"layout": "otb", "n_videos": n_videos, "seed": seed, **kw}

    def write(tmp: Path) -> None:
        for video in make_videos(n_videos, seed, **kw):
            folder = tmp / video.name / "img"
            folder.mkdir(parents=True)
            for index, frame in enumerate(video.frames, 1):
                Image.fromarray(frame).save(folder / f"{index:04d}.jpg", quality=95)
            _, boxes = sot_target(video)
            lines = "".join(",".join(f"{v:g}" for v in box) + "\n" for box in boxes)
            (tmp / video.name / "groundtruth_rect.txt").write_text(lines)

    return reuse_or_create(Path(root), arguments, write)
