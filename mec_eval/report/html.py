"""A self-contained HTML report: inline CSS, no scripts, no network at view time."""
from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from mec_eval.runs import now_iso
from mec_eval.utils import atomic_write_text

_CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.92em}
th,td{border-bottom:1px solid #ccc;padding:0.3em 0.7em;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #444}
td.best{font-weight:bold} td.second{text-decoration:underline}
.note{color:#666;font-size:0.85em}
"""


def _format_cell(mean: float, std: float | None, count: int) -> str:
    if pd.isna(mean):
        return "&ndash;"
    text = f"{mean:.2f}"
    if count and count > 1 and std is not None and not pd.isna(std):
        text += f" &plusmn; {std:.2f}"
    return text


def _rank_classes(column: pd.Series, higher_is_better: bool) -> dict[str, str]:
    """CSS class per checkpoint: ``best`` for the top value, ``second`` for the runner-up."""
    values = column.dropna().sort_values(ascending=not higher_is_better)
    distinct = list(dict.fromkeys(values.round(6)))
    classes = {}
    for name, value in values.round(6).items():
        if distinct and value == distinct[0]:
            classes[name] = "best"
        elif len(distinct) > 1 and value == distinct[1]:
            classes[name] = "second"
    return classes


def _table_html(table: pd.DataFrame, long: pd.DataFrame) -> str:
    std, count = table.attrs.get("std"), table.attrs.get("count")
    head = "".join(f"<th>{html.escape(t)}<br><span class='note'>{html.escape(d)} / {html.escape(m)}</span></th>"
                   for t, d, m in table.columns)
    directions = {}
    protocols = {}
    for col in table.columns:
        rows = long[(long.task == col[0]) & (long.dataset == col[1]) & (long.metric == col[2])]
        directions[col] = bool(rows.higher_is_better.iloc[0])
        protocols[col] = ", ".join(sorted(rows.protocol.unique()))
    ranks = {col: _rank_classes(table[col], directions[col]) for col in table.columns}
    body = []
    for name in table.index:
        cells = [f"<td>{html.escape(str(name))}</td>"]
        for col in table.columns:
            css = ranks[col].get(name, "")
            cell = _format_cell(table.at[name, col], std.at[name, col] if std is not None else None,
                                int(count.at[name, col]) if count is not None and not pd.isna(count.at[name, col]) else 0)
            cells.append(f"<td class='{css}'>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    proto = "".join(f"<td>{html.escape(protocols[c])}</td>" for c in table.columns)
    return (f"<table><thead><tr><th>checkpoint</th>{head}</tr></thead><tbody>{''.join(body)}"
            f"<tr class='note'><td>protocol</td>{proto}</tr></tbody></table>")


def _plain(value) -> str:
    """Table text for a provenance value: '–' when missing, integral floats without '.0'."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _provenance_html(long: pd.DataFrame) -> str:
    cols = ["checkpoint", "method", "epoch", "layout", "sha256", "path"]
    prov = long[cols].drop_duplicates("checkpoint").sort_values("checkpoint")
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_plain(v))}</td>" for v in row) + "</tr>"
                   for row in prov.itertuples(index=False))
    return f"<table><thead><tr>{''.join(f'<th>{c}</th>' for c in cols)}</tr></thead><tbody>{rows}</tbody></table>"


def write_html_report(long: pd.DataFrame, table: pd.DataFrame, out: str | Path, title: str = "mec-eval report") -> Path:
    """Write the report atomically and return its path."""
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p class="note">Generated {now_iso()} from {long.result_file.nunique()} result files. Values are percentages
(mean &plusmn; std over seeds where several exist); <b>bold</b> is best, <u>underlined</u> second per column.</p>
<h2>Results (primary metric per task)</h2>{_table_html(table, long)}
<h2>Checkpoints</h2>{_provenance_html(long)}
</body></html>
"""
    out = Path(out)
    atomic_write_text(out, doc)
    return out
