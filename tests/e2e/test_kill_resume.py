"""kill -9 from outside during pre-training loses at most the iterations since the last save (here
every iteration), corrupts nothing, and the resumed run ends bit-identical to an uninterrupted one.
(Kills at chosen mid-epoch iterations: tests/training/test_interruptions.py.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

ARGS = ["pretrain", "--config", "shapes", "data.name=digits", "optim.epochs=4", "optim.batch_size=32",
        "run.max_steps_per_epoch=3", "run.save_state_every=1", "model.proj_hidden=64", "model.proj_dim=64",
        "model.pred_hidden=16", "--quiet"]


def _cli(out, *extra):
    return [sys.executable, "-m", "mec_eval", *ARGS[:3], "--out", str(out), *ARGS[3:], *extra]


def _env():
    # Same thread count in every process, so floating-point reductions run in the same order.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_kill_during_training_then_resume_matches_uninterrupted(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_cli(reference), check=True, env=_env(), timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(killed), env=_env())
    deadline = time.time() + 240
    while not (killed / "checkpoint_0002.pt").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for path in killed.glob("*.pt"):  # every file present is whole
        torch.load(path, map_location="cpu", weights_only=True)
    meta = torch.load(killed / "last.pt", weights_only=True)["meta"]
    # checkpoint_0002.pt is written just before last.pt: the kill may land between the two.
    assert 5 <= meta["iteration"] < 12 and meta["epoch"] == meta["iteration"] // 3  # the last finished iteration

    subprocess.run(_cli(killed), check=True, env=_env(), timeout=300)
    a = torch.load(reference / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert b["meta"]["epoch"] == 4
    for key, value in a["backbone"].items():
        torch.testing.assert_close(b["backbone"][key], value, rtol=0, atol=0, msg=f"{key} differs after resume")
    for key, value in a["teacher"].items():
        torch.testing.assert_close(b["teacher"][key], value, rtol=0, atol=0)
