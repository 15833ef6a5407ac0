"""The report's vocabulary: task groups in the MEC paper's table layout, labels, metric order, directions.

Names follow the shared task/dataset/metric vocabulary of mec-eval; the groups mirror the MEC paper
(NeurIPS 2022): Table 1 (linear), Table 2 (semi-supervised), Table 3 (VOC/COCO), Table 4 (UniTrack
video tasks, per backbone layer) and Table 8 (transfer to 11 classification sets).
"""
from __future__ import annotations

from dataclasses import dataclass

# Counts, not percentages: a smaller number is better and the value is printed without decimals.
LOWER_IS_BETTER = frozenset({"id_switches"})
COUNT_METRICS = frozenset({"id_switches"})
DIAGNOSTIC_METRICS = frozenset({"coding_length", "effective_rank"})
# Published tables that the report ranks and tabulates: MEC Figure 1 ranks Tables 1-4; Table 8 feeds the
# supplementary transfer axes. Ablations and variants (Tables 5-7) stay in results.csv.
RANKED_PUBLISHED_TABLES = ("mec-table1", "mec-table2", "mec-table3", "mec-table4", "mec-table8")


# The canonical task vocabulary of mec-eval: task -> (datasets or None for any, metrics primary first).
TASK_METRICS: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...]]] = {
    "linear": (("imagenet",), ("top1", "top5")),
    "linear-fast": (None, ("top1", "top5")),
    "knn": (None, ("top1", "top5")),
    "semi-1pct": (("imagenet",), ("top1", "top5")),
    "semi-10pct": (("imagenet",), ("top1", "top5")),
    "voc07": (("voc2007",), ("AP", "AP50", "AP75")),
    "voc0712": (("voc2007",), ("AP", "AP50", "AP75")),
    "coco": (("coco2017",), ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75")),
    "sot": (("otb2015",), ("auc_xcorr", "auc_dcf")),
    "vos": (("davis2017",), ("j_mean",)),
    "mot": (("mot16",), ("idf1", "hota")),
    "mots": (("mots20",), ("idf1", "hota")),
    "posetrack": (("posetrack2018",), ("idf1", "id_switches")),
}
# The 11-dataset transfer tasks score each dataset with its own metric (MEC paper Table 8, after [12]).
TRANSFER_TASKS = ("transfer-linear", "transfer-finetune")
TRANSFER_METRICS = {
    "food101": "top1", "cifar10": "top1", "cifar100": "top1", "sun397": "top1", "cars": "top1",
    "aircraft": "mean_per_class", "voc2007": "voc07_map", "dtd": "top1", "pets": "mean_per_class",
    "caltech101": "mean_per_class", "flowers102": "mean_per_class",
}


@dataclass(frozen=True)
class TaskGroup:
    """One results table: the tasks it holds, in column order, and whether only primary metrics show."""

    key: str
    title: str
    tasks: tuple[str, ...]
    primary_only: bool = False
    datasets_as_columns: bool = False


GROUPS = (
    TaskGroup("linear", "Linear probing and k-NN (MEC Table 1 layout)", ("linear", "linear-fast", "knn")),
    TaskGroup("semi", "Semi-supervised classification (MEC Table 2 layout)", ("semi-1pct", "semi-10pct")),
    TaskGroup("detection", "Object detection and instance segmentation (MEC Table 3 layout)",
              ("voc07", "voc0712", "coco")),
    TaskGroup("video", "Video tasks with UniTrack, per backbone layer (MEC Table 4 layout)",
              ("sot", "vos", "mot", "mots", "posetrack")),
    TaskGroup("transfer-linear", "Transfer, linear probing (MEC Table 8 layout)", ("transfer-linear",),
              primary_only=True, datasets_as_columns=True),
    TaskGroup("transfer-finetune", "Transfer, fine-tuned (MEC Table 8 layout)", ("transfer-finetune",),
              primary_only=True, datasets_as_columns=True),
)

# The dataset each task is evaluated on in the paper; another dataset is named in every label.
PAPER_DATASETS = {
    "linear": "imagenet", "linear-fast": "imagenet", "knn": "imagenet", "semi-1pct": "imagenet",
    "semi-10pct": "imagenet", "voc07": "voc2007", "voc0712": "voc2007", "coco": "coco2017",
    "sot": "otb2015", "vos": "davis2017", "mot": "mot16", "mots": "mots20", "posetrack": "posetrack2018",
}

TASK_LABELS = {
    "linear": "Linear probing", "linear-fast": "Linear probing (linear-fast)", "knn": "k-NN",
    "semi-1pct": "1% labels", "semi-10pct": "10% labels", "voc07": "VOC 07 detection",
    "voc0712": "VOC 07+12 detection", "sot": "SOT", "vos": "VOS", "mot": "MOT", "mots": "MOTS",
    "posetrack": "PoseTrack", "transfer-linear": "Transfer (linear)", "transfer-finetune": "Transfer (fine-tuned)",
}

# Table 8 column order and labels.
TRANSFER_DATASETS = tuple(TRANSFER_METRICS)
DATASET_LABELS = {
    "food101": "Food101", "cifar10": "CIFAR10", "cifar100": "CIFAR100", "sun397": "SUN397", "cars": "Cars",
    "aircraft": "Aircraft", "voc2007": "VOC2007", "dtd": "DTD", "pets": "Pets", "caltech101": "Caltech-101",
    "flowers102": "Flowers",
}

METRIC_ORDER = ("top1", "top5", "AP50", "AP", "AP75", "bbox_AP50", "bbox_AP", "bbox_AP75", "segm_AP50", "segm_AP",
                "segm_AP75", "auc_xcorr", "auc_dcf", "j_mean", "idf1", "hota", "id_switches", "mean_per_class",
                "voc07_map", "coding_length", "effective_rank")
METRIC_LABELS = {
    "top1": "Top-1", "top5": "Top-5", "bbox_AP50": "AP50", "bbox_AP": "AP", "bbox_AP75": "AP75",
    "segm_AP50": "AP50 mask", "segm_AP": "AP mask", "segm_AP75": "AP75 mask", "auc_xcorr": "AUC XCorr",
    "auc_dcf": "AUC DCF", "j_mean": "J-mean", "idf1": "IDF1", "hota": "HOTA", "id_switches": "IDs",
    "mean_per_class": "mean/class", "voc07_map": "mAP", "coding_length": "coding length",
    "effective_rank": "effective rank",
}


def is_diagnostic(task: str, metric: str) -> bool:
    """Representation diagnostics get their own section: they describe a representation, they do not score it."""
    return task.startswith("diagnostics") or metric in DIAGNOSTIC_METRICS


def group_of(task: str) -> str:
    """Key of the table a task belongs to; tasks outside the paper's tables go to ``other``."""
    for group in GROUPS:
        if task in group.tasks:
            return group.key
    return "other"


def metric_sort_key(metric: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def dataset_sort_key(task: str, dataset: str) -> tuple[int, str]:
    """The paper's dataset first (or Table 8's order for transfer), then alphabetical."""
    if dataset == PAPER_DATASETS.get(task):
        return (0, dataset)
    if dataset in TRANSFER_DATASETS:
        return (1 + TRANSFER_DATASETS.index(dataset), dataset)
    return (1 + len(TRANSFER_DATASETS), dataset)


def task_label(task: str, dataset: str, metric: str = "") -> str:
    """Header text for a task; names the dataset when it is not the paper's (COCO splits as in Table 3)."""
    label = TASK_LABELS.get(task, task)
    if task == "coco":
        label = "COCO instance seg." if metric.startswith("segm") else "COCO detection"
    if task in PAPER_DATASETS and dataset != PAPER_DATASETS[task]:
        label += f" [{dataset}]"
    elif task not in PAPER_DATASETS and task not in ("transfer-linear", "transfer-finetune"):
        label += f" [{dataset}]"
    return label


def metric_label(metric: str, higher_is_better: bool | None) -> str:
    """Header text for a metric with its direction arrow (as the paper's Table 4); None: no arrow."""
    label = METRIC_LABELS.get(metric, metric)
    return label if higher_is_better is None else f"{label} {'↑' if higher_is_better else '↓'}"
