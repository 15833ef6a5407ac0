"""``mec-eval score``: score detections or tracks that another tool wrote, with the tasks' own evaluators.

Any detector's COCO-format detections, any tracker's MOTChallenge / MOTS / PoseTrack / DAVIS / OTB
output is scored by the same code that scores mec-eval's runs, and (with ``--out``) written as a
``result.json`` that the report ranks next to them: ``RUNS/<task>/<pred name>/<hash>/result.json``,
with the prediction file (or folder) in the place of the checkpoint and its sha256.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mec_eval import vocabulary
from mec_eval.config import config_hash
from mec_eval.runs import RESULT_FILE, build_result, check_output_dir, now_iso, run_dir, write_result
from mec_eval.utils import UserError, sha256_file

# What --gt and --pred name for each task (the help text and the error for a missing path).
EXPECTED = {
    "voc07": ("a VOCdevkit folder (VOC2007/Annotations, ImageSets/Main/test.txt)",
              "a COCO-results JSON list (image_id = ImageSets name, category_id = VOC class name)"),
    "coco": ("a COCO 2017 folder (annotations/instances_val2017.json)",
             "a COCO-results JSON list (bbox XYWH; segmentation RLE for segm)"),
    "mot": ("a MOTChallenge split folder (<seq>/gt/gt.txt, <seq>/seqinfo.ini)", "a folder of <seq>.txt results"),
    "mots": ("a MOTS20 split folder (<seq>/gt/gt.txt, <seq>/seqinfo.ini)", "a folder of <seq>.txt RLE results"),
    "posetrack": ("a folder of PoseTrack 2018 <seq>.json annotations", "a folder of <seq>.json predictions"),
    "vos": ("DAVIS Annotations/480p (<seq>/00000.png)", "a folder of <seq>/<frame>.png palette PNGs"),
    "sot": ("an OTB groundtruth_rect.txt (x,y,w,h per line)", "the tracker's rectangle file for that sequence"),
}
EXPECTED["voc0712"] = EXPECTED["voc07"]


@dataclass
class Scored:
    dataset: str
    metrics: dict
    extra: dict


def _detection(task: str, gt: Path, pred: Path) -> Scored:
    from mec_eval.metrics.detection_scoring import score_detections

    metrics, extra, dataset = score_detections(task, gt, pred)
    return Scored(dataset, metrics, extra)


def _tracking(evaluate: Callable, dataset: str) -> Callable[[str, Path, Path], Scored]:
    def score(_task: str, gt: Path, pred: Path) -> Scored:
        out = dict(evaluate(gt, pred))
        per_sequence = out.pop("per_sequence", None)
        metrics = {k: v for k, v in out.items() if k in vocabulary.task(_task).metrics}
        extra = {k: v for k, v in out.items() if k not in metrics}
        return Scored(dataset, metrics, {**extra, **({"per_sequence": per_sequence} if per_sequence else {})})
    return score


def _mot(task, gt, pred):
    from mec_eval.metrics.mot import evaluate_mot

    # No flag to pick the benchmark: a MOT15-style 2D gt gets MOT15's (no) preprocessing, others MOT16's;
    # extra.benchmark says which.
    return _tracking(lambda g, p: evaluate_mot(g, p, benchmark="auto"), "mot16")(task, gt, pred)


def _mots(task, gt, pred):
    from mec_eval.metrics.mot import evaluate_mots
    return _tracking(evaluate_mots, "mots20")(task, gt, pred)


def _posetrack(task, gt, pred):
    from mec_eval.metrics.posetrack import evaluate_posetrack
    return _tracking(evaluate_posetrack, "posetrack2018")(task, gt, pred)


def _vos(task, gt, pred):
    from mec_eval.metrics.vos import evaluate_vos
    return _tracking(evaluate_vos, "davis2017")(task, gt, pred)


def _sot(task: str, gt: Path, pred: Path) -> Scored:
    from mec_eval.metrics.sot import evaluate_sot

    if not gt.is_file() or not pred.is_file():
        raise UserError(f"score --task sot takes one sequence: --gt {EXPECTED['sot'][0]}, --pred {EXPECTED['sot'][1]}")
    out = evaluate_sot(gt, pred)
    return Scored("otb2015", {"auc": float(out["auc"])},
                  {k: v for k, v in out.items() if k != "auc" and isinstance(v, (int, float))})


SCORERS: dict[str, Callable[[str, Path, Path], Scored]] = {
    "voc07": _detection, "voc0712": _detection, "coco": _detection, "mot": _mot, "mots": _mots,
    "posetrack": _posetrack, "vos": _vos, "sot": _sot}


def check_score_args(task: str, gt: str, pred: str) -> None:
    """Torch-free checks of ``score``'s arguments: a known task, and both paths present."""
    if task not in SCORERS:
        raise UserError(f"score handles {', '.join(SCORERS)}; got --task {task[:60]!r}")
    for flag, path, what in (("--gt", gt, EXPECTED[task][0]), ("--pred", pred, EXPECTED[task][1])):
        if not Path(path).exists():
            raise UserError(f"{flag} {path[:200]} does not exist; {flag} is {what}")


def _fingerprint(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode() + b"\0" + sha256_file(item).encode())
    return digest.hexdigest()


def score_outputs(task: str, gt: str, pred: str, runs_root: str | None = None) -> tuple[dict, Path | None]:
    """Score ``pred`` against ``gt`` for ``task``; returns (the result dict, where it was written or None)."""
    check_score_args(task, gt, pred)
    if runs_root is not None:
        check_output_dir(runs_root)
    started, t0 = now_iso(), time.perf_counter()
    gt_path, pred_path = Path(gt), Path(pred)
    scored = SCORERS[task](task, gt_path, pred_path)
    record = vocabulary.task(task)
    primary = next((m for m in record.metrics if m in scored.metrics), None)
    if primary is None:
        raise ValueError(f"the {task} scorer returned none of {record.metrics}")
    sha = _fingerprint(pred_path)
    name = pred_path.stem if pred_path.is_file() else pred_path.name
    config = {"gt": str(gt_path.resolve()), "pred": str(pred_path.resolve())}
    lower = [m for m in scored.metrics if not vocabulary.metric(m).higher_is_better]
    result = build_result(task=task, dataset=scored.dataset, protocol="scored",
                          checkpoint={"name": name, "path": config["pred"], "sha256": sha}, metrics=scored.metrics,
                          primary=primary, higher_is_better=vocabulary.metric(primary).higher_is_better,
                          config=config, seed=0, started=started, duration_s=time.perf_counter() - t0,
                          lower_is_better_metrics=lower, extra={"extra": scored.extra} if scored.extra else None)
    if runs_root is None:
        return result, None
    folder = run_dir(runs_root, task, name, config_hash({"task": task, "gt": config["gt"], "pred": sha}))
    folder.mkdir(parents=True, exist_ok=True)
    write_result(folder, result)
    return result, folder / RESULT_FILE
