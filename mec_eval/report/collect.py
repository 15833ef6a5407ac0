"""Read result.json files into a long pandas table and aggregate seeds/trials to mean, std and count."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mec_eval.report.catalog import LOWER_IS_BETTER, RANKED_PUBLISHED_TABLES
from mec_eval.runs import find_results, read_result
from mec_eval.utils import UserError

COLUMNS = ["checkpoint", "task", "dataset", "metric", "value", "primary", "higher_is_better", "protocol",
           "seed", "finished", "method", "epoch", "sha256", "layout", "path", "result_file"]
# Measured and published rows share these columns; ``source`` is the result file or the citation.
EXTENDED_COLUMNS = COLUMNS + ["source", "table", "setting", "published"]
# One reported number: measurements that differ only in seed/trial are averaged (published tables never are).
CELL_KEYS = ["published", "table", "checkpoint", "task", "dataset", "metric", "setting", "protocol", "epoch"]
PUBLISHED_MARK = " †"


def _setting(result: dict) -> str:
    """The run's setting (UniTrack backbone layer) from the adapter's ``extra`` block, or ''."""
    extra = result.get("extra") or {}
    setting = extra.get("setting", extra.get("layer", ""))
    if isinstance(setting, int):
        return f"layer{setting}"
    return str(setting or "")


def _rows(path: Path, result: dict) -> list[dict]:
    ckpt = result.get("checkpoint", {})
    lower = set(result.get("lower_is_better_metrics", []))
    rows = []
    for metric, value in result.get("metrics", {}).items():
        is_primary = metric == result.get("primary")
        higher = result.get("higher_is_better", True) if is_primary else metric not in lower
        rows.append({
            "checkpoint": ckpt.get("name", "?"), "task": result["task"], "dataset": result["dataset"],
            "metric": metric, "value": float(value), "primary": is_primary,
            # id_switches is a count of errors whatever the adapter declared.
            "higher_is_better": bool(higher) and metric not in LOWER_IS_BETTER,
            "protocol": result.get("protocol", "?"), "seed": result.get("seed", 0),
            "finished": result.get("finished", ""), "method": ckpt.get("method"), "epoch": ckpt.get("epoch"),
            "sha256": ckpt.get("sha256"), "layout": ckpt.get("layout"), "path": ckpt.get("path"),
            "result_file": str(path), "source": str(path), "table": "", "setting": _setting(result),
            "published": False,
        })
    return rows


def collect_results(runs: list[str | Path]) -> pd.DataFrame:
    """One row per (result file, metric), in ``EXTENDED_COLUMNS``; UserError when no result exists."""
    rows = []
    for path in find_results(runs):
        rows.extend(_rows(path, read_result(path)))
    if not rows:
        raise UserError(f"no result.json found under {', '.join(map(str, runs))}; run `mec-eval run` first")
    return pd.DataFrame(rows, columns=EXTENDED_COLUMNS)


def _joined(values: pd.Series) -> str:
    """Distinct values in first-seen order, ';'-separated (seeds and sources of one cell)."""
    seen = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values.dropna()]
    return ";".join(dict.fromkeys(seen))


def aggregate(long: pd.DataFrame) -> pd.DataFrame:
    """One row per reported number: mean, sample std (ddof=1, NaN for one run) and count over seeds/trials."""
    frame = long.copy()
    frame["setting"] = frame["setting"].fillna("")
    frame["table"] = frame["table"].fillna("")
    frame["epoch"] = pd.to_numeric(frame["epoch"], errors="coerce")
    frame["published"] = frame["published"].astype(bool)
    grouped = frame.groupby(CELL_KEYS, dropna=False, sort=False)
    agg = grouped.agg(
        value=("value", "mean"), std=("value", "std"), n=("value", "count"),
        primary=("primary", "any"), higher_is_better=("higher_is_better", "first"),
        finished=("finished", "max"), method=("method", "first"), sha256=("sha256", "first"),
        layout=("layout", "first"), path=("path", "first"),
    ).reset_index()
    agg["seed"] = grouped["seed"].agg(_joined).to_numpy()
    agg["source"] = grouped["source"].agg(_joined).to_numpy()
    return agg


def _published_names(published: pd.DataFrame) -> dict[str, str]:
    """Display name per published method: its shortest name in the ranked tables ("MEC", not "MEC (800 ep)")."""
    names: dict[str, str] = {}
    for method, name in zip(published["method"], published["checkpoint"]):
        if method not in names or len(name) < len(names[method]):
            names[method] = name
    return names


def select_cells(agg: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One number per (entry, task, dataset, metric, setting) for tables and ranks; returns (cells, dropped).

    ``entry`` is the checkpoint name for measured rows and, for published rows, the method's display
    name with a dagger, so a method is one polygon across the paper's tables and is never merged with
    a measured checkpoint. A checkpoint run under several protocols shows its faithful (``paper``)
    result; a published method listed at several pre-training lengths shows the longest (MEC Figure 1
    uses 800-epoch models). Published tables outside ``RANKED_PUBLISHED_TABLES`` are left out. Every
    number stays in results.csv.
    """
    kept = agg[~agg["published"] | agg["table"].isin(RANKED_PUBLISHED_TABLES)].copy()
    names = _published_names(kept[kept["published"]])
    kept["entry"] = [f"{names[m]}{PUBLISHED_MARK}" if pub else name
                     for pub, m, name in zip(kept["published"], kept["method"], kept["checkpoint"])]
    order = kept.assign(_unfaithful=kept["protocol"] != "paper", _epoch=-kept["epoch"].fillna(-1))
    order = order.sort_values(["_unfaithful", "_epoch", "protocol"], kind="stable")
    cells = order.drop_duplicates(["entry", "task", "dataset", "metric", "setting"])
    return cells.drop(columns=["_unfaithful", "_epoch"]).sort_index(), len(agg) - len(cells)
