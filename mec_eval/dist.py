"""Process-group, device and precision helpers; the distributed ones are no-ops in one process."""
from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist

from mec_eval.utils import UserError


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def shard_indices(n: int) -> list[int]:
    """This process's share of ``n`` items for evaluation: every ``world_size``-th from its rank.

    Unlike ``DistributedSampler`` nothing is padded or repeated, so per-row outputs gathered from all
    processes are exactly the dataset once (metrics must not count a padded sample twice).
    """
    return list(range(rank(), n, world_size()))


def barrier() -> None:
    """Wait for every process (no-op in one process)."""
    if is_distributed():
        torch_dist.barrier()


def broadcast_object(obj, src: int = 0):
    """``obj`` from process ``src`` on every process (identity in one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process along dim 0, keeping gradients for the local slice.

    Uses ``torch.distributed.nn.all_gather`` (autograd-aware), so batch-wise losses such as MEC
    see the global batch as in the official implementation. Identity without a process group.
    """
    if not is_distributed() or world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (no gradient); identity without a process group."""
    if not is_distributed():
        return x.detach()
    x = x.detach().clone()
    torch_dist.all_reduce(x)
    return x / world_size()


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> this process's CUDA device when available, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"run.device={name} but CUDA is not available here; use run.device=cpu or auto")
    return device


def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 (AVX512-BF16 / AMX), where bf16 autocast pays off."""
    check = getattr(torch.backends.cpu, "get_cpu_capability", None)
    capability = check() if check else ""
    return "AVX512" in capability or "AMX" in capability


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` (None = full fp32).

    ``auto``: bf16 on CPUs with native bf16, bf16 on CUDA devices that support it, else fp16 on CUDA.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise UserError(f"unknown run.precision '{precision}' (choose auto, fp32, bf16, fp16)")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for the device, disabled when ``dtype`` is None."""
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def init_from_env() -> bool:
    """Join the process group that ``torchrun`` describes in the environment (WORLD_SIZE > 1).

    NCCL when CUDA is available (one GPU per process, from LOCAL_RANK), gloo otherwise. Returns
    whether this process is part of a multi-process run.
    """
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch_dist.init_process_group(backend=backend)
    return True
