"""Published reference numbers (``reports/published/*.yaml``) as rows of the report's long table.

Each YAML file mirrors one paper table: its ``columns`` and ``rows`` keep the paper's labels
verbatim, and a cell's identity (checkpoint, method, epoch, task, dataset, metric, setting) is
merged from the file's ``defaults``, the row and the column. ``reports/published/README.md``
documents the schema; the loaded rows use ``collect.COLUMNS`` plus provenance columns, so the
report can concatenate them with a user's own results.
"""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import yaml

from mec_eval.report.catalog import LOWER_IS_BETTER
from mec_eval.report.collect import COLUMNS
from mec_eval.utils import UserError, resource_dir
from mec_eval.vocabulary import DATASETS, TASKS, primary_metric

PUBLISHED_COLUMNS = COLUMNS + ["source", "table", "setting", "published"]

_TOP_KEYS = {"schema", "table", "source", "caption", "protocol", "defaults", "references", "columns", "rows"}
_REQUIRED_TOP = ("schema", "table", "source", "caption", "protocol", "columns", "rows")
_DEFAULT_FIELDS = {"task", "dataset", "metric", "setting", "epoch", "method"}
_CELL_FIELDS = _DEFAULT_FIELDS | {"checkpoint", "suffix", "variant", "default"}
_COLUMN_KEYS = {"key", "label"} | _CELL_FIELDS
_ROW_KEYS = {"label", "group", "values"} | _CELL_FIELDS
_CITATION = re.compile(r"\[(\d+)\]")


def published_dir() -> Path:
    """The folder of published tables: ``reports/published`` of the project."""
    return resource_dir("reports") / "published"


def list_published(directory: str | Path | None = None) -> list[str]:
    """Ids of the published tables (file stems, e.g. ``mec-table1``), sorted."""
    folder = Path(directory) if directory is not None else published_dir()
    return sorted(path.stem for path in folder.glob("*.yaml"))


def load_published(tables: Iterable[str] | None = None, directory: str | Path | None = None) -> pd.DataFrame:
    """One row per (table, checkpoint, task, dataset, metric, setting), columns ``PUBLISHED_COLUMNS``.

    ``tables`` picks table ids (all when None); ``directory`` replaces ``reports/published``.
    """
    folder = Path(directory) if directory is not None else published_dir()
    known = list_published(folder)
    if tables is None:
        wanted = known
    else:
        wanted = list(dict.fromkeys([tables] if isinstance(tables, str) else tables))
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise UserError(f"unknown published table(s) {', '.join(unknown)} "
                            f"(known: {', '.join(known) or 'none'} in {folder})")
    rows = [row for name in wanted for row in _table_rows(folder / f"{name}.yaml")]
    frame = pd.DataFrame(rows, columns=PUBLISHED_COLUMNS)
    # Keep epochs as Python ints (NaN where the paper gives none) rather than floats like 800.0.
    frame["epoch"] = pd.Series([row["epoch"] for row in rows], index=frame.index, dtype=object)
    return frame


def _read(path: Path) -> dict:
    """The file's top-level mapping, checked for required and unknown keys before any row is read."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with keys {', '.join(_REQUIRED_TOP)}")
    _check_keys(data, _TOP_KEYS, f"{path}")
    missing = [key for key in _REQUIRED_TOP if key not in data]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)}")
    if data["schema"] != 1 or data["protocol"] != "published" or data["table"] != path.stem:
        raise UserError(f"{path}: need schema: 1, protocol: published and table: {path.stem} (the file name)")
    for key in ("columns", "rows"):
        if not isinstance(data[key], list) or not all(isinstance(item, dict) for item in data[key]):
            raise UserError(f"{path}: {key} must be a list of mappings")
    for key in ("defaults", "references"):
        if not isinstance(data.get(key) or {}, dict):
            raise UserError(f"{path}: {key} must be a mapping")
    _check_keys(data.get("defaults") or {}, _DEFAULT_FIELDS, f"{path}: defaults")
    return data


def _check_keys(mapping: dict, allowed: set[str], where: str) -> None:
    """Reject a key outside ``allowed``, suggesting close matches (a typo would otherwise drop a field)."""
    for key in mapping:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"{where}: unknown key {key!r}{hint} (allowed: {', '.join(sorted(allowed))})")


def _columns(data: dict, path: Path) -> dict[str, dict]:
    """Declared columns by key, in the paper's order."""
    columns: dict[str, dict] = {}
    for index, column in enumerate(data["columns"]):
        where = f"{path}: column {column.get('key', index)!r}"
        _check_keys(column, _COLUMN_KEYS, where)
        if not isinstance(column.get("key"), str) or not isinstance(column.get("label"), str):
            raise UserError(f"{where}: needs a string key and the paper's column label")
        if column["key"] in columns:
            raise UserError(f"{where}: key declared twice")
        columns[column["key"]] = column
    return columns


def _table_rows(path: Path) -> list[dict]:
    """Validated long-table rows of one published table file."""
    data = _read(path)
    columns = _columns(data, path)
    references = {str(key): str(text) for key, text in (data.get("references") or {}).items()}
    defaults = data.get("defaults") or {}
    out: list[dict] = []
    seen: set[tuple] = set()
    for index, row in enumerate(data["rows"]):
        where = f"{path}: row {row.get('label', index)!r}" + (f" ({row['group']})" if "group" in row else "")
        _check_keys(row, _ROW_KEYS, where)
        if not isinstance(row.get("label"), str) or not isinstance(row.get("values"), dict) or not row["values"]:
            raise UserError(f"{where}: needs the paper's row label and a non-empty values mapping")
        for key, value in row["values"].items():
            if key not in columns:
                raise UserError(f"{where}: value for undeclared column {key!r} (declared: {', '.join(columns)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"{where}, column {key!r}: value {value!r} is not a number")
            cell = _cell(defaults, row, columns[key], f"{where}, column {key!r}")
            identity = (cell["checkpoint"], cell["task"], cell["dataset"], cell["metric"], cell["setting"])
            if identity in seen:
                raise UserError(f"{where}, column {key!r}: {identity} appears twice in the table")
            seen.add(identity)
            source = _source(data["source"], row, columns[key], references, f"{where}, column {key!r}")
            out.append(_long_row(cell, float(value), source, path.stem))
    return out


def _cell(defaults: dict, row: dict, column: dict, where: str) -> dict:
    """Merge defaults < row < column; a field set by both the row and the column is ambiguous."""
    row_fields = {k: v for k, v in row.items() if k in _CELL_FIELDS}
    column_fields = {k: v for k, v in column.items() if k in _CELL_FIELDS}
    clash = sorted(set(row_fields) & set(column_fields))
    if clash:
        raise UserError(f"{where}: {', '.join(clash)} set by both the row and the column")
    cell = {"setting": "", "epoch": None, **defaults, **row_fields, **column_fields}
    missing = [key for key in ("checkpoint", "method", "task", "dataset", "metric") if not cell.get(key)]
    if missing:
        raise UserError(f"{where}: no {', '.join(missing)} from defaults, row or column")
    epoch = cell["epoch"]
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
        raise UserError(f"{where}: epoch {epoch!r} is not an integer")
    if not isinstance(cell.get("variant", {}), dict) or not isinstance(cell.get("default", False), bool):
        raise UserError(f"{where}: variant must be a mapping and default true/false")
    if not isinstance(cell["setting"], str):
        raise UserError(f"{where}: setting {cell['setting']!r} is not a string")
    _check_vocabulary(cell["task"], cell["dataset"], cell["metric"], where)
    if cell.get("suffix"):
        cell["checkpoint"] = f"{cell['checkpoint']} ({cell['suffix']})"
    return cell


def _check_vocabulary(task: str, dataset: str, metric: str, where: str) -> None:
    """Reject names outside mec-eval's vocabulary, so published rows line up with measured ones."""
    if task not in TASKS:
        raise UserError(f"{where}: unknown task {task!r} (known: {', '.join(TASKS)})")
    record = TASKS[task]
    if record.family == "transfer":
        if dataset not in record.datasets:
            raise UserError(f"{where}: unknown transfer dataset {dataset!r} (known: {', '.join(record.datasets)})")
        if metric != DATASETS[dataset].metric:
            raise UserError(f"{where}: {dataset} is scored by {DATASETS[dataset].metric}, not {metric!r}")
        return
    if record.datasets is not None and dataset not in record.datasets:
        raise UserError(f"{where}: task {task} runs on {', '.join(record.datasets)}, not {dataset!r}")
    if dataset not in DATASETS:
        raise UserError(f"{where}: unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    if metric not in record.metrics:
        raise UserError(f"{where}: task {task} reports {', '.join(record.metrics)}, not {metric!r}")


def _source(table_source: str, row: dict, column: dict, references: dict[str, str], where: str) -> str:
    """Citation of one value: table, paper row and column labels, and the references they cite."""
    group = f", {row['group']}" if row.get("group") else ""
    text = f"{table_source}{group}, row '{row['label']}', column '{column['label']}'"
    cited = dict.fromkeys(_CITATION.findall(row["label"]) + _CITATION.findall(column["label"]))
    unknown = [number for number in cited if number not in references]
    if unknown:
        raise UserError(f"{where}: add [{'], ['.join(unknown)}] to the file's references")
    return "; ".join([text, *(f"[{number}] {references[number]}" for number in cited)])


def _long_row(cell: dict, value: float, source: str, table: str) -> dict:
    """One row of the report's long table; the run-only columns get their 'not a run' values."""
    higher = cell["metric"] not in LOWER_IS_BETTER
    return {
        "checkpoint": cell["checkpoint"], "task": cell["task"], "dataset": cell["dataset"],
        "metric": cell["metric"], "value": value,
        "primary": cell["metric"] == primary_metric(cell["task"], cell["dataset"]),
        "higher_is_better": higher, "protocol": "published", "seed": math.nan, "finished": "",
        "method": cell["method"], "epoch": math.nan if cell["epoch"] is None else cell["epoch"],
        "sha256": None, "layout": "published", "path": "", "result_file": "",
        "source": source, "table": table, "setting": cell["setting"], "published": True,
    }
