"""Job records and the states ``status`` reads from them (torch-free, no job started)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from mec_eval.launch.records import (
    collect_states,
    format_status,
    job_attempt,
    run_state,
    write_job_record,
)


def test_states_from_records(tmp_path):
    run = tmp_path / "knn" / "c" / "h"
    assert run_state(run).state == "new"
    write_job_record(run, kind="task", task="knn", checkpoint="c", job_id="9_0", stdout=str(tmp_path / "o.out"))
    assert (run_state(run).state, run_state(run).job_id) == ("pending", "9_0")
    assert os.readlink(run / "job.out") == "../../../o.out"  # relative: the runs folder can move
    with job_attempt(run, "9_0"):
        assert run_state(run).state == "running"
    (run / "result.json").write_text(json.dumps({"task": "knn", "checkpoint": {"name": "c"}, "duration_s": 61}))
    row = run_state(run)
    assert (row.state, row.duration_s) == ("done", 61)
    assert "1m01s" in format_status([row], tmp_path)


def test_an_exception_is_a_failure_with_the_last_lines(tmp_path):
    with pytest.raises(ValueError), job_attempt(tmp_path, "5"):
        raise ValueError("the last line says what went wrong")
    row = run_state(tmp_path)
    assert row.state == "failed" and row.tail[-1] == "ValueError: the last line says what went wrong"
    with job_attempt(tmp_path, "5"):  # a retry clears the failure
        assert run_state(tmp_path).state == "running"
    assert json.loads((tmp_path / "running.json").read_text())["attempt"] == 2


@pytest.mark.parametrize("stop", [SystemExit(144), KeyboardInterrupt(), RuntimeError("preempted")])
def test_requeue_cancel_and_resumable_stops_are_not_failures(tmp_path, stop):
    with pytest.raises(type(stop)), job_attempt(tmp_path, "5", resumable=(RuntimeError,)):
        raise stop
    assert not (tmp_path / "failed.json").exists()


def test_a_vanished_process_reads_as_failed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (tmp_path / "running.json").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead), "started": 1}))
    row = run_state(tmp_path)
    assert row.state == "failed" and "ended without a result" in row.tail[0]
    (tmp_path / "running.json").write_text(json.dumps({"host": "elsewhere", "pid": int(dead), "started": 1}))
    assert run_state(tmp_path).state == "running"  # another host's process cannot be checked from here


def test_damaged_records_do_not_break_status(tmp_path):
    run = tmp_path / "t" / "c" / "h"
    run.mkdir(parents=True)
    (run / "running.json").write_text(json.dumps({"started": "yesterday", "pid": "x"}))
    (run / "failed.json").write_text(json.dumps({"failed": None, "tail": "not a list", "error": 3}))
    (run / "job.json").write_text("[1, 2]")
    (rows,) = collect_states(tmp_path)
    assert rows.state == "failed" and rows.tail == ["3"] and rows.duration_s is None
