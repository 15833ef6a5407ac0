"""Read result.json files into a long pandas table and pivot it checkpoint x (task, metric)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from mec_eval.runs import find_results, read_result
from mec_eval.utils import UserError

COLUMNS = ["checkpoint", "task", "dataset", "metric", "value", "primary", "higher_is_better", "protocol",
           "seed", "finished", "method", "epoch", "sha256", "layout", "path", "result_file"]


def collect_results(runs: list[str | Path]) -> pd.DataFrame:
    """One row per (result file, metric)."""
    rows = []
    for path in find_results(runs):
        result = read_result(path)
        ckpt = result.get("checkpoint", {})
        lower = set(result.get("lower_is_better_metrics", []))
        for metric, value in result.get("metrics", {}).items():
            higher = result.get("higher_is_better", True) if metric == result.get("primary") else metric not in lower
            rows.append({
                "checkpoint": ckpt.get("name", "?"), "task": result["task"], "dataset": result["dataset"],
                "metric": metric, "value": float(value), "primary": metric == result.get("primary"),
                "higher_is_better": bool(higher), "protocol": result.get("protocol", "?"),
                "seed": result.get("seed", 0), "finished": result.get("finished", ""),
                "method": ckpt.get("method"), "epoch": ckpt.get("epoch"), "sha256": ckpt.get("sha256"),
                "layout": ckpt.get("layout"), "path": ckpt.get("path"), "result_file": str(path),
            })
    if not rows:
        raise UserError(f"no result.json found under {', '.join(map(str, runs))}; run `mec-eval run` first")
    return pd.DataFrame(rows, columns=COLUMNS)


def results_table(long: pd.DataFrame, primary_only: bool = True) -> pd.DataFrame:
    """Checkpoint x (task, dataset, metric) of mean values over seeds; also returns stds as ``.attrs['std']``."""
    frame = long[long["primary"]] if primary_only else long
    keys = ["task", "dataset", "metric"]
    grouped = frame.groupby(["checkpoint", *keys])["value"]
    mean = grouped.mean().unstack(keys)
    std = grouped.std(ddof=0).unstack(keys)
    count = grouped.count().unstack(keys)
    mean.attrs.update(std=std, count=count)
    return mean
