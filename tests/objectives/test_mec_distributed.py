"""MECLoss across two gloo processes on loopback equals the single-process loss on the whole batch,
and each process gets the gradient of its own slice (the all-gather keeps gradients)."""
from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mec_eval.objectives import build_objective

CFG = SimpleNamespace(name="mec", eps_d2=0.06, order=4, side="auto", lam_warmup_epochs=10.0, temperature=0.1,
                      barlow_lambda=0.0051, vicreg_sim=25.0, vicreg_var=25.0, vicreg_cov=1.0)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(8, 16, generator=g, dtype=torch.float64) for _ in range(4)]  # p1, p2, z1, z2


def _loss_and_grads(p1, p2, z1, z2):
    p1, p2 = p1.clone().requires_grad_(), p2.clone().requires_grad_()
    objective = build_objective(CFG)
    objective.on_step(3.0)  # mid warm-up
    loss = objective([p1, p2], [z1, z2])
    loss.backward()
    return loss.detach(), p1.grad, p2.grad


def _worker(rank: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        rows = slice(4 * rank, 4 * rank + 4)
        loss, g1, g2 = _loss_and_grads(*(t[rows] for t in _inputs()))
        queue.put((rank, loss.item(), g1.numpy(), g2.numpy()))  # by value: this process exits first
        # Tear down together: a rank destroying gloo while its peer is still mid-collective can abort
        # the process (SIGABRT at exit, seen here about once in five runs).
        dist.barrier()
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
    results = dict((r, (loss, g1, g2)) for r, loss, g1, g2 in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    full_loss, full_g1, full_g2 = _loss_and_grads(*_inputs())
    for rank in range(2):
        loss, g1, g2 = results[rank]
        g1, g2 = torch.from_numpy(g1), torch.from_numpy(g2)
        torch.testing.assert_close(torch.tensor(loss, dtype=torch.float64), full_loss)
        # DDP averages gradients over processes, so each local gradient is the full-batch gradient
        # of its rows times the world size.
        rows = slice(4 * rank, 4 * rank + 4)
        torch.testing.assert_close(g1 / 2, full_g1[rows])
        torch.testing.assert_close(g2 / 2, full_g2[rows])
