"""Faults: a full disk, kill -9 and SIGINT in the middle of a trained run and of a report, and two
identical runs started together. Nothing corrupt, nothing lost, no work done twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mec_eval.cli import main
from mec_eval.runs import build_result, write_result

SEMI = ["run", "--task", "semi-10pct", "--ckpt", "random:resnet_tiny", "data.name=digits", "optim.epochs=30",
        "--quiet"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mec_eval.cli", *args]


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(_cli(*argv), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def _epochs_logged(runs: Path) -> list[int]:
    logs = list(runs.rglob("log.jsonl"))
    assert len(logs) <= 1
    if not logs:  # killed before the first epoch's line (even right after its save: the resumed run logs it)
        return []
    return [r["epoch"] for r in map(json.loads, logs[0].read_text().splitlines()) if r.get("event") == "train_epoch"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    runs = tmp_path_factory.mktemp("clean") / "runs"
    proc = subprocess.run(_cli(*SEMI, "--out", str(runs)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(Path(proc.stdout.split()[0]).read_text())


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -9), (signal.SIGINT, 130)])
def test_signal_mid_training_then_rerun_matches_uninterrupted(tmp_path, uninterrupted, sig, code):
    runs = tmp_path / "runs"
    proc = _start([*SEMI, "--out", str(runs)], tmp_path)
    _wait_for(lambda: any(runs.rglob("state.pt")) or proc.poll() is not None)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    if sig == signal.SIGINT:
        assert err.strip().splitlines() == ["mec-eval: interrupted; re-run the same command to resume"]
    assert not list(runs.rglob("result.json"))
    assert not list(runs.rglob("*.tmp"))  # no half-written file left by the atomic writes
    done_before = _epochs_logged(runs)
    proc = subprocess.run(_cli(*SEMI, "--out", str(runs)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    resumed = json.loads(Path(proc.stdout.split()[0]).read_text())
    assert resumed["metrics"] == uninterrupted["metrics"]  # bit-identical continuation on CPU
    epochs = _epochs_logged(runs)
    assert epochs == list(range(1, 31)) and epochs[:len(done_before)] == done_before  # nothing trained twice


@pytest.mark.slow
def test_two_identical_runs_at_once_do_the_work_once(tmp_path, uninterrupted):
    runs = tmp_path / "runs"
    first, second = (_start([*SEMI, "--out", str(runs)], tmp_path) for _ in range(2))
    outs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert outs[0][0].split() == outs[1][0].split()  # the same result.json
    assert _epochs_logged(runs) == list(range(1, 31))  # every epoch once, not twice
    assert json.loads(Path(outs[0][0].split()[0]).read_text())["metrics"] == uninterrupted["metrics"]
    assert not (runs / ".locks").exists()


def _results(root: Path, n: int) -> None:
    for i in range(n):
        result = build_result(task="knn", dataset="digits", protocol="paper",
                              checkpoint={"name": f"c{i}", "path": f"/c{i}.pt", "sha256": f"{i:064d}",
                                          "layout": "mec-eval"},
                              metrics={"top1": 10.0 + i, "top5": 50.0 + i}, primary="top1", higher_is_better=True,
                              config={}, seed=0, started="2026-01-01T00:00:00+00:00", duration_s=1.0)
        write_result(root / "knn" / f"c{i}" / "h", result)


@pytest.mark.slow
def test_kill_during_report_leaves_the_previous_set_whole(tmp_path):
    runs = tmp_path / "runs"
    _results(runs, 4)
    html = tmp_path / "rep" / "r.html"
    argv = ["report", "--runs", str(runs), "--out", str(html), "--csv", str(tmp_path / "rep" / "csv"), "--markdown"]
    assert main(argv) == 0
    previous = {p: p.read_bytes() for p in (tmp_path / "rep").rglob("*") if p.is_file()}
    for delay in (0.5, 1.5, 3.0):
        proc = _start(argv, tmp_path)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        now = {p: p.read_bytes() for p in (tmp_path / "rep").rglob("*") if p.is_file()}
        assert set(now) == set(previous)  # no temp file, nothing missing
        assert now[html].rstrip().endswith(b"</html>")


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "96k"):
        pytest.skip("needs root and tmpfs mounts to simulate a full disk")
    yield disk
    subprocess.run(["umount", str(disk)], check=False)


def test_full_disk_is_one_line_and_leaves_no_partial_files(small_disk, tmp_path, capsys):
    runs = small_disk / "runs"
    assert main(["run", "--task", "knn", "--ckpt", "random:resnet_tiny", "--out", str(runs), "data.name=digits",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disk is full" in err[0]
    assert not list(small_disk.rglob("result.json")) and not list(small_disk.rglob("*.tmp"))
    big = small_disk / "big.pt"
    assert main(["convert", "--ckpt", "random:resnet18", "--to", "canonical", "--out", str(big)]) == 2
    err = capsys.readouterr().err.lower()
    assert "disk is full" in err or "no space left" in err
    assert not big.exists() and not list(small_disk.rglob(".big.pt*"))
