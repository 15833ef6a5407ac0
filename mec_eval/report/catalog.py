"""The report's layout of the vocabulary: task groups in the MEC paper's table layout, labels, metric order.

Every name, label and direction comes from :mod:`mec_eval.vocabulary`; this module only arranges
them as the MEC paper (NeurIPS 2022) does: Table 1 (linear), Table 2 (semi-supervised), Table 3
(VOC/COCO), Table 4 (UniTrack video tasks, per backbone layer) and Table 8 (transfer to 11
classification sets).
"""
from __future__ import annotations

from dataclasses import dataclass

from mec_eval import vocabulary
from mec_eval.vocabulary import DATASETS, METRICS, TASKS, TRANSFER_DATASETS, TRANSFER_TASKS

LOWER_IS_BETTER = frozenset(name for name, m in METRICS.items() if not m.higher_is_better)
# Counts, not percentages: printed without decimals.
COUNT_METRICS = frozenset(name for name, m in METRICS.items() if m.count)
DIAGNOSTIC_METRICS = frozenset(name for name, m in METRICS.items() if m.diagnostic)
# Published tables that the report ranks and tabulates: MEC Figure 1 ranks Tables 1-4; Table 8 feeds the
# supplementary transfer axes. Ablations and variants (Tables 5-7) stay in results.csv.
RANKED_PUBLISHED_TABLES = ("mec-table1", "mec-table2", "mec-table3", "mec-table4", "mec-table8")


@dataclass(frozen=True)
class TaskGroup:
    """One results table: the tasks it holds, in column order, and whether only primary metrics show."""

    key: str
    title: str
    tasks: tuple[str, ...]
    primary_only: bool = False
    datasets_as_columns: bool = False


_TRANSFER_TITLES = {"transfer-linear": "linear probing", "transfer-finetune": "fine-tuned"}
GROUPS = (
    TaskGroup("linear", "Linear probing and k-NN (MEC Table 1 layout)", vocabulary.tasks_of("linear")),
    TaskGroup("semi", "Semi-supervised classification (MEC Table 2 layout)", vocabulary.tasks_of("semi")),
    TaskGroup("detection", "Object detection and instance segmentation (MEC Table 3 layout)",
              vocabulary.tasks_of("detection")),
    TaskGroup("video", "Video tasks with UniTrack, per backbone layer (MEC Table 4 layout)",
              vocabulary.tasks_of("video")),
    # Table 8 has one half per transfer task, each with the 11 datasets as columns.
    *(TaskGroup(name, f"Transfer, {_TRANSFER_TITLES[name]} (MEC Table 8 layout)", (name,), primary_only=True,
                datasets_as_columns=True) for name in TRANSFER_TASKS),
)

# The dataset each task is evaluated on in the paper; another dataset is named in every label.
PAPER_DATASETS = {name: t.paper_dataset for name, t in TASKS.items() if t.paper_dataset is not None}
TASK_LABELS = {name: t.label for name, t in TASKS.items()}
DATASET_LABELS = {name: d.label for name, d in DATASETS.items()}
METRIC_ORDER = tuple(METRICS)
METRIC_LABELS = {name: m.label for name, m in METRICS.items()}


def is_diagnostic(task: str, metric: str) -> bool:
    """Representation diagnostics get their own section: they describe a representation, they do not score it."""
    try:
        family = vocabulary.task(task).family  # "diagnostics-<variant>" included
    except ValueError:  # a task this mec-eval does not know (an older or newer result.json) scores
        family = None
    return metric in DIAGNOSTIC_METRICS or family == "diagnostics"


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
    if task not in TRANSFER_TASKS and dataset != PAPER_DATASETS.get(task):
        label += f" [{dataset}]"
    return label


def metric_label(metric: str, higher_is_better: bool | None) -> str:
    """Header text for a metric with its direction arrow (as the paper's Table 4); None: no arrow."""
    label = METRIC_LABELS.get(metric, metric)
    return label if higher_is_better is None else f"{label} {'↑' if higher_is_better else '↓'}"
