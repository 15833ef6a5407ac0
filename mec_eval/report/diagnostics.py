"""The diagnostics section's correlation table: Spearman rank correlation of each representation
diagnostic with each downstream task's primary metric, over the measured checkpoints of the report.

Reads the report's cells (from result.json rows) only. Each correlation uses the checkpoints that
have both numbers, ``n`` of them, and is shown with that ``n``; below :data:`MIN_CHECKPOINTS`
checkpoints the table carries a warning, and below 3 (or with a constant column) no value is shown.
"""
from __future__ import annotations

import math

import pandas as pd
from scipy.stats import spearmanr

from mec_eval.report.catalog import is_diagnostic, metric_label, task_label
from mec_eval.report.tables import Cell, ReportTable, Row

MIN_CHECKPOINTS = 5
DIAG_KEYS = ["task", "dataset", "metric"]
TASK_KEYS = ["task", "dataset", "setting", "metric"]


def _wide(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return rows.pivot_table(index="entry", columns=keys, values="value", aggfunc="mean")


def spearman_frame(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (diagnostic, downstream task): ``rho`` (NaN when undefined) and ``n`` checkpoints with both."""
    measured = cells[~cells["published"].astype(bool)]
    diag_mask = pd.Series([is_diagnostic(t, m) for t, m in zip(measured["task"], measured["metric"])],
                          index=measured.index, dtype=bool)
    diag = measured[diag_mask]
    tasks = measured[~diag_mask & measured["primary"].astype(bool)]
    out = []
    if diag.empty or tasks.empty:
        return pd.DataFrame(out, columns=[*(f"diag_{k}" for k in DIAG_KEYS), *TASK_KEYS, "rho", "n"])
    diag_wide, task_wide = _wide(diag, DIAG_KEYS), _wide(tasks, TASK_KEYS)
    for d_key in diag_wide.columns:
        for t_key in task_wide.columns:
            pair = pd.concat([diag_wide[d_key], task_wide[t_key]], axis=1, join="inner").dropna()
            n = len(pair)
            constant = n and (pair.iloc[:, 0].nunique() < 2 or pair.iloc[:, 1].nunique() < 2)
            rho = math.nan if n < 3 or constant else float(spearmanr(pair.iloc[:, 0], pair.iloc[:, 1]).statistic)
            out.append([*d_key, *t_key, rho, n])
    return pd.DataFrame(out, columns=[*(f"diag_{k}" for k in DIAG_KEYS), *TASK_KEYS, "rho", "n"])


def correlation_table(cells: pd.DataFrame) -> ReportTable | None:
    """Rows: diagnostics; columns: downstream tasks; cells ``rho (n=..)``. None without diagnostics and tasks."""
    frame = spearman_frame(cells)
    frame = frame[frame["n"] > 0]
    if frame.empty:
        return None
    columns = list(dict.fromkeys(zip(*(frame[k] for k in TASK_KEYS))))
    rows = []
    for d_key, group in frame.groupby([f"diag_{k}" for k in DIAG_KEYS], sort=False):
        _task, dataset, metric = d_key
        by_col = {tuple(r[k] for k in TASK_KEYS): r for _, r in group.iterrows()}
        cells_row = []
        for col in columns:
            r = by_col.get(col)
            if r is None:
                cells_row.append(None)
                continue
            text = "–" if math.isnan(r["rho"]) else f"{r['rho']:+.2f}"
            cells_row.append(Cell(f"{text} (n={int(r['n'])})", title=f"{int(r['n'])} checkpoints"))
        rows.append(Row(f"{metric_label(metric, None)} [{dataset}]", cells_row))
    header = [[(task_label(t, d, m) + (f" {s}" if s else ""), 1) for t, d, s, m in columns],
              [(metric_label(m, None), 1) for _t, _d, _s, m in columns]]
    notes = [("Spearman rank correlation (scipy.stats.spearmanr) of each diagnostic with each task's primary metric, "
              "over the measured checkpoints that have both (n per cell); – : fewer than 3 checkpoints or a "
              "constant column.")]
    fewest = int(frame["n"].min())
    if fewest < MIN_CHECKPOINTS:
        notes.append(f"Warning: some correlations rest on fewer than {MIN_CHECKPOINTS} checkpoints (fewest n={fewest}); "
                     "they say little.")
    return ReportTable("Diagnostics vs downstream tasks: Spearman rank correlation", header, rows, notes,
                       label_header="diagnostic")
