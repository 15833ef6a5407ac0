"""Multi-process pre-training under torchrun (gloo on CPU, loopback): one writer, whole checkpoints."""
import json
import os
import socket
import subprocess
import sys

import torch


def test_torchrun_two_processes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "mec_eval", "pretrain", "--config", "digits", "--out", str(out),
           "optim.epochs=2", "optim.batch_size=32", "run.max_steps_per_epoch=2", "model.proj_hidden=64",
           "model.proj_dim=64", "model.pred_hidden=16", "--quiet"]
    subprocess.run(cmd, check=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r.get("event") == "epoch"] == [1, 2]  # rank 0 alone logs
    assert log[-1]["steps"] == 2 and log[-1]["images_per_s"] > 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["meta"]["epoch"] == 2 and not any(k.startswith("module.") for k in ckpt["backbone"])
