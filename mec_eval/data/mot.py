"""MOT16 and MOTS20 readers in the MOTChallenge layouts (``<seq>/img1``, ``gt/gt.txt``, ``det/det.txt``,
``seqinfo.ini``).

MOT rows are ``frame, id, x, y, w, h, conf, class, visibility[, z]`` (MOT15 2D files: -1 for class /
visibility); detection rows have id -1 and a score in ``conf``. MOTS rows are ``time id class h w rle``
(space separated, COCO compressed RLE; ``id // 1000`` is the class, class 10 an ignore region).
Detections come from ``<seq>/det/det.txt`` or from a user folder ``<folder>/<seq>.txt`` in the same
format; MOTS detections are MOTS txt files (a sixth number after the class column is not read: a
score of 1 is assumed, as the given masks carry none).
"""
from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mec_eval.data.frames import LazyFrames
from mec_eval.utils import UserError

MOT_LAYOUT = ("ROOT/train/<seq>/ (or ROOT/<seq>/) with img1/000001.jpg ..., seqinfo.ini, gt/gt.txt and "
              "det/det.txt (MOTChallenge MOT16 layout)")
MOTS_LAYOUT = ("ROOT/train/<seq>/ (or ROOT/<seq>/) with img1/000001.jpg ..., seqinfo.ini and gt/gt.txt "
               "(or ROOT/instances_txt/<seq>.txt) in the MOTS txt format 'time id class h w rle'")


def _lines(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: unreadable ({err})") from None
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_mot_txt(path: Path, length: int | None = None) -> np.ndarray:
    """[N, 10] float rows of a MOTChallenge box file (missing trailing columns filled with -1)."""
    rows = []
    for number, line in _lines(path):
        try:
            values = [float(v) for v in line.replace(",", " ").split()]
        except ValueError:
            values = []
        if not 6 <= len(values) <= 10 or not np.all(np.isfinite(values)) or values[4] < 0 or values[5] < 0:
            raise UserError(f"{path} line {number}: expected 'frame, id, x, y, w, h[, conf, class, visibility, z]' "
                            f"with w, h >= 0; got {line[:80]!r}")
        if length is not None and not (values[0].is_integer() and 1 <= values[0] <= length):
            raise UserError(f"{path} line {number}: frame {values[0]:g} outside 1..{length} (seqinfo.ini seqLength)")
        rows.append(values + [-1.0] * (10 - len(values)))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 10)


@dataclass(frozen=True)
class MaskRow:
    """One MOTS object in one frame: object id, class, COCO RLE dict (size [h, w], counts bytes)."""
    frame: int
    obj_id: int
    cls: int
    rle: dict


def read_mots_txt(path: Path, length: int | None = None, size: tuple[int, int] | None = None) -> list[MaskRow]:
    """Rows of a MOTS txt file ``time id class h w rle``; a bad line is a UserError naming it."""
    from pycocotools import mask as mask_utils

    rows = []
    for number, line in _lines(path):
        fields = line.split(" ")
        try:
            frame, obj, cls, h, w = (int(v) for v in fields[:5])
            rle = {"size": [h, w], "counts": fields[5].encode("ascii")}
            area = float(mask_utils.area(rle))
        except (ValueError, IndexError, UnicodeEncodeError, TypeError):
            raise UserError(f"{path} line {number}: expected 'time id class height width rle'; "
                            f"got {line[:80]!r}") from None
        if len(fields) != 6 or h < 1 or w < 1 or area > h * w:
            raise UserError(f"{path} line {number}: expected 6 space-separated fields, a valid RLE; got {line[:80]!r}")
        if (length is not None and not 1 <= frame <= length) or (size is not None and (h, w) != tuple(size)):
            raise UserError(f"{path} line {number}: frame {frame} or mask size {h}x{w} does not fit the sequence "
                            f"({length} frames, {size})")
        rows.append(MaskRow(frame, obj, cls, rle))
    return rows


def decode_masks(rows: list[MaskRow], height: int, width: int) -> np.ndarray:
    """[N, H, W] bool masks of MOTS rows."""
    from pycocotools import mask as mask_utils

    if not rows:
        return np.zeros((0, height, width), dtype=bool)
    return np.moveaxis(mask_utils.decode([r.rle for r in rows]), 2, 0).astype(bool)


@dataclass
class SeqInfo:
    """``seqinfo.ini``: name, length, frame rate, image size, image folder and extension."""
    name: str
    length: int
    frame_rate: float
    width: int
    height: int
    im_dir: str = "img1"
    im_ext: str = ".jpg"


def read_seqinfo(seq_dir: Path) -> SeqInfo:
    ini = seq_dir / "seqinfo.ini"
    parser = configparser.ConfigParser()
    try:
        parser.read_string(ini.read_text(encoding="utf-8"))
        s = parser["Sequence"]
        info = SeqInfo(s.get("name", seq_dir.name), int(s["seqLength"]), float(s.get("frameRate", 30)),
                       int(s["imWidth"]), int(s["imHeight"]), s.get("imDir", "img1"), s.get("imExt", ".jpg"))
    except FileNotFoundError:
        raise UserError(f"{ini} is missing; expected {MOT_LAYOUT}") from None
    except (configparser.Error, KeyError, ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{ini}: not a MOTChallenge seqinfo.ini with [Sequence] seqLength, frameRate, imWidth, "
                        f"imHeight ({err})") from None
    if info.length < 1 or info.width < 1 or info.height < 1 or not 0 < info.frame_rate < 1000:
        raise UserError(f"{ini}: seqLength, imWidth, imHeight must be >= 1 and frameRate in (0, 1000)")
    if "/" in info.im_dir or ".." in info.im_dir or "/" in info.im_ext:
        raise UserError(f"{ini}: imDir / imExt must be plain names (got {info.im_dir!r}, {info.im_ext!r})")
    return info


@dataclass
class VideoSequence:
    """A video item (:data:`mec_eval.data.ITEM_CONTRACTS` "video"): name, lazy frames, per-frame annotations.

    MOT annotations: {"gt": [N, 10] rows, "det": [M, 10] rows}; MOTS: {"gt": [MaskRow], "det": [MaskRow]}.
    """
    name: str
    info: SeqInfo
    frames: LazyFrames
    annotations: list = field(repr=False)


def sequence_dirs(root, layout: str, names: list[str] | None = None) -> list[Path]:
    """The sequence folders under ``root/train`` (or ``root``), all or ``names`` in that order."""
    if not root:
        raise UserError(f"data.root is not set; expected {layout}")
    root = Path(root)
    base = root / "train" if (root / "train").is_dir() else root
    if not base.is_dir():
        raise UserError(f"{root} is not a folder; expected {layout}")
    found = sorted(p.name for p in base.iterdir() if (p / "seqinfo.ini").is_file())
    if not found:
        raise UserError(f"{root} holds no sequence folder with seqinfo.ini; expected {layout}")
    wanted = list(names) if names else found
    missing = [n for n in wanted if n not in found]
    if missing:
        raise UserError(f"{base} has no sequence {', '.join(map(repr, missing[:5]))} (found: {', '.join(found[:10])})")
    return [base / n for n in wanted]


def _frames(seq_dir: Path, info: SeqInfo) -> LazyFrames:
    return LazyFrames([seq_dir / info.im_dir / f"{t:06d}{info.im_ext}" for t in range(1, info.length + 1)],
                      missing_hint="seqinfo.ini seqLength promises it")


def _det_file(seq_dir: Path, detections) -> Path:
    if detections:
        path = Path(detections) / f"{seq_dir.name}.txt"
        if not path.is_file():
            raise UserError(f"detection folder {detections} lacks {seq_dir.name}.txt "
                            "(one MOTChallenge file per sequence)")
        return path
    return seq_dir / "det" / "det.txt"


def load_mot_sequence(seq_dir: Path, detections=None, with_gt: bool = True) -> VideoSequence:
    """One MOT16 sequence with its gt (if present and ``with_gt``) and detections."""
    info = read_seqinfo(seq_dir)
    det = read_mot_txt(_det_file(seq_dir, detections), info.length)
    gt_path = seq_dir / "gt" / "gt.txt"
    gt = read_mot_txt(gt_path, info.length) if with_gt and gt_path.is_file() else np.zeros((0, 10))
    annotations = [{"gt": gt[gt[:, 0] == t], "det": det[det[:, 0] == t]} for t in range(1, info.length + 1)]
    return VideoSequence(seq_dir.name, info, _frames(seq_dir, info), annotations)


def mots_gt_file(seq_dir: Path) -> Path:
    """``<seq>/gt/gt.txt`` or, in the MOTS20 release, ``ROOT/instances_txt/<seq>.txt``."""
    own = seq_dir / "gt" / "gt.txt"
    if own.is_file():
        return own
    for base in (seq_dir.parent, seq_dir.parent.parent):
        if (base / "instances_txt" / f"{seq_dir.name}.txt").is_file():
            return base / "instances_txt" / f"{seq_dir.name}.txt"
    raise UserError(f"{seq_dir}: no gt/gt.txt nor instances_txt/{seq_dir.name}.txt; expected {MOTS_LAYOUT}")


def load_mots_sequence(seq_dir: Path, detections=None, with_gt: bool = True) -> VideoSequence:
    """One MOTS20 sequence: gt masks and the given masks (``<seq>/det/det.txt`` or ``<folder>/<seq>.txt``)."""
    info = read_seqinfo(seq_dir)
    size = (info.height, info.width)
    det = read_mots_txt(_det_file(seq_dir, detections), info.length, size)
    gt = read_mots_txt(mots_gt_file(seq_dir), info.length, size) if with_gt else []
    annotations = [{"gt": [r for r in gt if r.frame == t], "det": [r for r in det if r.frame == t]}
                   for t in range(1, info.length + 1)]
    return VideoSequence(seq_dir.name, info, _frames(seq_dir, info), annotations)


class VideoSequences:
    """The ``train`` sequences of a MOT16 / MOTS20 root as a dataset of :class:`VideoSequence` items."""

    def __init__(self, root, kind: str, detections=None, names: list[str] | None = None):
        self.kind = kind
        self.dirs = sequence_dirs(root, MOT_LAYOUT if kind == "mot" else MOTS_LAYOUT, names)
        self.detections = detections

    def __len__(self) -> int:
        return len(self.dirs)

    def __getitem__(self, index: int) -> VideoSequence:
        load = load_mot_sequence if self.kind == "mot" else load_mots_sequence
        return load(self.dirs[index], self.detections)


def build_mot16(root, split: str, transform=None) -> VideoSequences:
    return VideoSequences(root, "mot")


def build_mots20(root, split: str, transform=None) -> VideoSequences:
    return VideoSequences(root, "mots")
