"""The lr scaling rule and the lr schedule of every training run (pre-training and trained tasks).

Lengths are in iterations; ``iters_per_epoch`` turns epoch-based settings (warm-up, the per-epoch
cosine) into iterations, so epoch-based and iteration-based (``optim.steps``) runs share one
function.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from mec_eval.utils import UserError


def scaled_lr(base_lr: float, effective_batch: int, rule: str = "linear") -> float:
    """``linear``: base_lr * effective_batch / 256 (Goyal et al.; MAE prints it so); ``none``: base_lr."""
    if rule == "linear":
        return base_lr * effective_batch / 256
    if rule == "none":
        return base_lr
    raise UserError(f"unknown optim.lr_scaling '{rule}' (choose linear or none)")


@dataclass(frozen=True)
class LRSchedule:
    """Multiplier of the peak lr at each iteration: linear warm-up from 0, then ``kind``.

    ``cosine``: half cosine from 1 to 0 over the iterations after the warm-up (MEC App. C,
    ssl-transfer ``CosineAnnealingLR(T_max=steps)`` stepped per iteration); ``cosine-epoch``: the
    same stepped once per epoch (Barlow Twins ``evaluate.py``, ``CosineAnnealingLR(T_max=epochs)``);
    ``constant``; ``multistep``: x ``gamma`` at each milestone iteration (detectron2
    ``WarmupMultiStepLR``).
    """
    kind: str
    iters_per_epoch: int
    total_iters: int
    warmup_epochs: float = 0.0
    milestones: tuple = ()
    gamma: float = 0.1
    warmup_factor: float = 0.0      # multiplier at iteration 0 (detectron2 WARMUP_FACTOR 0.001; MEC / MAE: 0)
    warmup_iterations: int = 0      # > 0: warm-up length in iterations (detectron2 WARMUP_ITERS), not epochs

    def __post_init__(self):
        if self.kind not in ("cosine", "cosine-epoch", "constant", "multistep"):
            raise UserError(f"unknown optim.schedule '{self.kind}' "
                            "(choose cosine, cosine-epoch, constant or multistep)")

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_iters / self.iters_per_epoch)

    @property
    def warmup_iters(self) -> float:
        return self.warmup_iterations or self.warmup_epochs * self.iters_per_epoch

    def factor(self, iteration: int) -> float:
        """The multiplier at 0-based ``iteration`` (the lr its update uses)."""
        if self.warmup_iters > 0 and iteration < self.warmup_iters:
            # official MEC / MAE: lr * epoch / warmup_epochs (factor 0); detectron2 WarmupParamScheduler
            # "linear": factor * (1 - alpha) + alpha, times the schedule's value (here 1 before any milestone)
            alpha = iteration / self.warmup_iters
            warm = self.warmup_factor * (1.0 - alpha) + alpha
            return warm * (self.gamma ** bisect.bisect_right(self.milestones, iteration)
                           if self.kind == "multistep" else 1.0)
        if self.kind == "constant":
            return 1.0
        if self.kind == "cosine":
            progress = (iteration - self.warmup_iters) / max(self.total_iters - self.warmup_iters, 1e-12)
            return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
        if self.kind == "cosine-epoch":
            return 0.5 * (1.0 + math.cos(math.pi * (iteration // self.iters_per_epoch) / self.epochs))
        return self.gamma ** bisect.bisect_right(self.milestones, iteration)


def schedule_from_config(optim, iters_per_epoch: int, total_iters: int) -> LRSchedule:
    """The schedule an ``optim`` config section (:class:`mec_eval.config.TrainingOptimConfig`) asks for."""
    return LRSchedule(optim.schedule, iters_per_epoch, total_iters, optim.warmup_epochs, tuple(optim.milestones),
                      optim.gamma, float(getattr(optim, "warmup_factor", 0.0)),
                      int(getattr(optim, "warmup_iterations", 0)))
