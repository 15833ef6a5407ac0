"""``mec-eval suite`` end to end through submitit: a 2 checkpoints x 2 tasks grid run by the
LocalExecutor two at a time, ``status`` and the report reading it back, and a failed run retried
alone (the SLURM path is in tests/launch/test_slurm_submission.py)."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest

from mec_eval.cli import main
from mec_eval.launch.executors import cpu_count
from mec_eval.launch.records import collect_states
from mec_eval.launch.suite import Dispatch, dispatch_jobs, plan_grid

CKPTS = "random:resnet_tiny,random:resnet_tiny@1"
DIGITS = ["data.name=digits", "data.image_size=16", "--quiet"]  # 16 px: a quarter of the compute


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The grid, run once for the module: (runs folder, printed lines)."""
    runs = tmp_path_factory.mktemp("grid") / "runs"
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["suite", "--ckpt", CKPTS, "--tasks", "knn,linear-fast", "--executor", "local-parallel",
                     "--parallel", "2", "--out", str(runs), *DIGITS])
    assert code == 0
    return runs, out.getvalue().split()


def test_grid_runs_in_parallel_and_every_result_appears(grid, validate_result):
    runs, lines = grid
    results = sorted(runs.rglob("result.json"))
    assert sorted(map(Path, lines)) == results and len(results) == 4
    seen = {(r["task"], r["checkpoint"]["name"]) for r in map(validate_result, results)}
    assert seen == {(t, c) for t in ("knn", "linear-fast") for c in ("random-resnet_tiny", "random-resnet_tiny-s1")}
    spans = []
    for result in results:
        folder = result.parent
        job = json.loads((folder / "job.json").read_text())
        assert job["executor"] == "local-parallel" and job["name"] == f"mec-{job['task']}-{folder.parent.name}"
        assert job["threads"] == max(1, cpu_count() // 2)  # the cores split between the 2 concurrent runs
        assert (folder / "job.out").resolve() == Path(job["stdout"]) and (folder / "job.err").is_file()
        running = json.loads((folder / "running.json").read_text())
        spans.append((running["started"], result.stat().st_mtime))
    spans.sort()
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))  # two ran at the same time


def test_status_shows_the_grid_done_and_the_report_collects_it(grid, capsys, tmp_path):
    runs, _ = grid
    assert {s.state for s in collect_states(runs)} == {"done"}
    capsys.readouterr()
    assert main(["status", str(runs)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["run", "task", "checkpoint", "state"]
    assert sum(" done " in line for line in table[1:]) == 4 and table[-1].startswith("4 done, 0 running")
    from mec_eval.report import build_report

    report = build_report([runs], tmp_path / "r.html", csv_dir=tmp_path / "csv")
    assert report.html.is_file()
    import pandas as pd

    table = pd.read_csv(tmp_path / "csv" / "results.csv")
    assert set(zip(table["checkpoint"], table["task"])) == {
        (c, t) for t in ("knn", "linear-fast") for c in ("random-resnet_tiny", "random-resnet_tiny-s1")}


def test_second_suite_skips_finished_runs(grid, capsys):
    runs, _ = grid
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("result.json")}
    capsys.readouterr()
    assert main(["suite", "--ckpt", CKPTS, "--tasks", "knn,linear-fast", "--executor", "local-parallel",
                 "--out", str(runs), *DIGITS]) == 0
    assert capsys.readouterr().out == ""
    assert before == {p: p.stat().st_mtime_ns for p in runs.rglob("result.json")}


def test_failed_run_shows_in_status_and_retry_reruns_only_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    good = tmp_path / "good.pt"
    assert main(["convert", "--ckpt", "random:resnet_tiny@3", "--to", "canonical", "--out", str(good)]) == 0
    bad = tmp_path / "bad.pt"
    shutil.copy(good, bad)
    jobs = plan_grid(["random:resnet_tiny", str(bad)], ["knn"], runs, DIGITS[:2], "local-parallel")
    saved = bad.read_bytes()
    bad.write_bytes(saved[: len(saved) // 2])  # damaged between submission and run: the job fails
    outcome = dispatch_jobs(jobs, runs, Dispatch("local-parallel", parallel=2, poll_s=0.2))
    assert len(outcome.lines) == 1 and outcome.failed == [jobs[1].folder]
    failed = Path(jobs[1].folder) / "failed.json"
    assert "corrupt" in json.loads(failed.read_text())["error"]

    capsys.readouterr()
    assert main(["status", str(runs)]) == 0
    table = capsys.readouterr().out
    failed_row = next(line for line in table.splitlines() if " failed " in line)
    assert "bad" in failed_row and "    | " in table and "corrupt" in table  # the last lines of the error
    done_result = Path(outcome.lines[0])
    stamp = done_result.stat().st_mtime_ns

    bad.write_bytes(saved)  # fixed: --retry-failed runs the failed run only
    assert main(["suite", "--ckpt", f"random:resnet_tiny,{bad}", "--tasks", "knn", "--out", str(runs),
                 "--retry-failed", *DIGITS]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(Path(jobs[1].folder) / "result.json")]
    assert done_result.stat().st_mtime_ns == stamp and not failed.exists()
    assert {s.state for s in collect_states(runs)} == {"done"}

