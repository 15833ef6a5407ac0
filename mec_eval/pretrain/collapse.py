"""Collapse monitoring during pre-training: matrix entropy H_1 and effective rank of the batch projections.

Every ``run.diagnostics_every`` iterations the student projector's output for the first view of the
current step (the embedding the objective sees before any predictor, ``[per-process batch, proj_dim]``)
is captured by a forward hook (no extra forward pass, nothing changes in training) and its ``H_1``
(von Neumann, Tan et al. ICML 2024) and ``exp(H_1)`` are logged as a JSON line ``event=diagnostics``
(main process, its own batch). A collapsed network shows an effective rank near 1.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mec_eval.diagnostics import matrix_entropy
from mec_eval.dist import is_main_process
from mec_eval.log import JsonLogger


class CollapseMonitor:
    """Hooks ``projector``; :meth:`before` arms it on the iterations to measure, :meth:`after` logs."""

    def __init__(self, projector: nn.Module, every: int, logger: JsonLogger):
        self.every, self.logger = every, logger
        self.captured: torch.Tensor | None = None
        self.armed = False
        projector.register_forward_hook(self._capture)

    def _capture(self, _module, _inputs, output) -> None:
        if self.armed and self.captured is None:  # the first view of the step
            self.captured = output.detach()

    def before(self, iteration: int) -> None:
        self.armed, self.captured = self.every > 0 and iteration % self.every == 0 and is_main_process(), None

    def after(self, iteration: int) -> dict | None:
        """The logged values (None on the iterations not measured)."""
        if not self.armed or self.captured is None:
            return None
        h1 = matrix_entropy(self.captured.float(), 1.0)
        values = {"entropy_h1": h1, "effective_rank": math.exp(h1), "batch": int(self.captured.shape[0]),
                  "embedding": "projector"}
        self.armed, self.captured = False, None
        self.logger.log(event="diagnostics", iteration=iteration, **values)
        return values
