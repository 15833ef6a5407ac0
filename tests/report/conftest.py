"""Report test helpers: schema-valid result.json files on disk and long tables built in memory."""
from __future__ import annotations

import hashlib
import math

import pandas as pd
import pytest

from mec_eval.report.collect import EXTENDED_COLUMNS
from mec_eval.runs import build_result, write_result


@pytest.fixture
def write_run(validate_result):
    """Write one schema-valid result.json under ``root/<task>/<ckpt>/<n>/`` and return its path."""
    counter = iter(range(10_000))

    def write(root, ckpt, task, dataset, metrics, *, primary=None, seed=0, protocol="paper", setting="",
              lower=None, epoch=40):
        result = build_result(
            task=task, dataset=dataset, protocol=protocol,
            checkpoint={"name": ckpt, "path": f"/ckpts/{ckpt}.pt", "sha256": hashlib.sha256(ckpt.encode()).hexdigest(),
                        "layout": "mec-eval", "method": ckpt.split("-")[0], "epoch": epoch},
            metrics=metrics, primary=primary or next(iter(metrics)), higher_is_better=True, config={},
            seed=seed, started="2026-01-01T00:00:00+00:00", duration_s=1.0, lower_is_better_metrics=lower,
            extra={"extra": {"setting": setting}} if setting else None)
        validate_result(result)
        return write_result(root / task / ckpt / f"run{next(counter)}", result)

    return write


def make_long(rows: list[dict]) -> pd.DataFrame:
    """A long table (``EXTENDED_COLUMNS``) from short dicts; unspecified fields get measured-run defaults."""
    full = []
    for row in rows:
        published = row.get("published", False)
        base = {"dataset": "imagenet", "metric": "top1", "primary": True, "higher_is_better": True,
                "protocol": "published" if published else "paper", "seed": math.nan if published else 0,
                "finished": "", "method": row["checkpoint"].split(" ")[0].lower(), "epoch": math.nan,
                "sha256": None, "layout": "", "path": "", "result_file": "", "source": "src", "table": "",
                "setting": "", "published": published}
        full.append({**base, **row})
    return pd.DataFrame(full, columns=EXTENDED_COLUMNS)


@pytest.fixture
def long_of():
    return make_long
