"""DAVIS-2017 semi-supervised video object segmentation, and the synthetic videos written in its layout.

Layout (the DAVIS-2017 trainval release): ``<root>/JPEGImages/480p/<seq>/00000.jpg``,
``<root>/Annotations/480p/<seq>/00000.png`` (palette PNGs whose pixel values are object ids, 0 the
background, 255 void) and ``<root>/ImageSets/2017/<split>.txt`` (one sequence name per line).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mec_eval.data.frames import LazyFrames
from mec_eval.data.otb import reuse_or_create
from mec_eval.data.shapes_video import make_videos
from mec_eval.utils import UserError

LAYOUT = ("<root>/JPEGImages/480p/<seq>/00000.jpg, <root>/Annotations/480p/<seq>/00000.png (palette PNGs "
          "of object ids) and <root>/ImageSets/2017/<split>.txt")
SPLITS = ("train", "val")
VOID = 255  # annotation value of pixels left out of the evaluation


def davis_palette() -> list[int]:
    """The DAVIS colour map (the PASCAL VOC bit-interleaving one): 256 RGB entries, flattened."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def read_label_png(path: str | Path) -> np.ndarray:
    """uint8 [H, W] object ids of a DAVIS annotation (palette or grey PNG); one UserError line otherwise."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise UserError(f"{path} is a {image.mode} image; DAVIS annotations are palette (P) PNGs of "
                                "object ids")
            return np.array(image, dtype=np.uint8)
    except FileNotFoundError:
        raise UserError(f"annotation {path} does not exist") from None
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise UserError(f"annotation {path} cannot be read ({type(err).__name__}); the file is corrupt or "
                        "truncated") from None


def write_label_png(path: str | Path, labels: np.ndarray) -> None:
    """Save object ids as a DAVIS palette PNG."""
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    image.putpalette(davis_palette())
    image.save(path)


class LazyLabels(LazyFrames):
    """Annotation PNGs read on access as uint8 [H, W] id maps."""

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return read_label_png(self.paths[index])


@dataclass(frozen=True)
class DAVISSequence:
    """One DAVIS sequence: name, lazy frames, lazy per-frame id maps, and its annotation folder."""

    name: str
    frames: LazyFrames
    annotations: LazyLabels
    gt_folder: Path


def _read_split(root: Path, split: str) -> list[str]:
    path = root / "ImageSets" / "2017" / f"{split}.txt"
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise UserError(f"DAVIS split file {path} does not exist (expected {LAYOUT})") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise UserError(f"DAVIS split file {path} is not a text list of sequence names") from None
    if not names:
        raise UserError(f"DAVIS split file {path} lists no sequences")
    return names


def _sequence(root: Path, name: str) -> DAVISSequence:
    if "/" in name or "\\" in name or name in (".", ".."):
        raise UserError(f"DAVIS sequence name {name[:60]!r} is not a folder name")
    frames_dir, labels_dir = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
    if not frames_dir.is_dir() or not labels_dir.is_dir():
        raise UserError(f"DAVIS sequence {name}: {frames_dir} or {labels_dir} is missing (expected {LAYOUT})")
    frames = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() == ".jpg")
    labels = sorted(p for p in labels_dir.iterdir() if p.suffix.lower() == ".png")
    if not frames or [p.stem for p in labels] != [p.stem for p in frames]:
        raise UserError(f"DAVIS sequence {name}: {len(frames)} frames and {len(labels)} annotations do not match "
                        f"one to one (expected {LAYOUT})")
    return DAVISSequence(name, LazyFrames(frames), LazyLabels(labels), labels_dir)


def load_davis(root: str | Path | None, split: str = "val", sequences: list[str] | None = None) -> list[DAVISSequence]:
    """The sequences of ``split`` (or only those in ``sequences``) under a DAVIS-2017 ``root``."""
    if not root:
        raise UserError(f"davis2017 needs data.root=<folder> laid out as {LAYOUT}")
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"DAVIS root {root} is not a folder (expected {LAYOUT})")
    if split not in SPLITS:
        raise UserError(f"DAVIS split must be {' or '.join(SPLITS)}, got {split!r}")
    names = _read_split(root, split)
    if sequences:
        unknown = [s for s in sequences if s not in names]
        if unknown:
            raise UserError(f"DAVIS sequence(s) {', '.join(map(str, unknown[:5]))} are not in the {split} split")
        names = list(sequences)
    return [_sequence(root, name) for name in names]


def write_shapes_davis(root: str | Path, n_videos: int, seed: int, **kw) -> Path:
    """Write ``make_videos(n_videos, seed, **kw)`` as a DAVIS tree; object id = track id, split ``val``."""
    arguments = {"layout": "davis", "n_videos": n_videos, "seed": seed, **kw}

    def write(tmp: Path) -> None:
        videos = make_videos(n_videos, seed, **kw)
        for video in videos:
            frames_dir = tmp / "JPEGImages" / "480p" / video.name
            labels_dir = tmp / "Annotations" / "480p" / video.name
            frames_dir.mkdir(parents=True)
            labels_dir.mkdir(parents=True)
            for t, frame in enumerate(video.frames):
                Image.fromarray(frame).save(frames_dir / f"{t:05d}.jpg", quality=95)
                labels = np.zeros(frame.shape[:2], dtype=np.uint8)
                for track in video.tracks:  # visible masks are disjoint
                    if track.frames[t] is not None:
                        labels[track.frames[t].mask] = track.id
                write_label_png(labels_dir / f"{t:05d}.png", labels)
        (tmp / "ImageSets" / "2017").mkdir(parents=True)
        (tmp / "ImageSets" / "2017" / "val.txt").write_text("".join(v.name + "\n" for v in videos))

    return reuse_or_create(Path(root), arguments, write)
