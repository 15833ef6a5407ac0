"""Process-group, device and precision helpers; the distributed ones are no-ops in one process."""
from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as torch_dist

from mec_eval.utils import SHARED_WITH_PEERS, UserError

T = TypeVar("T")
# How long a process waits for the others in a coordination exchange (below). Long, because the main
# process may be waiting there for a lock another job holds (a run folder, a feature-cache entry);
# a peer that dies closes its sockets, which ends the wait at once.
COORDINATION_TIMEOUT = timedelta(hours=24)
_SHARED_MARK = SHARED_WITH_PEERS
_coordination_group = None


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return rank() == 0


def shard_batches(n: int, batch_size: int) -> list[range]:
    """This process's batches of ``n`` items taken in order ``batch_size`` at a time: every
    ``world_size``-th batch, from its rank.

    Each batch holds exactly the items it holds in one process, so a model sees the same inputs in
    the same batches whatever the number of processes (kernels chosen by batch shape give the same
    bits); nothing is padded or repeated.
    """
    starts = range(rank() * batch_size, n, world_size() * batch_size)
    return [range(start, min(start + batch_size, n)) for start in starts]


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


def _coordination():
    """A gloo group of every process for small control messages (decisions, failures, progress):
    CPU-side whatever the main backend is, with :data:`COORDINATION_TIMEOUT`.

    Created at the first exchange, which every process reaches in the same order (``new_group`` is
    a collective); made again if the default group was replaced.
    """
    global _coordination_group
    world = torch_dist.group.WORLD
    if _coordination_group is None or _coordination_group[0] is not world:
        _coordination_group = (world, torch_dist.new_group(backend="gloo", timeout=COORDINATION_TIMEOUT))
    return _coordination_group[1]


def _exchange(payload) -> list:
    box = [None] * world_size()
    torch_dist.all_gather_object(box, payload, group=_coordination())
    return box


def _describe_failure(err: Exception) -> tuple:
    if isinstance(err, UserError):
        return "user", str(err)
    if isinstance(err, OSError):
        return "os", (err.errno, err.strerror or str(err), err.filename)
    return "other", f"{type(err).__name__}: {err}"


def _peer_failure(peer: int, kind: str, detail) -> Exception:
    """The exception a process raises for ``peer``'s failure: a user error stays the same user
    error (the CLI prints the same one line and exits 2 everywhere); a bug names the process."""
    if kind == "user":
        return UserError(detail)
    if kind == "os":
        return OSError(*detail)
    return RuntimeError(f"process {peer} failed: {detail}")


def _together(fn: Callable[[], T], share: bool) -> tuple[T, list]:
    """Run ``fn`` here, then exchange with every process; (this process's value, every process's
    value when ``share``, else Nones). A failure anywhere raises on every process.

    Every coordination point of the evaluation code is one of these exchanges (one collective of
    one kind on one group), so a process that fails early and reports its failure is always heard
    by its peers at whichever exchange they reach next, instead of leaving them blocked forever.
    An exception already reported is marked and passes outer exchanges untouched.
    """
    if not is_distributed():
        value = fn()
        return value, [value]
    try:
        value = fn()
    except Exception as err:
        if not getattr(err, _SHARED_MARK, False):
            _exchange(("failed", _describe_failure(err)))
            setattr(err, _SHARED_MARK, True)
        raise
    payloads = _exchange(("ok", value if share else None))
    for peer, (status, body) in enumerate(payloads):
        if status == "failed":
            failure = _peer_failure(peer, *body)
            setattr(failure, _SHARED_MARK, True)
            raise failure
    return value, [body for _, body in payloads]


def run_together(fn: Callable[[], T]) -> T:
    """``fn()`` on every process, which then wait for each other; if any raised, all raise."""
    return _together(fn, share=False)[0]


def share_from_main(fn: Callable[[], T]) -> T:
    """``fn()`` on the main process only (its value, small and picklable, goes to every process);
    the others wait. If it raises, every process raises."""
    return _together(fn if is_main_process() else (lambda: None), share=True)[1][0]


def gather_together(fn: Callable[[], T]) -> list[T]:
    """``fn()`` on every process; every process gets all the values, in rank order."""
    return _together(fn, share=True)[1]


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
    if device.type == "cuda" and device.index is None:  # this process's GPU (LOCAL_RANK under torchrun)
        return torch.device("cuda", torch.cuda.current_device())
    return device


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU has native bf16 (AVX512-BF16 or AMX-BF16), where bf16 autocast pays off.

    Plain AVX512 (e.g. Skylake) and AVX2 CPUs emulate bf16, about 100x slower than fp32, so torch's
    capability string ("AVX512") is not enough: the kernel's flag list decides where it can be read.
    """
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), None)
    except OSError:
        flags = None
    if flags is not None:
        return "avx512_bf16" in flags or "amx_bf16" in flags
    check = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return "AMX" in (check() if check else "")  # no flag list (not Linux): only AMX is known to carry bf16


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


def init_from_env(device: str = "auto") -> bool:
    """Join the process group that ``torchrun`` (or submitit's ``TorchDistributedEnvironment``)
    describes in the environment (WORLD_SIZE > 1).

    NCCL when CUDA is available and ``device`` (``run.device``) is not the CPU, one GPU per process
    from LOCAL_RANK; gloo otherwise. Returns whether this process is part of a multi-process run.
    """
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return is_distributed()
    use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if use_cuda and ":" in device and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        # Checked before joining, identically on every process: nobody waits for a process that left.
        raise UserError(f"run.device={device} names one GPU, but {os.environ['LOCAL_WORLD_SIZE']} processes "
                        "share this machine and each uses its own (LOCAL_RANK); use run.device=cuda or auto")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return True
