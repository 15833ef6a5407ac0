"""Optimisers of pre-training and of the trained tasks: SGD (optionally Nesterov), LARS, AdamW."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

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
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                   "trust_coefficient": trust_coefficient, "exclude_1d": exclude_1d})

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
                    ratio = group["trust_coefficient"] * param_norm / grad_norm
                    trust = torch.where((param_norm > 0) & (grad_norm > 0), ratio, torch.ones_like(param_norm))
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def _as_groups(param_groups: Iterable, lr: float) -> list[dict]:
    """Parameter groups as dicts, each with its peak lr (``lr`` unless the group names its own)."""
    groups = list(param_groups)
    if groups and isinstance(groups[0], torch.Tensor):
        groups = [{"params": groups}]
    out = []
    for group in groups:
        group = dict(group)
        group["params"] = list(group["params"])
        group.setdefault("lr", lr)
        group["peak_lr"] = group["lr"]  # the schedule multiplies this (set_lr_factor)
        out.append(group)
    return out


def build_optimizer(param_groups: Iterable, name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                    *, nesterov: bool = False, betas: Sequence[float] = (0.9, 0.999), trust: float = 0.001,
                    exclude_1d: bool = True) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``param_groups`` (parameters or dicts; a dict's own ``lr`` wins over ``lr``).

    sgd: weight decay on every parameter (the official MEC code, torchvision references);
    lars: see :class:`LARS` (``exclude_1d``); adamw: decoupled weight decay (Loshchilov & Hutter).
    """
    groups = _as_groups(param_groups, lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust,
                    exclude_1d=exclude_1d)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    raise UserError(f"unknown optim.name '{name}' (choose sgd, lars or adamw)")


def set_lr_factor(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group's lr = its peak lr x ``factor`` (the schedule's value at this iteration)."""
    for group in optimizer.param_groups:
        group["lr"] = group["peak_lr"] * factor
