"""``suite --watch``: a pre-training folder gains checkpoints while the watcher runs; every K-th epoch
plus the last is evaluated exactly once, the watcher stops at the end, and a restart does nothing."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from mec_eval.cli import main
from mec_eval.launch.suite import Dispatch
from mec_eval.launch.watch import numbered_checkpoints, watch
from mec_eval.utils import UserError

EPOCHS = 5


@pytest.fixture
def growing_pretraining(tmp_path):
    """A pre-training folder (config.yaml, optim.epochs=5) and a thread that writes checkpoint_0001..5.pt
    into it one by one, atomically (temporary file, rename), as pre-training does; returns (folder, thread)."""
    folder, source = tmp_path / "pre", tmp_path / "source.pt"
    folder.mkdir()
    # One set of weights for every epoch keeps the test fast (features are cached by weights); the
    # runs stay apart because a checkpoint's run folder is named after its file.
    assert main(["convert", "--ckpt", "random:resnet_tiny", "--to", "canonical", "--out", str(source)]) == 0
    (folder / "config.yaml").write_text(yaml.safe_dump({"optim": {"epochs": EPOCHS}}))

    def grow():
        for epoch in range(1, EPOCHS + 1):
            time.sleep(0.4)
            tmp = folder / f".checkpoint_{epoch:04d}.pt.tmp"
            tmp.write_bytes(source.read_bytes())
            os.replace(tmp, folder / f"checkpoint_{epoch:04d}.pt")

    return folder, threading.Thread(target=grow)


def test_watch_evaluates_each_wanted_checkpoint_once(growing_pretraining, tmp_path, capsys):
    folder, writer = growing_pretraining
    runs = tmp_path / "runs"
    writer.start()
    outcome = watch(folder, 2, ["knn"], runs, ["data.name=digits"], Dispatch("local"), poll_s=0.1, quiet=True)
    writer.join()
    assert [e for e, _ in numbered_checkpoints(folder)] == [1, 2, 3, 4, 5]  # it waited for the end
    results = [json.loads(Path(p).read_text()) for p in outcome.lines]
    assert sorted(Path(r["checkpoint"]["path"]).name for r in results) == [
        "checkpoint_0002.pt", "checkpoint_0004.pt", "checkpoint_0005.pt"]
    assert len(list(runs.rglob("result.json"))) == 3  # epochs 2 and 4 (every 2) and 5 (the last)
    (state_file,) = (runs / ".watch").iterdir()
    assert sorted(json.loads(state_file.read_text())["evaluated"]) == [
        "checkpoint_0002.pt", "checkpoint_0004.pt", "checkpoint_0005.pt"]

    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("result.json")}
    capsys.readouterr()
    assert main(["suite", "--watch", str(folder), "--every", "2", "--tasks", "knn", "--poll", "0.1",
                 "--out", str(runs), "data.name=digits", "--quiet"]) == 0  # a restart: nothing twice
    assert capsys.readouterr().out == ""
    assert stamps == {p: p.stat().st_mtime_ns for p in runs.rglob("result.json")}


def test_watch_stops_on_a_failed_pretraining(tmp_path):
    folder = tmp_path / "pre"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"optim": {"epochs": 3}}))
    (folder / "failed.json").write_text(json.dumps({"error": "UserError: optim.batch_size too large"}))
    with pytest.raises(UserError, match="batch_size too large"):
        watch(folder, 1, ["knn"], tmp_path / "runs", ["data.name=digits"], poll_s=0.05, quiet=True)
