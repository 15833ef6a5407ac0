"""MOT and MOTS scores of tracker files on disk: HOTA, CLEAR (MOTA, MOTP) and Identity (IDF1, IDs) by TrackEval.

The authority is PyPI ``trackeval`` 1.3.0 (the maintained fork of JonathonLuiten/TrackEval; it runs on
NumPy 2): its ``MotChallenge2DBox`` and ``MOTSChallenge`` datasets read the official layouts and apply
each benchmark's preprocessing (MOT16/17/20: tracker boxes matched to distractor gt classes removed,
zero-marked and non-pedestrian gt ignored; MOT15: none). HOTA is the mean over the 19 alphas (Luiten
et al., IJCV 2021), MOTA / MOTP as Bernardin & Stiefelhagen 2008, IDF1 as Ristani et al. 2016.
:func:`motmetrics_summary` scores the same files with ``motmetrics`` 1.4.0 (distances computed here:
its ``iou_matrix`` calls ``np.asfarray``, which NumPy 2 removed) as an independent check.
"""
from __future__ import annotations

import configparser
import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mec_eval.utils import UserError

MOT_BENCHMARKS = ("MOT15", "MOT16", "MOT17", "MOT20")
MOT_LAYOUT = ("GT_FOLDER/<seq>/gt/gt.txt and GT_FOLDER/<seq>/seqinfo.ini (MOTChallenge / TrackEval layout), "
              "results RESULTS_FOLDER/<seq>.txt")
MOTS_GT_LAYOUT = ("GT_FOLDER/<seq>/gt/gt.txt + GT_FOLDER/<seq>/seqinfo.ini, or the MOTS20 release "
                  "GT_FOLDER/instances_txt/<seq>.txt + GT_FOLDER[/train]/<seq>/seqinfo.ini; "
                  "results RESULTS_FOLDER/<seq>.txt")
_QUIET = {"PRINT_CONFIG": False}
_EVAL_CONFIG = {"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False,
                "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False, "PLOT_CURVES": False, "BREAK_ON_ERROR": True,
                "LOG_ON_ERROR": None, "DISPLAY_LESS_PROGRESS": True}


def read_seq_length(seq_dir: Path) -> int:
    """``seqLength`` of ``<seq>/seqinfo.ini``; a missing or corrupt file is a UserError naming it."""
    ini = seq_dir / "seqinfo.ini"
    parser = configparser.ConfigParser()
    try:
        parser.read_string(ini.read_text(encoding="utf-8"))
        length = int(parser["Sequence"]["seqLength"])
    except FileNotFoundError:
        raise UserError(f"{ini} is missing; expected {MOT_LAYOUT}") from None
    except (configparser.Error, KeyError, ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{ini}: not a MOTChallenge seqinfo.ini with [Sequence] seqLength ({err})") from None
    if length < 1:
        raise UserError(f"{ini}: seqLength must be >= 1 (got {length})")
    return length


def check_text_rows(path: Path, min_columns: int, numeric_columns: int, length: int | None = None) -> int:
    """Validate a comma / space separated text file; returns its row count; a bad line is one UserError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: unreadable ({err})") from None
    rows = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.replace(",", " ").split() if "," in line else line.split(" ")
        try:
            values = [float(v) for v in fields[:numeric_columns]]
        except ValueError:
            values = []
        if len(fields) < min_columns or len(values) < numeric_columns or not np.all(np.isfinite(values)):
            raise UserError(f"{path} line {number}: expected at least {min_columns} fields, the first "
                            f"{numeric_columns} numbers; got {line[:80]!r}")
        if length is not None and not 1 <= values[0] <= length:
            raise UserError(f"{path} line {number}: frame {values[0]:g} outside 1..{length} (seqinfo.ini seqLength)")
        rows += 1
    return rows


def _sequences(gt_folder: Path, results_folder: Path, gt_file: str, only=None) -> dict[str, int]:
    if not gt_folder.is_dir():
        raise UserError(f"gt folder {gt_folder} does not exist; expected {MOT_LAYOUT}")
    if not results_folder.is_dir():
        raise UserError(f"results folder {results_folder} does not exist; expected {MOT_LAYOUT}")
    seqs = sorted(p.name for p in gt_folder.iterdir() if (p / gt_file).is_file() and (not only or p.name in only))
    if not seqs:
        raise UserError(f"{gt_folder} holds no sequence with {gt_file}; expected {MOT_LAYOUT}")
    missing = [s for s in seqs if not (results_folder / f"{s}.txt").is_file()]
    if missing:
        raise UserError(f"{results_folder} lacks results for {', '.join(missing[:5])} "
                        f"(expected one <seq>.txt per gt sequence; an empty file for no tracks)")
    return {s: read_seq_length(gt_folder / s) for s in seqs}


@contextlib.contextmanager
def _tracker_layout(results_folder: Path, seqs):
    """A temp TrackEval trackers folder ``<tmp>/trk/<seq>.txt`` linking the user's result files."""
    with tempfile.TemporaryDirectory(prefix="mec-trackeval-") as tmp:
        folder = Path(tmp) / "trk"
        folder.mkdir()
        for seq in seqs:
            shutil.copyfile(results_folder / f"{seq}.txt", folder / f"{seq}.txt")
        yield Path(tmp), "trk"


def _run_trackeval(dataset, metric_classes) -> dict:
    import trackeval

    evaluator = trackeval.Evaluator(dict(_EVAL_CONFIG))
    metrics = [m(_QUIET) for m in metric_classes]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            output, _messages = evaluator.evaluate([dataset], metrics)
        except trackeval.utils.TrackEvalException as err:
            raise UserError(f"TrackEval refused the files: {err}") from None
    (per_tracker,) = output[dataset.get_name()].values()
    return per_tracker


def _summary(per_seq: dict, cls: str) -> dict:
    """{"idf1","hota","mota","motp","id_switches"} from TrackEval's nested output, + per-sequence ones."""
    def pick(res):
        metrics = res[cls]
        return {"idf1": 100 * float(metrics["Identity"]["IDF1"]), "hota": 100 * float(np.mean(metrics["HOTA"]["HOTA"])),
                "mota": 100 * float(metrics["CLEAR"]["MOTA"]), "motp": 100 * float(metrics["CLEAR"]["MOTP"]),
                "id_switches": int(metrics["CLEAR"]["IDSW"])}
    out = pick(per_seq["COMBINED_SEQ"])
    out["per_sequence"] = {seq: pick(res) for seq, res in per_seq.items() if seq != "COMBINED_SEQ"}
    return out


def evaluate_mot(gt_folder, results_folder, benchmark: str = "MOT16", sequences=None) -> dict:
    """Score MOTChallenge box results ``<results>/<seq>.txt`` against ``<gt>/<seq>/gt/gt.txt``.

    ``benchmark`` picks TrackEval's preprocessing: "MOT15" for 2D files whose class / visibility
    columns are -1, "MOT16" / "MOT17" / "MOT20" for the class-labelled ground truth; "auto" takes
    MOT15 when any gt file is 2D (class -1 or no class column) and MOT16 otherwise.
    Returns idf1, hota, mota, motp (percent) and id_switches (count), "benchmark" (the one used), "per_sequence";
    ``sequences`` limits the scoring to those names (default: every gt sequence).
    """
    if benchmark not in (*MOT_BENCHMARKS, "auto"):
        raise UserError(f"benchmark must be one of {', '.join(MOT_BENCHMARKS)} or auto (got {benchmark!r})")
    gt_folder, results_folder = Path(gt_folder), Path(results_folder)
    lengths = _sequences(gt_folder, results_folder, "gt/gt.txt", sequences)
    if benchmark == "auto":
        for seq, length in lengths.items():
            check_text_rows(gt_folder / seq / "gt" / "gt.txt", 7, 7, length)
        two_d = any(_has_unlabelled_classes(gt_folder / seq / "gt" / "gt.txt") for seq in lengths)
        benchmark = "MOT15" if two_d else "MOT16"
    labelled = 7 if benchmark == "MOT15" else 8  # MOT16/17/20 preprocessing reads the class column
    for seq, length in lengths.items():
        check_text_rows(gt_folder / seq / "gt" / "gt.txt", labelled, labelled, length)
        check_text_rows(results_folder / f"{seq}.txt", 6, 6, length)
        if benchmark != "MOT15" and _has_unlabelled_classes(gt_folder / seq / "gt" / "gt.txt"):
            raise UserError(f"{gt_folder / seq / 'gt' / 'gt.txt'} has class -1 (MOT15-style 2D file); "
                            "score it with benchmark='MOT15'")
    import trackeval

    with _tracker_layout(results_folder, lengths) as (trackers, name):
        dataset = trackeval.datasets.MotChallenge2DBox({
            **_QUIET, "GT_FOLDER": str(gt_folder), "TRACKERS_FOLDER": str(trackers), "TRACKERS_TO_EVAL": [name],
            "TRACKER_SUB_FOLDER": "", "OUTPUT_FOLDER": str(trackers), "BENCHMARK": benchmark,
            "SKIP_SPLIT_FOL": True, "SEQ_INFO": dict(lengths), "DO_PREPROC": benchmark != "MOT15"})
        per_seq = _run_trackeval(dataset, [trackeval.metrics.HOTA, trackeval.metrics.CLEAR, trackeval.metrics.Identity])
    return {**_summary(per_seq, "pedestrian"), "benchmark": benchmark}


def _has_unlabelled_classes(path: Path) -> bool:
    """True for a 2D (MOT15-style) gt file: a class of -1, or no class column at all (rows already checked)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.replace(",", " ").split()
        if fields and (len(fields) < 8 or fields[7].lstrip("+").startswith("-")):
            return True
    return False


def evaluate_mots(gt_folder, results_folder, sequences=None) -> dict:
    """Score MOTS RLE txt results (``time id class h w rle``) against the gt by mask IoU.

    The gt is read from ``<gt>/<seq>/gt/gt.txt`` (TrackEval layout) or, in the MOTS20 release layout,
    from ``<gt>/instances_txt/<seq>.txt`` (``<seq>/seqinfo.ini`` is needed in both). TrackEval
    MOTSChallenge: class 2 (pedestrian) is evaluated, class 10 regions are ignored.
    Returns the same keys as :func:`evaluate_mot`.
    """
    gt_folder, results_folder = Path(gt_folder), Path(results_folder)
    release = (gt_folder / "instances_txt").is_dir()
    if release:
        lengths = _release_sequences(gt_folder, results_folder, sequences)
    else:
        lengths = _sequences(gt_folder, results_folder, "gt/gt.txt", sequences)
    with contextlib.ExitStack() as stack:
        if release:  # TrackEval reads <seq>/gt/gt.txt only: lay the release's files out that way
            gt_folder = _trackeval_gt_layout(stack, gt_folder, lengths)
        for seq, length in lengths.items():
            for path in (gt_folder / seq / "gt" / "gt.txt", results_folder / f"{seq}.txt"):
                check_text_rows(path, 6, 5, length)
        import trackeval

        trackers, name = stack.enter_context(_tracker_layout(results_folder, lengths))
        dataset = trackeval.datasets.MOTSChallenge({
            **_QUIET, "GT_FOLDER": str(gt_folder), "TRACKERS_FOLDER": str(trackers), "TRACKERS_TO_EVAL": [name],
            "TRACKER_SUB_FOLDER": "", "OUTPUT_FOLDER": str(trackers), "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": dict(lengths)})
        per_seq = _run_trackeval(dataset, [trackeval.metrics.HOTA, trackeval.metrics.CLEAR, trackeval.metrics.Identity])
    return _summary(per_seq, "pedestrian")


def _release_sequences(gt_folder: Path, results_folder: Path, only=None) -> dict[str, int]:
    """Sequences of a MOTS20 release root (``instances_txt/<seq>.txt`` + ``<seq>/seqinfo.ini``)."""
    seqs = sorted(p.stem for p in (gt_folder / "instances_txt").glob("*.txt") if not only or p.stem in only)
    if not seqs:
        raise UserError(f"{gt_folder / 'instances_txt'} holds no <seq>.txt; expected {MOTS_GT_LAYOUT}")
    if not results_folder.is_dir():
        raise UserError(f"results folder {results_folder} does not exist; expected {MOTS_GT_LAYOUT}")
    missing = [s for s in seqs if not (results_folder / f"{s}.txt").is_file()]
    if missing:
        raise UserError(f"{results_folder} lacks results for {', '.join(missing[:5])} "
                        f"(expected one <seq>.txt per gt sequence; an empty file for no tracks)")
    base = gt_folder / "train" if (gt_folder / "train").is_dir() else gt_folder
    return {s: read_seq_length(base / s) for s in seqs}


def _trackeval_gt_layout(stack: contextlib.ExitStack, gt_folder: Path, lengths: dict) -> Path:
    """A temp ``<tmp>/<seq>/{gt/gt.txt, seqinfo.ini}`` copy of a MOTS20 release root."""
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mec-mots-gt-")))
    base = gt_folder / "train" if (gt_folder / "train").is_dir() else gt_folder
    for seq in lengths:
        (tmp / seq / "gt").mkdir(parents=True)
        shutil.copyfile(gt_folder / "instances_txt" / f"{seq}.txt", tmp / seq / "gt" / "gt.txt")
        shutil.copyfile(base / seq / "seqinfo.ini", tmp / seq / "seqinfo.ini")
    return tmp


def _xywh_iou_distance(gt: np.ndarray, hyp: np.ndarray, max_distance: float) -> np.ndarray:
    """1 - IoU [N, M] of (x, y, w, h) boxes, NaN (do not pair) beyond ``max_distance`` (motmetrics convention)."""
    if not len(gt) or not len(hyp):
        return np.empty((len(gt), len(hyp)))
    a = np.concatenate([gt[:, :2], gt[:, :2] + gt[:, 2:]], axis=1)
    b = np.concatenate([hyp[:, :2], hyp[:, :2] + hyp[:, 2:]], axis=1)
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    union = np.prod(gt[:, 2:], axis=1)[:, None] + np.prod(hyp[:, 2:], axis=1)[None, :] - inter
    distance = 1.0 - inter / np.maximum(union, 1e-12)
    return np.where(distance > max_distance, np.nan, distance)


def motmetrics_summary(gt_file, result_file, iou: float = 0.5) -> dict:
    """IDF1, MOTA, MOTP (mean IoU, percent) and ID switches of one sequence by motmetrics (no preprocessing).

    Rows are ``frame, id, x, y, w, h, ...``; every gt row counts (the MOT15 convention of motmetrics' tests).
    """
    import motmetrics as mm

    gt = np.loadtxt(gt_file, delimiter=",", ndmin=2)
    hyp = np.loadtxt(result_file, delimiter=",", ndmin=2)
    acc = mm.MOTAccumulator(auto_id=False)
    for frame in np.union1d(gt[:, 0], hyp[:, 0]).astype(int):
        g, h = gt[gt[:, 0] == frame], hyp[hyp[:, 0] == frame]
        acc.update(g[:, 1].astype(int).tolist(), h[:, 1].astype(int).tolist(),
                   _xywh_iou_distance(g[:, 2:6], h[:, 2:6], 1 - iou), frameid=int(frame))
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "mota", "motp", "num_switches"], name="seq")
    return {"idf1": 100 * float(summary["idf1"].iloc[0]), "mota": 100 * float(summary["mota"].iloc[0]),
            "motp": 100 * (1 - float(summary["motp"].iloc[0])), "id_switches": int(summary["num_switches"].iloc[0])}
