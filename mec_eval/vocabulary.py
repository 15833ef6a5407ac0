"""The one list of task, dataset and metric names of mec-eval, and what each name means.

Everything that names a task, a dataset or a metric takes the name from here: the dataset registry
(:mod:`mec_eval.data`), ``write_result`` (:mod:`mec_eval.runs`), which refuses a result.json that
uses a name missing here, and the report (:mod:`mec_eval.report.catalog`), which lays the names out
as the MEC paper's tables (NeurIPS 2022: Table 1 linear, Table 2 semi-supervised, Table 3 VOC/COCO,
Table 4 UniTrack video tasks, Table 8 transfer to 11 classification sets).

Bottom layer: imports nothing from mec_eval and no torch, so the CLI and the report can read it
cheaply. Adding a task, dataset or metric means adding one record below.

A task spec (``tasks/<name>.yaml``) is named after its task, or ``<task>-<variant>`` for another
setting of the same protocol (``knn-200``, ``semi-1pct-mec``, ``transfer-finetune-fast``);
:func:`task` resolves both to the task's record.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal, get_args

DataKind = Literal["classification", "detection", "video"]
"""What a dataset's items are; :mod:`mec_eval.data` documents the item contract of each kind."""
DATA_KINDS: tuple[DataKind, ...] = get_args(DataKind)

TaskFamily = Literal["linear", "semi", "detection", "video", "transfer", "diagnostics"]
"""The paper table a task belongs to (the report draws one table per family)."""


@dataclass(frozen=True)
class Metric:
    """A metric name: its label in the paper's tables and how to read it.

    ``count`` metrics are integers (printed without decimals); ``diagnostic`` metrics describe a
    representation rather than score it, so the report never ranks them.
    """

    name: str
    label: str
    higher_is_better: bool = True
    count: bool = False
    diagnostic: bool = False


@dataclass(frozen=True)
class Task:
    """A task name: the metrics it writes (primary first), the data it reads, where the paper reports it.

    ``paper_dataset`` is the dataset the paper evaluates the task on (None: the task is run per
    dataset, as transfer, or on any); ``datasets`` are the ones a published table may report it on
    (None: any dataset in :data:`DATASETS`).
    """

    name: str
    label: str
    family: TaskFamily
    kind: DataKind
    metrics: tuple[str, ...]
    paper_dataset: str | None = None
    datasets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Dataset:
    """A dataset name, its label in the paper's tables and, for classification sets, the metric that
    scores it (MEC Table 8 after ssl-transfer; None where the task decides)."""

    name: str
    label: str
    metric: str | None = "top1"


# In the order the paper's tables list them; the report sorts columns by it.
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("top1", "Top-1"), Metric("top5", "Top-5"),
    Metric("AP50", "AP50"), Metric("AP", "AP"), Metric("AP75", "AP75"),
    Metric("bbox_AP50", "AP50"), Metric("bbox_AP", "AP"), Metric("bbox_AP75", "AP75"),
    Metric("bbox_APs", "APs"), Metric("bbox_APm", "APm"), Metric("bbox_APl", "APl"),
    Metric("segm_AP50", "AP50 mask"), Metric("segm_AP", "AP mask"), Metric("segm_AP75", "AP75 mask"),
    Metric("segm_APs", "APs mask"), Metric("segm_APm", "APm mask"), Metric("segm_APl", "APl mask"),
    Metric("auc_xcorr", "AUC XCorr"), Metric("auc_dcf", "AUC DCF"),
    Metric("auc", "AUC"),  # another tracker's OTB results scored by `mec-eval score` (no UniTrack head)
    Metric("j_mean", "J-mean"),
    Metric("f_mean", "F-mean"), Metric("jf_mean", "J&F-mean"),
    Metric("idf1", "IDF1"), Metric("hota", "HOTA"), Metric("mota", "MOTA"),
    Metric("id_switches", "IDs", higher_is_better=False, count=True),  # identity switches: errors counted
    Metric("mean_per_class", "mean/class"), Metric("voc07_map", "mAP"),
    Metric("coding_length", "coding length", diagnostic=True),
    Metric("effective_rank", "effective rank", diagnostic=True),
    # Matrix information diagnostics (mec_eval.diagnostics): each also "_centred" (features centred before
    # normalisation). Never ranked; the task lists alignment / uniformity as lower-is-tighter in result.json.
    *(Metric(f"{name}{suffix}", f"{label}{' (centred)' if suffix else ''}", diagnostic=True)
      for suffix in ("", "_centred")
      for name, label in (
          ("entropy_h1", "H1"), ("entropy_h2", "H2"), ("entropy_h1_norm", "H1 / log d"),
          ("entropy_h2_norm", "H2 / log d"), ("total_coding_rate", "TCR"), ("umae_uniformity", "U-MAE uniformity"),
          ("alignment", "alignment"), ("uniformity", "uniformity"), ("mutual_information", "MI"),
          ("joint_entropy", "joint entropy"))),
    Metric("coding_length_centred", "coding length (centred)", diagnostic=True),
    Metric("effective_rank_centred", "effective rank (centred)", diagnostic=True),
)}

# MEC Table 8's 11 transfer sets, in its column order.
_TABLE8 = ("food101", "cifar10", "cifar100", "sun397", "cars", "aircraft", "voc2007", "dtd", "pets", "caltech101",
           "flowers102")

DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("digits", "digits"), Dataset("shapes", "shapes"), Dataset("imagenet", "ImageNet"),
    Dataset("imagefolder", "ImageFolder"),
    Dataset("food101", "Food101"), Dataset("cifar10", "CIFAR10"), Dataset("cifar100", "CIFAR100"),
    Dataset("sun397", "SUN397"), Dataset("cars", "Cars"), Dataset("aircraft", "Aircraft", "mean_per_class"),
    Dataset("voc2007", "VOC2007", "voc07_map"), Dataset("dtd", "DTD"), Dataset("pets", "Pets", "mean_per_class"),
    Dataset("caltech101", "Caltech-101", "mean_per_class"), Dataset("flowers102", "Flowers", "mean_per_class"),
    # Scored by the detection / video task that reads them.
    Dataset("pascal-voc", "VOC", None), Dataset("coco2017", "COCO 2017", None), Dataset("otb2015", "OTB-2015", None),
    Dataset("davis2017", "DAVIS 2017", None), Dataset("mot16", "MOT16", None), Dataset("mots20", "MOTS20", None),
    Dataset("posetrack2018", "PoseTrack 2018", None),
    # Seeded synthetic sets written in the real layouts (VOC / COCO; OTB, DAVIS, MOTChallenge, PoseTrack).
    Dataset("shapes-detection", "shapes (synthetic detection)", None),
    Dataset("shapes-video", "shapes (synthetic video)", None),
)}

_CLASSIFY = ("top1", "top5")
_DETECT = ("AP", "AP50", "AP75")
_TRACK = ("idf1", "hota", "mota", "id_switches")
# Transfer tasks score each set by its own metric; mean_per_class sets also record top1, top1 sets top5.
_TRANSFER = ("top1", "top5", "mean_per_class", "voc07_map")

TASKS: dict[str, Task] = {t.name: t for t in (
    Task("linear", "Linear probing", "linear", "classification", _CLASSIFY, "imagenet", ("imagenet",)),
    Task("linear-fast", "Linear probing (linear-fast)", "linear", "classification", _CLASSIFY, "imagenet"),
    Task("knn", "k-NN", "linear", "classification", _CLASSIFY, "imagenet"),
    Task("semi-1pct", "1% labels", "semi", "classification", _CLASSIFY, "imagenet", ("imagenet",)),
    Task("semi-10pct", "10% labels", "semi", "classification", _CLASSIFY, "imagenet", ("imagenet",)),
    # VOC 07 and 07+12 are both tested on VOC 2007 test (MEC Table 3); "pascal-voc" is the VOCdevkit
    # detection set (the classification transfer set "voc2007" reads the same folder another way).
    Task("voc07", "VOC 07 detection", "detection", "detection", _DETECT, "pascal-voc", ("pascal-voc",)),
    Task("voc0712", "VOC 07+12 detection", "detection", "detection", _DETECT, "pascal-voc", ("pascal-voc",)),
    Task("coco", "COCO", "detection", "detection",
         ("bbox_AP", "bbox_AP50", "bbox_AP75", "bbox_APs", "bbox_APm", "bbox_APl",
          "segm_AP", "segm_AP50", "segm_AP75", "segm_APs", "segm_APm", "segm_APl"), "coco2017", ("coco2017",)),
    Task("sot", "SOT", "video", "video", ("auc_xcorr", "auc_dcf", "auc"), "otb2015", ("otb2015",)),
    Task("vos", "VOS", "video", "video", ("j_mean", "f_mean", "jf_mean"), "davis2017", ("davis2017",)),
    Task("mot", "MOT", "video", "video", _TRACK, "mot16", ("mot16",)),
    Task("mots", "MOTS", "video", "video", _TRACK, "mots20", ("mots20",)),
    Task("posetrack", "PoseTrack", "video", "video", ("idf1", "id_switches", "mota"), "posetrack2018", ("posetrack2018",)),
    Task("transfer-linear", "Transfer (linear)", "transfer", "classification", _TRANSFER, None, _TABLE8),
    Task("transfer-finetune", "Transfer (fine-tuned)", "transfer", "classification", _TRANSFER, None, _TABLE8),
    Task("diagnostics", "diagnostics", "diagnostics", "classification",
         tuple(f"{name}{suffix}" for suffix in ("", "_centred") for name in (
             "coding_length", "effective_rank", "entropy_h1", "entropy_h2", "entropy_h1_norm", "entropy_h2_norm",
             "total_coding_rate", "umae_uniformity", "alignment", "uniformity", "mutual_information",
             "joint_entropy"))),
)}

TRANSFER_TASKS = tuple(name for name, t in TASKS.items() if t.family == "transfer")
TRANSFER_DATASETS = _TABLE8


def _unknown(what: str, name: object, known, known_as: str = "known") -> str:
    """``unknown <what> 'x'; did you mean a, b? (known: ...)``: one line, the name shown shortened."""
    shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
    close = difflib.get_close_matches(str(name)[:100], list(known), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"{what} {shown}{hint} ({known_as}: {', '.join(known)})"


def task(name: str) -> Task:
    """The record of task ``name`` or of ``<task>-<variant>`` (the longest task name it extends).

    Raises ValueError naming the close matches when ``name`` is neither.
    """
    if name in TASKS:
        return TASKS[name]
    bases = [base for base in TASKS if isinstance(name, str) and name.startswith(base + "-")]
    if bases:
        return TASKS[max(bases, key=len)]
    raise ValueError(_unknown("unknown task", name, TASKS) + "; a task spec is named <task> or <task>-<variant>")


def dataset(name: str) -> Dataset:
    """The record of dataset ``name``; ValueError naming the close matches when it is unknown."""
    if name not in DATASETS:
        raise ValueError(_unknown("unknown dataset", name, DATASETS))
    return DATASETS[name]


def metric(name: str) -> Metric:
    """The record of metric ``name``; ValueError naming the close matches when it is unknown."""
    if name not in METRICS:
        raise ValueError(_unknown("unknown metric", name, METRICS))
    return METRICS[name]


def tasks_of(family: TaskFamily) -> tuple[str, ...]:
    """The family's task names in vocabulary order (the report's column order)."""
    return tuple(name for name, t in TASKS.items() if t.family == family)


def primary_metric(task_name: str, dataset_name: str) -> str:
    """The metric a task is ranked by on a dataset: the dataset's own for transfer, else the task's first."""
    record = task(task_name)
    if record.family == "transfer":
        return dataset(dataset_name).metric or record.metrics[0]
    return record.metrics[0]


def name_problems(task_name: str, dataset_name: str, metric_names) -> list[str]:
    """What is outside the vocabulary in a result: its task, its dataset, metrics its task does not write.

    Empty when every name is known. Each problem is one sentence with the close matches.
    """
    problems = []
    try:
        record = task(task_name)
    except ValueError as err:
        problems.append(str(err))
        record = None
    if dataset_name not in DATASETS:
        problems.append(_unknown("unknown dataset", dataset_name, DATASETS))
    if record is not None:
        for name in metric_names:
            if name not in record.metrics:
                variant = "" if record.name == task_name else f" (a variant of {record.name})"
                problems.append(_unknown(f"task {task_name}{variant} has no metric", name, record.metrics,
                                         f"{record.name} writes"))
    return problems
