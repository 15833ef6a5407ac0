"""Ranks per task and the radar axes of MEC Figure 1 (rank 1 is best; ties share the better rank).

Figure 1 of the MEC paper plots, on each task's axis, the rank of every representation, so that a
larger polygon means better generalisation. Axes: LIN, SEMI, VOC, COCO, SEG for image tasks and SOT,
VOS, MOT, MOTS, PoseTrack for video tasks (App. C "Details of Figure 1"; UniTrack tasks use the better
of the layer3/layer4 features, as Table 4 does).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mec_eval.report.catalog import dataset_sort_key
from mec_eval.report.collect import PUBLISHED_MARK
from mec_eval.vocabulary import TASKS

MIN_AXES = 3


def rank_values(values: pd.Series, higher_is_better: bool) -> pd.Series:
    """Rank 1 = best; ties share the better rank (pandas ``method="min"``); missing values stay NaN."""
    adjusted = values.astype(float) if higher_is_better else -values.astype(float)
    return adjusted.rank(ascending=False, method="min", na_option="keep")


def polygon_area(radii) -> float:
    """Area of the polygon with these radii on k equally spaced axes: 0.5 sin(2pi/k) sum r_i r_{i+1}."""
    r = np.asarray(radii, dtype=float)
    if r.size < MIN_AXES:
        raise ValueError(f"a polygon needs at least {MIN_AXES} radii, got {r.size}")
    return float(0.5 * np.sin(2 * np.pi / r.size) * np.sum(r * np.roll(r, -1)))


def max_area(n_entries: int, n_axes: int) -> float:
    """Largest possible area: every axis at rank 1 (radius n), i.e. n^2 k 0.5 sin(2pi/k)."""
    return polygon_area([float(n_entries)] * n_axes)


@dataclass(frozen=True)
class AxisSpec:
    """A candidate radar axis: tasks in order of preference, the metric (None: mean primary over datasets)."""

    name: str
    tasks: tuple[str, ...]
    metric: str | None
    supplementary: bool = False

    @property
    def paper_dataset(self) -> str | None:
        """The dataset of the axis's first task in the paper (the vocabulary's); None for transfer."""
        return TASKS[self.tasks[0]].paper_dataset


# How an axis label names a fallback task (LIN measured with the fast probe, SEMI with 10 % labels, ...).
TASK_TAGS = {"linear-fast": "fast", "linear-grid": "grid", "semi-10pct": "10%", "voc07": "VOC07",
             **{f"{task}-cpu-small": "synthetic cpu-small"
                for task in ("voc07", "coco", "sot", "vos", "mot", "mots", "posetrack")}}

IMAGE_AXES = (
    AxisSpec("LIN", ("linear", "linear-grid", "linear-fast"), "top1"),
    AxisSpec("SEMI", ("semi-1pct", "semi-10pct"), "top1"),
    AxisSpec("VOC", ("voc0712", "voc07", "voc07-cpu-small"), "AP"),
    AxisSpec("COCO", ("coco", "coco-cpu-small"), "bbox_AP"),
    AxisSpec("SEG", ("coco", "coco-cpu-small"), "segm_AP"),
)
# The labelled CPU variants on synthetic data come last: an axis uses them only when no faithful run has
# results, and the label then names the variant and the synthetic dataset ("SOT (synthetic cpu-small, shapes-video)").
VIDEO_AXES = (
    AxisSpec("SOT", ("sot", "sot-cpu-small"), "auc_xcorr"),
    AxisSpec("VOS", ("vos", "vos-cpu-small"), "j_mean"),
    AxisSpec("MOT", ("mot", "mot-cpu-small"), "idf1"),
    AxisSpec("MOTS", ("mots", "mots-cpu-small"), "idf1"),
    AxisSpec("PoseTrack", ("posetrack", "posetrack-cpu-small"), "idf1"),
)
SUPPLEMENTARY_AXES = (
    AxisSpec("kNN", ("knn",), "top1", supplementary=True),
    AxisSpec("T-LIN", ("transfer-linear",), None, supplementary=True),
    AxisSpec("T-FT", ("transfer-finetune",), None, supplementary=True),
)
KIND_AXES = {"image": IMAGE_AXES, "video": VIDEO_AXES}


@dataclass
class Axis:
    """A resolved axis: which numbers it ranks and each entry's value (best over settings)."""

    label: str
    task: str
    dataset: str
    metric: str
    higher_is_better: bool
    values: pd.Series
    supplementary: bool = False


def _best_per_entry(rows: pd.DataFrame, higher: bool, by: list[str]) -> pd.Series:
    grouped = rows.groupby(by)["value"]
    return grouped.max() if higher else grouped.min()


def _pick_dataset(rows: pd.DataFrame, paper_dataset: str | None) -> str:
    """The paper's dataset when present, else the one most entries have (ties: alphabetical)."""
    counts = rows.groupby("dataset")["entry"].nunique()
    if paper_dataset in counts.index:
        return paper_dataset
    return min(counts.index, key=lambda d: (-counts[d], d))


def _mean_axis(spec: AxisSpec, task: str, rows: pd.DataFrame) -> tuple[Axis | None, str]:
    """Mean primary metric over the datasets every entry has (Table 8 mixes top-1, mean/class and mAP)."""
    per_dataset = _best_per_entry(rows, True, ["entry", "dataset"]).unstack("dataset")
    common = sorted(per_dataset.dropna(axis=1).columns, key=lambda d: dataset_sort_key(task, d))
    if not common:
        return None, f"{spec.name} left out: no {task} dataset is shared by every checkpoint."
    axis = Axis(spec.name, task, "+".join(common), "primary", True, per_dataset[common].mean(axis=1),
                supplementary=True)
    return axis, f"{spec.name} = mean {task} primary metric over {', '.join(common)}."


def resolve_axis(cells: pd.DataFrame, spec: AxisSpec) -> tuple[Axis | None, str]:
    """The axis for ``spec`` from the first of its tasks with results, plus a note ('' if none needed)."""
    for task in spec.tasks:
        rows = cells[cells["task"] == task]
        rows = rows[rows["primary"]] if spec.metric is None else rows[rows["metric"] == spec.metric]
        if rows.empty:
            continue
        if spec.metric is None:
            return _mean_axis(spec, task, rows)
        dataset = _pick_dataset(rows, spec.paper_dataset)
        rows = rows[rows["dataset"] == dataset]
        higher = bool(rows["higher_is_better"].iloc[0])
        tags = [TASK_TAGS.get(task, task)] if task != spec.tasks[0] else []
        tags += [dataset] if dataset != spec.paper_dataset else []
        label = f"{spec.name} ({', '.join(tags)})" if tags else spec.name
        return Axis(label, task, dataset, spec.metric, higher, _best_per_entry(rows, higher, ["entry"]),
                    spec.supplementary), ""
    return None, ""


@dataclass
class AxisSelection:
    axes: list[Axis]
    missing: list[str]          # paper axes without any result
    notes: list[str]


def choose_axes(cells: pd.DataFrame, kind: str) -> AxisSelection:
    """The paper's axes that have results; for image charts with fewer than 3, supplementary ones too."""
    axes, missing, notes = [], [], []
    for spec in KIND_AXES[kind]:
        axis, note = resolve_axis(cells, spec)
        if axis:
            axes.append(axis)
        else:
            missing.append(spec.name)
        notes += [note] if note else []
    if kind == "image" and len(axes) < MIN_AXES:
        extra = []
        for spec in SUPPLEMENTARY_AXES:
            axis, note = resolve_axis(cells, spec)
            extra += [axis] if axis else []
            notes += [note] if note else []
        if extra:
            notes.insert(0, f"Fewer than {MIN_AXES} paper axes have results, so supplementary axes were added "
                            f"(not in MEC Figure 1): {', '.join(a.label for a in extra)}.")
        axes += extra
    return AxisSelection(axes, missing, notes)


@dataclass
class RadarChart:
    """Ranks and polygon areas of one radar chart; ``reason`` says why it cannot be drawn ('' if it can)."""

    title: str
    kind: str
    axes: list[Axis]
    values: pd.DataFrame                # entries x axis labels
    ranks: pd.DataFrame                 # 1 = best, NaN = missing
    radii: pd.DataFrame                 # n + 1 - rank; 0 where missing
    area: pd.Series
    area_share: pd.Series               # area / max_area(n, k)
    missing_axes: list[str]
    notes: list[str]
    reason: str = ""
    missing_values: dict[str, list[str]] = field(default_factory=dict)

    @property
    def entries(self) -> list[str]:
        return list(self.values.index)


def entry_order(entries, published: set[str]) -> list[str]:
    """Measured checkpoints first, then published rows, each sorted by name (fixes colours and legend order)."""
    return sorted(entries, key=lambda e: (e in published, e.lower(), e))


def build_radar(cells: pd.DataFrame, kind: str, title: str) -> RadarChart:
    """Rank every entry on each axis of ``kind`` ("image" or "video") and compute polygon areas."""
    selection = choose_axes(cells, kind)
    labels = [axis.label for axis in selection.axes]
    published = set(cells.loc[cells["published"], "entry"])
    values = pd.DataFrame({axis.label: axis.values for axis in selection.axes}, columns=labels)
    values = values.reindex(entry_order(values.index, published))
    ranks = pd.DataFrame({a.label: rank_values(values[a.label], a.higher_is_better) for a in selection.axes},
                         index=values.index, columns=labels)
    n, k = len(values), len(labels)
    radii = (n + 1 - ranks).fillna(0.0)
    area = radii.apply(polygon_area, axis=1) if k >= MIN_AXES and n else pd.Series(np.nan, index=values.index)
    share = area / max_area(n, k) if k >= MIN_AXES and n else area
    missing_values = {e: [c for c in labels if pd.isna(values.at[e, c])] for e in values.index}
    names = ", ".join(spec.name for spec in KIND_AXES[kind])
    if k == 0:
        reason = f"No chart: no results for any of {names}."
    elif k < MIN_AXES:
        reason = (f"No chart: only {', '.join(labels)} {'have' if k > 1 else 'has'} results; "
                  f"a radar chart needs at least {MIN_AXES} axes.")
    elif n < 2:
        reason = "No chart: only one checkpoint has results on these axes; ranking needs at least two."
    else:
        reason = ""
    return RadarChart(title, kind, selection.axes, values, ranks, radii, area, share, selection.missing,
                      selection.notes, reason, {e: m for e, m in missing_values.items() if m})


@dataclass
class Comparison:
    """A set of entries ranked together: published methods with matching results, or your own runs."""

    title: str
    note: str
    charts: list[RadarChart]


def _charts(cells: pd.DataFrame) -> list[RadarChart]:
    return [build_radar(cells, "image", "Image tasks"), build_radar(cells, "video", "Video tasks")]


def build_comparisons(cells: pd.DataFrame) -> list[Comparison]:
    """Radar comparisons: published rows rank only against results on the same (task, dataset, metric)."""
    published = cells[cells["published"]]
    if published.empty:
        return [Comparison("", "", _charts(cells))]
    keys = ["task", "dataset", "metric"]
    matched = pd.MultiIndex.from_frame(cells[keys]).isin(pd.MultiIndex.from_frame(published[keys]))
    note = ("Published rows (†) and your checkpoints ranked together on the tasks, datasets and metrics the "
            "paper reports.")
    if cells.loc[matched, "published"].all():
        note += " None of your checkpoints has results on these yet, so only the paper's methods are ranked."
    out = [Comparison("Among the published results", note, _charts(cells[matched]))]
    own = cells[~matched & ~cells["published"]]
    if not own.empty:
        mine = Comparison("Your checkpoints on other datasets or metrics",
                          "Results with no published counterpart, ranked among your checkpoints only.", _charts(own))
        # The reader's own results come first when the published comparison holds none of them.
        out = [mine, *out] if cells.loc[matched, "published"].all() else [*out, mine]
    return out


def ranks_frame(comparisons: list[Comparison], cells: pd.DataFrame) -> pd.DataFrame:
    """Long table for ranks.csv: one row per (chart, axis, entry), including axes too few to draw."""
    published = set(cells.loc[cells["published"], "entry"])
    rows = []
    for comparison in comparisons:
        for chart in comparison.charts:
            name = f"{comparison.title}: {chart.title}" if comparison.title else chart.title
            for axis in chart.axes:
                for entry in chart.entries:
                    # A published method is named as in the charts (its display name, without the dagger).
                    rows.append({"checkpoint": entry.removesuffix(PUBLISHED_MARK), "axis": axis.label,
                                 "value": chart.values.at[entry, axis.label],
                                 "rank": chart.ranks.at[entry, axis.label], "task": axis.task,
                                 "dataset": axis.dataset, "metric": axis.metric, "chart": name,
                                 "published": entry in published})
    columns = ["checkpoint", "axis", "value", "rank", "task", "dataset", "metric", "chart", "published"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["rank"] = frame["rank"].astype("Int64")
    return frame
