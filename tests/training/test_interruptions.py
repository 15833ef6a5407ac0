"""kill -9 at any iteration, SIGTERM and SIGUSR1: the re-run ends bit-identical and redoes nothing saved.

Each run is its own process, forked from the test (so torch is imported once) and running
``mec-eval``'s ``main``. A wrapper stops it at the start of iteration ``k``: ``exit`` is
``os._exit`` (as abrupt as kill -9: no handler, no flush, no clean-up); a signal name sends that
signal to the process itself, which the engine handles at the next iteration boundary.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
from pathlib import Path

import torch

from mec_eval.training import engine

# semi-10pct on digits: 126 labelled images, batch 32 -> 4 iterations per epoch (3 x 32 + 30), 2 epochs;
# state.pt every 2 iterations and at epoch ends.
SEMI = ["run", "--task", "semi-10pct", "--ckpt", "random:resnet_tiny", "data.name=digits", "optim.epochs=2",
        "optim.batch_size=32", "optim.save_every=2", "optim.log_every=1", "data.image_size=16", "--quiet"]
# Pre-training: 3 iterations per epoch, 2 epochs; last.pt every 2 iterations and at epoch ends.
PRETRAIN = ["pretrain", "--config", "digits", "optim.epochs=2", "optim.batch_size=32", "run.max_steps_per_epoch=3",
            "model.proj_hidden=32", "model.proj_dim=32", "model.pred_hidden=16", "run.save_state_every=2",
            "run.log_every=1", "data.image_size=16", "--quiet"]


def _child(argv: list[str], stop_at: int | None, how: str, err: str) -> None:
    sys.stderr = open(err, "w", encoding="utf-8")  # noqa: SIM115 - the process ends with os._exit below
    torch.set_num_threads(1)  # the same reduction order in every run
    original = engine.TrainingEngine._iteration

    def stopping(self, model, optimizer, scaler, flag, iteration, batch):
        if iteration == stop_at:
            if how == "exit":
                os._exit(9)
            os.kill(os.getpid(), getattr(signal, how))
        return original(self, model, optimizer, scaler, flag, iteration, batch)

    engine.TrainingEngine._iteration = stopping
    from mec_eval.cli import main

    code = main(argv)
    sys.stderr.flush()
    os._exit(code)


def _run(argv: list[str], tmp: Path, stop_at: int | None = None, how: str = "exit") -> tuple[int, str]:
    """(exit code, stderr) of ``mec-eval ARGV`` in a forked process, stopped at ``stop_at``."""
    err = tmp / "stderr.txt"
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(argv, stop_at, how, str(err)))
    proc.start()
    proc.join(timeout=300)
    return proc.exitcode, err.read_text(encoding="utf-8")


def _state(runs: Path) -> dict:
    (path,) = runs.rglob("state.pt")
    return torch.load(path, map_location="cpu", weights_only=True)


def _iterations_logged(log: Path) -> list[int]:
    return [r["iteration"] for r in map(json.loads, log.read_text().splitlines()) if r.get("event") == "iteration"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), f"{key} differs after resume"


def test_trained_task_sigterm_then_kill_at_mid_epoch_iterations_ends_bit_identical(tmp_path):
    reference = tmp_path / "reference"
    assert _run([*SEMI, "--out", str(reference)], tmp_path)[0] == 0
    runs = tmp_path / "runs"
    code, err = _run([*SEMI, "--out", str(runs)], tmp_path, stop_at=0, how="SIGTERM")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "SIGTERM" in lines[0] and "saved at iteration 1; re-run the same command to resume" in lines[0]
    assert _state(runs)["iteration"] == 1
    for stop_at, resumes_from in ((3, 2), (7, 6)):  # killed mid-epoch 1 and 2: iterations 2 and 6 are lost
        assert _run([*SEMI, "--out", str(runs)], tmp_path, stop_at=stop_at)[0] == 9
        assert _state(runs)["iteration"] == resumes_from and not list(runs.rglob("result.json"))
    assert _run([*SEMI, "--out", str(runs)], tmp_path)[0] == 0
    (log,) = runs.rglob("log.jsonl")
    assert _iterations_logged(log) == [0, 1, 2, 2, 3, 4, 5, 6, 6, 7]  # only the unsaved iterations run twice
    _assert_same_weights(_state(reference)["model"], _state(runs)["model"])
    (ref,), (res,) = (list(r.rglob("result.json")) for r in (reference, runs))
    assert json.loads(ref.read_text())["metrics"] == json.loads(res.read_text())["metrics"]


def test_pretraining_sigusr1_then_kill_mid_epoch_then_rerun_matches_uninterrupted(tmp_path):
    reference = tmp_path / "reference"
    assert _run([*PRETRAIN, "--out", str(reference)], tmp_path)[0] == 0
    out = tmp_path / "stopped"
    code, err = _run([*PRETRAIN, "--out", str(out)], tmp_path, stop_at=0, how="SIGUSR1")
    assert code == 2 and "SIGUSR1" in err and "saved at iteration 1" in err, err
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["meta"]["iteration"] == 1 and last["meta"]["epoch"] == 0 and not list(out.glob("checkpoint_*.pt"))
    assert _run([*PRETRAIN, "--out", str(out)], tmp_path, stop_at=5)[0] == 9  # kill -9 mid-epoch 2
    assert torch.load(out / "last.pt", weights_only=True)["meta"]["iteration"] == 4  # saved at 2, 3 (epoch), 4
    assert _run([*PRETRAIN, "--out", str(out)], tmp_path)[0] == 0
    assert _iterations_logged(out / "log.jsonl") == [0, 1, 2, 3, 4, 4, 5]  # only the unsaved iteration 4 redone
    a, b = (torch.load(d / "last.pt", weights_only=True) for d in (reference, out))
    assert b["meta"]["epoch"] == 2 and sorted(p.name for p in out.glob("checkpoint_*.pt")) == \
        ["checkpoint_0001.pt", "checkpoint_0002.pt"]
    for part in ("backbone", "teacher"):
        _assert_same_weights(a[part], b[part])
    for head in ("projector", "predictor"):
        _assert_same_weights(a["heads"][head], b["heads"][head])
