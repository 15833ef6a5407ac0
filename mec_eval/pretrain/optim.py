"""Optimisers and schedules of MEC pre-training: SGD or LARS, linear warm-up then cosine (App. C)."""
from __future__ import annotations

import math

import torch
from torch import nn

from mec_eval.utils import UserError


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio (You et al., 2017), as used by BYOL / Barlow Twins.

    By default one-dimensional parameters (biases, BatchNorm) get neither weight decay nor the trust
    ratio, the usual exclusion in SSL pre-training. ``exclude_1d=False`` applies both to every
    parameter, as apex's ``LARC(clip=False)`` wrapper around SGD does in the SimSiam/MEC linear probe
    (``main_lincls.py --lars``).
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, exclude_1d: bool = True):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, exclude_1d=exclude_1d))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if p.ndim > 1 or not group["exclude_1d"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    param_norm, grad_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where((param_norm > 0) & (grad_norm > 0),
                                        group["trust_coefficient"] * param_norm / grad_norm, torch.ones_like(param_norm))
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """Linear scaling rule (Goyal et al.): lr = base_lr * batch / 256."""
    return base_lr * batch_size / 256


def build_optimizer(params: list[nn.Parameter], name: str, lr: float, momentum: float, weight_decay: float,
                    trust: float = 0.001) -> torch.optim.Optimizer:
    if name == "sgd":
        # The official MEC code applies weight decay to every parameter.
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        return LARS(params, lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust)
    raise UserError(f"unknown optim.name '{name}' (choose sgd or lars)")


def warmup_cosine(epoch: float, peak_lr: float, warmup_epochs: float, total_epochs: float, final_lr: float = 0.0) -> float:
    """Learning rate at fractional ``epoch``: linear warm-up from 0, then cosine to ``final_lr``."""
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return peak_lr * epoch / warmup_epochs
    span = max(total_epochs - warmup_epochs, 1e-12)
    progress = min(max((epoch - warmup_epochs) / span, 0.0), 1.0)
    return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
