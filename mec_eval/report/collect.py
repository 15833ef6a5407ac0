"""Read result.json files into a long pandas table and aggregate seeds/trials to mean, std and count."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

from mec_eval.report.catalog import LOWER_IS_BETTER, RANKED_PUBLISHED_TABLES
from mec_eval.runs import find_results
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_text(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _kind(value) -> str:
    """A short description of a JSON value for messages: its type and, if short, the value itself."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    shown = json.dumps(value, ensure_ascii=True) if not isinstance(value, float) else repr(value)
    return names.get(type(value), type(value).__name__) + (f" ({shown})" if len(shown) <= 40 else "")


def _metric_problem(metrics) -> str | None:
    if metrics is None:
        return "metrics is missing (or null)"
    if not isinstance(metrics, dict):
        return f"metrics is {_kind(metrics)}, not an object"
    if not metrics:
        return "metrics is empty (the run recorded no number)"
    for name, value in metrics.items():
        if not _is_number(value):
            return f"metrics.{name} is not a number (it is {_kind(value)})"
        if not math.isfinite(value):
            return f"metrics.{name} is not a finite number ({value!r})"
    return None


def _checkpoint_problem(ckpt) -> str | None:
    if not isinstance(ckpt, dict):
        return "checkpoint is missing" if ckpt is None else f"checkpoint is {_kind(ckpt)}, not an object with a name"
    if not _is_text(ckpt.get("name")):
        return f"checkpoint.name is missing or not a non-empty string (it is {_kind(ckpt.get('name'))})"
    for key in ("path", "sha256", "method", "layout"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], str):
            return f"checkpoint.{key} is {_kind(ckpt[key])}, not a string"
    epoch = ckpt.get("epoch")
    # A numeric string ("40") is read as a number and any other string shown as given in the provenance table.
    if epoch is not None and not (_is_number(epoch) or isinstance(epoch, str)):
        return f"checkpoint.epoch is {_kind(epoch)}, not a number"
    return None


def _fields_problem(result: dict) -> str | None:
    """The first field the report needs that is missing or of the wrong type (schema 1), or None."""
    if result.get("schema", 1) != 1:
        return f"schema is {_kind(result['schema'])}; this mec-eval reads schema 1 only"
    for key in ("task", "dataset", "protocol"):
        if not _is_text(result.get(key)):
            what = "missing" if key not in result else f"{_kind(result[key])}, not a non-empty string"
            return f"{key} is {what}"
    problem = _checkpoint_problem(result.get("checkpoint")) or _metric_problem(result.get("metrics"))
    if problem:
        return problem
    checks = [("primary", isinstance(result.get("primary"), str), "a string"),
              ("higher_is_better", isinstance(result.get("higher_is_better", True), bool), "true or false"),
              ("seed", _is_number(result.get("seed", 0)) and float(result.get("seed", 0)).is_integer(), "an integer"),
              ("finished", isinstance(result.get("finished", ""), str), "a string"),
              ("lower_is_better_metrics", isinstance(result.get("lower_is_better_metrics", []), list)
               and all(isinstance(m, str) for m in result.get("lower_is_better_metrics", [])), "a list of strings"),
              ("extra", isinstance(result.get("extra", {}) or {}, dict), "an object")]
    for key, ok, expected in checks:
        if not ok:
            return f"{key} is {_kind(result[key]) if key in result else 'missing'}, not {expected}"
    setting = (result.get("extra") or {}).get("setting", (result.get("extra") or {}).get("layer", ""))
    if setting is not None and not isinstance(setting, (str, int)):
        return f"extra.setting is {_kind(setting)}, not a string"
    return None


def result_problem(path: Path) -> tuple[dict | None, str | None]:
    """Read one result.json: (result, None) when the report can use it, else (None, what is wrong)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        return None, f"the file cannot be read ({err.strerror or err})"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return None, f"the file is not UTF-8 text (byte {err.start})"
    try:
        result = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"the file is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}; truncated?)"
    except RecursionError:
        return None, "the file is not valid JSON (nested too deeply)"
    if not isinstance(result, dict):
        return None, f"the file holds {_kind(result)}, not a JSON object"
    problem = _fields_problem(result)
    return (None, problem) if problem else (result, None)


def _rows(path: Path, result: dict) -> list[dict]:
    """One row per metric of a result that passed :func:`result_problem`."""
    ckpt = result["checkpoint"]
    lower = set(result.get("lower_is_better_metrics", []))
    epoch = ckpt.get("epoch")
    rows = []
    for metric, value in result["metrics"].items():
        is_primary = metric == result.get("primary")
        higher = result.get("higher_is_better", True) if is_primary else metric not in lower
        rows.append({
            "checkpoint": ckpt["name"], "task": result["task"], "dataset": result["dataset"],
            "metric": metric, "value": float(value), "primary": is_primary,
            # id_switches is a count of errors whatever the adapter declared.
            "higher_is_better": bool(higher) and metric not in LOWER_IS_BETTER,
            "protocol": result["protocol"], "seed": result.get("seed", 0),
            "finished": result.get("finished", ""), "method": ckpt.get("method"), "epoch": epoch,
            "sha256": ckpt.get("sha256"), "layout": ckpt.get("layout"), "path": ckpt.get("path"),
            "result_file": str(path), "source": str(path), "table": "", "setting": _setting(result),
            "published": False,
        })
    return rows


def _one_line(text: str) -> str:
    return " ".join(text.replace("\r", " ").replace("\n", " ").split())


def collect_results(runs: list[str | Path], skip_bad: bool = False) -> pd.DataFrame:
    """One row per (result file, metric), in ``EXTENDED_COLUMNS``.

    A result.json the report cannot use is a UserError naming it and what is wrong; with ``skip_bad``
    it is named in one warning line on stderr instead and left out. UserError when no result exists
    or every one was skipped.
    """
    rows, found, skipped = [], 0, 0
    where = ", ".join(map(str, runs))
    for path in find_results(runs):
        found += 1
        result, problem = result_problem(path)
        if problem is None:
            rows.extend(_rows(path, result))
        elif skip_bad:
            skipped += 1
            sys.stderr.write(_one_line(f"mec-eval: warning: skipped {path}: {problem}") + "\n")
        else:
            raise UserError(f"{path}: {problem}; fix or delete the file, or pass --skip-bad")
    if not found:
        raise UserError(f"no result.json found under {where}; run `mec-eval run` first")
    if not rows:
        what = "the only result.json" if skipped == 1 else f"all {skipped} result.json files"
        raise UserError(f"{what} under {where} {'was' if skipped == 1 else 'were'} skipped as bad (named above); "
                        f"fix or delete {'it' if skipped == 1 else 'them'}, or run `mec-eval run` again")
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
