"""Classification metrics: top-k accuracy and an accumulating evaluator."""
from __future__ import annotations

import torch

from mec_eval.dist import is_distributed


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, k: int = 1) -> float:
    """Percentage of rows whose true class is among the ``k`` highest scores."""
    if logits.ndim != 2 or target.ndim != 1 or len(logits) != len(target):
        raise ValueError(f"expected logits [N, C] and target [N], got {tuple(logits.shape)} and {tuple(target.shape)}")
    if len(target) == 0:
        raise ValueError("no samples")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == target[:, None]).any(dim=1).float().mean() * 100.0)


class ClassificationEvaluator:
    """Accumulates scores and labels over batches; ``evaluate`` returns top-1 (and top-5) in percent.

    detectron2's DatasetEvaluator interface, so gathering across processes happens in one place.
    """

    def __init__(self, topk: tuple[int, ...] = (1, 5)):
        self.topk = topk
        self.reset()

    def reset(self) -> None:
        self._scores: list[torch.Tensor] = []
        self._targets: list[torch.Tensor] = []

    def process(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        self._scores.append(scores.detach().float().cpu())
        self._targets.append(targets.detach().long().cpu())

    def _gathered(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._scores:
            raise ValueError("evaluate() called before any process()")
        scores, targets = torch.cat(self._scores), torch.cat(self._targets)
        if is_distributed():
            import torch.distributed as torch_dist

            parts: list = [None] * torch_dist.get_world_size()
            torch_dist.all_gather_object(parts, (scores, targets))
            scores = torch.cat([p[0] for p in parts])
            targets = torch.cat([p[1] for p in parts])
        return scores, targets

    def evaluate(self) -> dict[str, float]:
        scores, targets = self._gathered()
        return {f"top{k}": topk_accuracy(scores, targets, k) for k in self.topk if k <= scores.shape[1]}
