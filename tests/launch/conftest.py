"""Fixtures of the dispatch tests: a fake SLURM (sbatch/srun on PATH) that records what is submitted."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

FAKE_SBATCH = """#!/bin/sh
# Records the submitted script, answers as sbatch does; nothing runs.
n=$(ls "{record}" | wc -l)
cp "$1" "{record}/script_$n.sh"
echo "Submitted batch job $((4242 + n))"
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """A bin folder with recording ``sbatch`` and inert ``srun`` first on PATH; returns the record folder."""
    bin_dir, record = tmp_path / "fake-bin", tmp_path / "sbatch-record"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(record=record))
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")
    return record


def _wait_for(condition, timeout: float = 240.0, every: float = 0.1, what: str = "condition") -> None:
    end = time.time() + timeout
    while not condition():
        if time.time() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)


def _epoch_records(log: Path) -> list[dict]:
    if not log.is_file():
        return []
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [r for r in records if "epoch" in str(r.get("event", "")) and isinstance(r.get("epoch"), int)]


# Fixtures rather than imports: test modules cannot import conftest under --import-mode=importlib.
@pytest.fixture
def wait_for():
    """``wait_for(condition, timeout=240, what=...)``: poll until true, fail the test on timeout."""
    return _wait_for


@pytest.fixture
def epoch_records():
    """``epoch_records(log)``: the per-epoch records of a JSON-lines log (any event naming an epoch)."""
    return _epoch_records
