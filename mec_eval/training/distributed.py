"""Wiring a model for several processes: SyncBatchNorm where asked, DDP, and the per-rank evaluation share."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from mec_eval.dist import is_distributed, shard_indices


def maybe_sync_batchnorm(model: nn.Module, asked: bool, distributed: bool,
                         device: torch.device) -> tuple[nn.Module, str]:
    """``model`` with SyncBatchNorm when ``asked`` and ``distributed`` on a GPU, and a note saying what was done.

    torch's SyncBatchNorm runs on GPUs only, so CPU (gloo) runs keep per-process statistics (the note says so).
    One process has nothing to synchronise: the model is left unchanged.
    """
    if not asked:
        return model, "per-process BatchNorm (sync_bn off)"
    if not distributed:
        return model, "BatchNorm over the local batch (one process: sync_bn has nothing to synchronise)"
    if device.type == "cpu":
        return model, "per-process BatchNorm: torch's SyncBatchNorm needs GPUs, this run is on CPU"
    return nn.SyncBatchNorm.convert_sync_batchnorm(model), "SyncBatchNorm across processes"


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when a process group is up (one device per process)."""
    if not is_distributed() or not any(p.requires_grad for p in model.parameters()):
        return model
    ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def evaluation_share(dataset: Dataset) -> Dataset:
    """This process's share of ``dataset`` for gathered evaluation (every item exactly once over all ranks)."""
    return Subset(dataset, shard_indices(len(dataset))) if is_distributed() else dataset
