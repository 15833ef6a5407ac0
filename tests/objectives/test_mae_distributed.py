"""U-MAE and M-MAE terms across two gloo processes equal the single-process terms on the whole batch: the CLS
tokens are gathered over processes (with gradients for the local slice), as in the official implementations."""
from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mec_eval.models.mae import MAEOutput
from mec_eval.objectives.mae import MMAELoss, UMAELoss


def _cls() -> torch.Tensor:
    return torch.randn(8, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _terms_and_grads(cls: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
    """(value, d value / d cls) of the U-MAE and the M-MAE term; the reconstruction part is a constant here."""
    out = []
    for objective, key in ((UMAELoss(weight=0.01), "uniformity"), (MMAELoss(lam=0.01, mu=3.0), "tcr")):
        z = cls.clone().requires_grad_()
        pixels = torch.zeros(len(z), 4, 6, dtype=torch.float64)
        term = objective(MAEOutput(pixels, pixels + 1, torch.ones(len(z), 4, dtype=torch.float64), z))[key]
        term.backward()
        out.append((term.item(), z.grad))
    return out


def _worker(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        terms = _terms_and_grads(_cls()[4 * rank:4 * rank + 4])
        queue.put((rank, [(value, grad.numpy()) for value, grad in terms]))
        dist.barrier()  # tear down together (see test_mec_distributed.py)
    finally:
        dist.destroy_process_group()


def test_two_process_gather_matches_single_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    full = _terms_and_grads(_cls())
    for rank in range(2):
        for (value, grad), (full_value, full_grad) in zip(results[rank], full):
            assert abs(value - full_value) < 1e-12 * max(1.0, abs(full_value))
            # DDP averages over processes: each local gradient is the full-batch one of its rows x world size.
            torch.testing.assert_close(torch.from_numpy(grad) / 2, full_grad[4 * rank:4 * rank + 4])
