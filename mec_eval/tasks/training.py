"""Supervised training on top of a checkpoint's backbone: one resumable loop for every trained protocol.

The linear probe (frozen backbone, MEC ``main_lincls.py``), semi-supervised fine-tuning (Barlow
Twins ``evaluate.py``) and ssl-transfer fine-tuning differ only in which parameters train, the
optimiser, the schedule and the loss; this module runs all three. State (trainable weights,
optimiser, epoch, step) is saved atomically to ``state.pt`` after every epoch, so a killed or
re-queued job continues from its last finished epoch and ends exactly where an uninterrupted run
would. Evaluation goes through a metric evaluator (``reset/process/evaluate``).
"""
from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mec_eval.config import EvalDataConfig, EvalOptimConfig, EvalRunConfig
from mec_eval.data import build_dataset
from mec_eval.data.transforms import interpolation_mode, train_transform
from mec_eval.dist import autocast, resolve_device, resolve_precision
from mec_eval.log import JsonLogger, progress
from mec_eval.pretrain.optim import LARS
from mec_eval.tasks.base import TaskBase
from mec_eval.tasks.features import eval_image_size, test_transform
from mec_eval.utils import UserError, atomic_torch_save


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


@dataclass
class TrainPlan:
    """How long and how fast: iterations per epoch, epochs, total iterations and the actual batch."""
    batch_size: int
    iters_per_epoch: int
    epochs: int
    total_iters: int


def make_plan(n_train: int, optim: EvalOptimConfig) -> TrainPlan:
    """Epoch-based (``optim.epochs``) or step-based (``optim.steps``, ssl-transfer) training length."""
    if n_train < 2:
        raise UserError(f"the training split has {n_train} image(s); need at least 2")
    if optim.batch_size < 2 or (optim.steps <= 0 and optim.epochs <= 0):
        raise UserError("optim.batch_size must be >= 2 and optim.epochs (or optim.steps) > 0")
    batch = min(optim.batch_size, n_train)  # a batch larger than the split is the whole split
    per_epoch = math.ceil(n_train / batch)
    if optim.steps > 0:
        return TrainPlan(batch, per_epoch, math.ceil(optim.steps / per_epoch), optim.steps)
    return TrainPlan(batch, per_epoch, optim.epochs, optim.epochs * per_epoch)


def peak_lr(optim: EvalOptimConfig, batch_size: int) -> float:
    """``base_lr * batch / 256`` (linear scaling, with the batch actually used) or ``base_lr``."""
    if optim.lr_scaling == "linear":
        return optim.base_lr * batch_size / 256
    if optim.lr_scaling == "none":
        return optim.base_lr
    raise UserError(f"unknown optim.lr_scaling '{optim.lr_scaling}' (choose linear or none)")


def lr_factor(optim: EvalOptimConfig, step: int, plan: TrainPlan) -> float:
    """Multiplier of each group's peak lr at iteration ``step``: linear warm-up, then the schedule."""
    epoch = step / plan.iters_per_epoch
    if optim.warmup_epochs > 0 and epoch < optim.warmup_epochs:
        return (step + 1) / (optim.warmup_epochs * plan.iters_per_epoch)
    if optim.schedule == "constant":
        return 1.0
    if optim.schedule == "cosine":
        warm = optim.warmup_epochs * plan.iters_per_epoch
        progress_ = (step - warm) / max(plan.total_iters - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(max(progress_, 0.0), 1.0)))
    if optim.schedule == "cosine-epoch":  # torch CosineAnnealingLR(T_max=epochs) stepped once per epoch
        return 0.5 * (1 + math.cos(math.pi * math.floor(epoch) / plan.epochs))
    raise UserError(f"unknown optim.schedule '{optim.schedule}' (choose cosine, cosine-epoch or constant)")


def build_optimizer(groups: list[dict], optim: EvalOptimConfig) -> torch.optim.Optimizer:
    """SGD (optionally Nesterov) or LARS with the trust ratio on every parameter (apex LARC, clip=False)."""
    for group in groups:
        group["peak_lr"] = group["lr"]
    if optim.name == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=optim.momentum, nesterov=optim.nesterov,
                               weight_decay=optim.weight_decay)
    if optim.name == "lars":
        return LARS(groups, lr=groups[0]["lr"], momentum=optim.momentum, weight_decay=optim.weight_decay,
                    trust_coefficient=optim.lars_trust, exclude_1d=False)
    raise UserError(f"unknown optim.name '{optim.name}' (choose sgd or lars)")


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Cross-entropy, or per-class BCE for multi-label sets where only label 1 is positive (ssl-transfer)."""
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits.float(), (targets == 1).float())
    return F.cross_entropy(logits.float(), targets.long())


@dataclass
class Trainer:
    """Trains ``model`` on a dataset with the given optimiser settings, resumable from ``state_path``."""
    model: Classifier
    groups: list[dict]
    optim: EvalOptimConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    seed: int
    state_path: Path
    multilabel: bool = False
    num_workers: int = 0
    quiet: bool = False
    logger: JsonLogger | None = None

    def fit(self, dataset: Dataset) -> TrainPlan:
        plan = make_plan(len(dataset), self.optim)
        model = self.model.to(self.device).to(memory_format=torch.channels_last)
        optimizer = build_optimizer(self.groups, self.optim)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        epoch, step = self._resume(optimizer)
        while epoch < plan.epochs and step < plan.total_iters:
            model.train()
            torch.manual_seed(self.seed * 100_003 + epoch)  # augmentations: same draws after a resume
            order = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            loader = DataLoader(dataset, batch_size=plan.batch_size, shuffle=True, generator=order,
                                num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
            total = min(plan.iters_per_epoch, plan.total_iters - step)
            losses = []
            for i, (images, targets) in enumerate(progress(loader, total=total, desc=f"train {epoch + 1}/{plan.epochs}",
                                                           quiet=self.quiet)):
                if i >= total:
                    break
                if len(images) < 2:
                    continue  # BatchNorm cannot train on a single image (a ragged last batch)
                for group in optimizer.param_groups:
                    group["lr"] = group["peak_lr"] * lr_factor(self.optim, step, plan)
                images = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                with autocast(self.device, self.amp_dtype):
                    logits = model(images)
                loss = classification_loss(logits, targets.to(self.device), self.multilabel)
                if not torch.isfinite(loss):
                    raise UserError(f"non-finite training loss at step {step}: lower optim.base_lr "
                                    f"(now {self.optim.base_lr}) or optim.head_lr, or use run.precision=fp32")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(loss.item())
                step += 1
            epoch += 1
            atomic_torch_save({"epoch": epoch, "step": step, "model": model.trainable_state(),
                               "optimizer": optimizer.state_dict()}, self.state_path)
            if self.logger is not None:
                self.logger.log(event="train_epoch", epoch=epoch, step=step,
                                loss=sum(losses) / max(len(losses), 1), lr=optimizer.param_groups[0]["lr"])
        return plan

    def _resume(self, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
        if not self.state_path.is_file():
            return 0, 0
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
            self.model.load_trainable_state(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            return int(state["epoch"]), int(state["step"])
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, EOFError, pickle.UnpicklingError) as err:
            raise UserError(f"cannot resume from {self.state_path} ({type(err).__name__}: {err}); "
                            "delete it to start this run over") from None


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
    return (build_dataset(data.name, data.root, "train", augment),
            build_dataset(data.name, data.root, "test", test_transform(data)))


def fit_then_predict(model: Classifier, groups: list[dict], train: Dataset, test: Dataset, optim: EvalOptimConfig,
                     data: EvalDataConfig, run: EvalRunConfig, workdir: Path, quiet: bool = False,
                     multilabel: bool = False) -> tuple[TrainPlan, torch.Tensor, torch.Tensor]:
    """Train ``model`` on ``train`` (resumable from ``workdir/state.pt``), then score ``test``."""
    device = resolve_device(run.device)
    amp = resolve_precision(run.precision, device)
    workdir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(model, groups, optim, device, amp, run.seed, workdir / "state.pt", multilabel=multilabel,
                      num_workers=data.num_workers, quiet=quiet, logger=JsonLogger(workdir / "log.jsonl", quiet=True))
    plan = trainer.fit(train)
    scores, targets = predict(model, test, data.batch_size, device, amp, data.num_workers, quiet)
    return plan, scores, targets
