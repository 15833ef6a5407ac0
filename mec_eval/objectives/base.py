"""The objective contract the pre-training engine relies on, and shared float32 helpers."""
from __future__ import annotations

import abc
import contextlib
from typing import Sequence

import torch
from torch import Tensor, nn


class Objective(nn.Module, abc.ABC):
    """Base for self-supervised objectives.

    The engine reads the three class flags to build the model, calls :meth:`on_step` before every
    iteration and ``forward(online, target)`` with one ``[m, dim]`` tensor per view: ``online[i]``
    is the predictor output (or the student projection without a predictor), ``target[i]`` the
    teacher projection (no grad), or the student projection (detached when
    ``stop_gradient_target``). After each forward ``stats`` holds extra scalars for the JSON log.
    """

    default_predictor: bool = False
    default_teacher: bool = False
    stop_gradient_target: bool = False
    stats: dict[str, float]

    def __init__(self) -> None:
        super().__init__()
        self.stats = {}

    @classmethod
    def from_config(cls, cfg) -> "Objective":
        """Build from a ``LossConfig``; objectives without hyper-parameters need no override."""
        return cls()

    @abc.abstractmethod
    def forward(self, online: Sequence[Tensor], target: Sequence[Tensor]) -> Tensor:
        """Scalar loss for one batch of views (every objective defines it; the class cannot be built without)."""

    def on_step(self, epoch: float) -> None:
        """Hook before every iteration with the fractional epoch; schedules override it."""


def check_two_views(*branches: Sequence[Tensor]) -> None:
    """Check the two-view contract: two ``[m, dim]`` tensors per branch, all of one shape."""
    if any(len(branch) != 2 for branch in branches):
        raise ValueError(f"expected two views per branch, got {[len(branch) for branch in branches]}")
    shapes = {tuple(view.shape) for branch in branches for view in branch}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"views must all be [m, dim] with one shape, got {sorted(shapes)}")


def upcast(x: Tensor) -> Tensor:
    """At least float32: bf16/fp16 sums over a batch lose too many digits; float64 stays float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def full_precision(x: Tensor) -> contextlib.AbstractContextManager:
    """A scope with autocast disabled on ``x``'s device, so matmuls inside run in the input dtype."""
    return torch.autocast(device_type=x.device.type, enabled=False)
