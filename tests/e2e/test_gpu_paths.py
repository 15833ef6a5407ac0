"""GPU paths (CUDA autocast, pinned memory, loader workers); skipped on machines without CUDA."""
import pytest
import torch

from mec_eval.cli import main

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_pretrain_and_knn_on_cuda(tmp_path):
    out = tmp_path / "pt"
    assert main(["pretrain", "--config", "digits", "--out", str(out), "run.device=cuda", "optim.epochs=1",
                 "optim.batch_size=64", "run.max_steps_per_epoch=3", "data.num_workers=2", "--quiet"]) == 0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in ckpt["backbone"].values())  # saved device-independent
    assert main(["run", "--task", "knn", "--ckpt", str(out / "last.pt"), "--out", str(tmp_path / "runs"),
                 "data.name=digits", "run.device=cuda", "--quiet"]) == 0
