"""Supervised training on top of a checkpoint's backbone, on the one training engine.

The linear probe (frozen backbone, MEC ``main_lincls.py``), semi-supervised fine-tuning (Barlow
Twins ``evaluate.py``) and ssl-transfer fine-tuning differ only in which parameters train, the
optimiser, the schedule and the loss; :func:`fit_then_predict` runs all three on
:class:`mec_eval.training.engine.TrainingEngine`, which keeps ``state.pt`` (trainable weights,
optimiser, iteration) saved every ``optim.save_every`` iterations, at epoch ends and on SIGTERM /
SIGUSR1, so a killed or re-queued job ends exactly where an uninterrupted run would. Test
predictions are made on this process's share and gathered by the metric evaluators.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mec_eval.config import EvalDataConfig, EvalOptimConfig, EvalRunConfig
from mec_eval.data import build_dataset
from mec_eval.data.transforms import interpolation_mode, train_transform
from mec_eval.dist import autocast, is_main_process, resolve_device, resolve_precision
from mec_eval.log import JsonLogger, progress
from mec_eval.tasks.base import TaskBase, TaskContext
from mec_eval.tasks.features import eval_image_size, test_transform
from mec_eval.training.distributed import evaluation_share
from mec_eval.training.engine import Hooks, LoopOptions, TrainingEngine, make_plan
from mec_eval.training.state import StateFile


class TrainedTask(TaskBase):
    """Base of the adapters that train (they keep ``state.pt`` in their run folder, no feature cache)."""


def linear_head(dim: int, num_classes: int) -> nn.Linear:
    """Linear classifier initialised N(0, 0.01) with zero bias (main_lincls.py, Barlow Twins evaluate.py)."""
    head = nn.Linear(dim, num_classes)
    nn.init.normal_(head.weight, mean=0.0, std=0.01)
    nn.init.zeros_(head.bias)
    return head


class Classifier(nn.Module):
    """Backbone + head. A frozen backbone stays in eval mode, runs without gradients in chunks of
    ``chunk`` images (so a 4096-image probe batch fits in memory) and feeds the head in fp32."""

    def __init__(self, backbone: nn.Module, head: nn.Module, frozen: bool, chunk: int = 256):
        super().__init__()
        self.backbone, self.head, self.frozen, self.chunk = backbone, head, frozen, chunk
        if frozen:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # the probe never updates BatchNorm statistics (main_lincls.py)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.frozen:
            return self.head(self.backbone(images))
        with torch.no_grad():
            feats = torch.cat([self.backbone(part) for part in images.split(self.chunk)]).float()
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self.head(feats)

    def trainable_state(self) -> dict:
        """What training changes (and what ``state.pt`` keeps): the head, plus the backbone when tuned."""
        return self.head.state_dict() if self.frozen else self.state_dict()

    def load_trainable_state(self, state: dict) -> None:
        (self.head if self.frozen else self).load_state_dict(state)


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Cross-entropy, or per-class BCE for multi-label sets where only label 1 is positive (ssl-transfer).

    Logits [B, k, C] are k heads side by side (:mod:`mec_eval.tasks.linear_grid`): the loss is the sum
    of the k heads' losses, so each head's gradient is exactly its own loss's.
    """
    if logits.dim() == 3:
        return torch.stack([classification_loss(logits[:, i], targets, multilabel)
                            for i in range(logits.shape[1])]).sum()
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits.float(), (targets == 1).float())
    return F.cross_entropy(logits.float(), targets.long())


def classifier_engine(model: Classifier, groups: list[dict], train: Dataset, optim: EvalOptimConfig,
                      data: EvalDataConfig, run: EvalRunConfig, workdir: Path, quiet: bool = False,
                      multilabel: bool = False, non_finite_hint: str | None = None) -> TrainingEngine:
    """The engine that trains ``model`` on ``train`` with ``optim``, resumable from ``workdir/state.pt``.

    Groups without an ``lr`` get the scaled lr (``optim.base_lr`` x effective batch / 256 or as is).
    """
    device = resolve_device(run.device)
    amp = resolve_precision(run.precision, device)
    workdir.mkdir(parents=True, exist_ok=True)
    logger = JsonLogger(workdir / "log.jsonl" if is_main_process() else None, quiet=True)

    def step(net: nn.Module, batch) -> torch.Tensor:
        images, targets = batch
        with autocast(device, amp):
            logits = net(images)
        return classification_loss(logits, targets, multilabel)

    logged = {r.get("epoch") for r in logger.records() if r.get("event") == "train_epoch"}

    def epoch_record(epochs_done: int, stats: dict) -> None:
        if epochs_done in logged:  # the engine replays a saved epoch end on resume; log each epoch once
            return
        logged.add(epochs_done)
        logger.log(event="train_epoch", epoch=epochs_done, step=stats["iteration"], loss=stats["loss"], lr=stats["lr"])

    options = LoopOptions(seed=run.seed, device=device, amp_dtype=amp, save_every=optim.save_every,
                          log_every=optim.log_every, sync_bn=optim.sync_bn, num_workers=data.num_workers, quiet=quiet,
                          desc="train", non_finite_hint=non_finite_hint or (
                              f"lower optim.base_lr (now {optim.base_lr}) or optim.head_lr, or use run.precision=fp32"))
    plan = make_plan(len(train), optim.batch_size, optim.epochs, optim.steps)
    store = StateFile(workdir / "state.pt", model.trainable_state, model.load_trainable_state)
    return TrainingEngine(model, groups, step, train, optim, plan, options, store, logger,
                          Hooks(on_epoch_end=epoch_record))


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device, amp_dtype,
            num_workers: int = 0, quiet: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores [N, C] (float32, CPU) and targets of ``dataset`` in order, model in eval mode."""
    model = model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    scores, targets = [], []
    for images, target in progress(loader, total=len(loader), desc="evaluate", quiet=quiet):
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp_dtype):
            scores.append(model(images).float().cpu())
        targets.append(torch.as_tensor(target))
    return torch.cat(scores), torch.cat(targets)


def supervised_sets(data: EvalDataConfig) -> tuple[Dataset, Dataset]:
    """(train split with RandomResizedCrop + flip, test split with resize + centre crop) of ``data``."""
    augment = train_transform(eval_image_size(data), interpolation=interpolation_mode(data.interpolation))
    # Decoded training images stay in memory up to data.decoded_cache_mb, so later epochs do not decode again.
    return (build_dataset(data.name, data.root, "train", augment, cache_mb=data.decoded_cache_mb,
                          workers=data.num_workers),
            build_dataset(data.name, data.root, "test", test_transform(data)))


def fit_then_predict(model: Classifier, groups: list[dict], train: Dataset, test: Dataset, optim: EvalOptimConfig,
                     data: EvalDataConfig, run: EvalRunConfig, workdir: Path, ctx: TaskContext,
                     multilabel: bool = False) -> tuple[TrainingEngine, torch.Tensor, torch.Tensor]:
    """Train ``model`` on ``train`` (resumable), then score this process's share of ``test``.

    Returns the engine (its ``scale`` and ``plan``), and the local scores and targets: feed them to a
    metric evaluator, whose ``evaluate()`` gathers every process's share.
    """
    engine = classifier_engine(model, groups, train, optim, data, run, workdir, ctx.quiet, multilabel)
    if is_main_process():
        ctx.logger.info(engine.scale_line())
    engine.fit()
    scores, targets = predict(model, evaluation_share(test), data.batch_size, engine.options.device,
                              engine.options.amp_dtype, data.num_workers, ctx.quiet)
    return engine, scores, targets
