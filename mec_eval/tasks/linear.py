"""The MEC linear probe (official ``benchmarks/linearprob/main_lincls.py``, SimSiam-derived).

The backbone is frozen in eval mode; the head is ``BatchNorm1d(D, affine=False, eps=1e-6)`` followed
by a linear layer initialised N(0, 0.01) with zero bias, trained with LARS (trust 0.001 on every
parameter) around SGD, batch 4096, lr = 0.03 * batch / 256, momentum 0.9, no weight decay, cosine
over 100 epochs, on RandomResizedCrop + flip; scored top-1/top-5 after the last epoch on the
resize 256 / centre-crop 224 test images. No checkpoint selection on the test set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from mec_eval.checkpoints import Encoder
from mec_eval.config import EvalDataConfig, EvalOptimConfig, EvalRunConfig
from mec_eval.data import build_dataset
from mec_eval.data.transforms import interpolation_mode, train_transform
from mec_eval.dist import resolve_device, resolve_precision
from mec_eval.log import JsonLogger
from mec_eval.metrics.classification import ClassificationEvaluator
from mec_eval.tasks.base import Result
from mec_eval.tasks.features import eval_image_size, test_transform
from mec_eval.tasks.training import Classifier, Trainer, peak_lr, predict


@dataclass
class LinearConfig:
    protocol: str = "paper"
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    optim: EvalOptimConfig = field(default_factory=lambda: EvalOptimConfig(
        name="lars", epochs=100, batch_size=4096, base_lr=0.03, momentum=0.9, weight_decay=0.0))
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


def probe_head(dim: int, num_classes: int) -> nn.Sequential:
    """Affine-free BatchNorm + linear layer, initialised as in main_lincls.py."""
    linear = nn.Linear(dim, num_classes)
    nn.init.normal_(linear.weight, mean=0.0, std=0.01)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False, eps=1e-6), linear)


class LinearTask:
    name = "linear"
    Config = LinearConfig

    def __init__(self, cache_dir: Path, quiet: bool = False):
        self.quiet = quiet

    def run(self, encoder: Encoder, cfg: LinearConfig, workdir: Path) -> Result:
        size = eval_image_size(cfg.data)
        train = build_dataset(cfg.data.name, cfg.data.root, "train",
                              train_transform(size, interpolation=interpolation_mode(cfg.data.interpolation)))
        test = build_dataset(cfg.data.name, cfg.data.root, "test", test_transform(cfg.data))
        device = resolve_device(cfg.run.device)
        amp = resolve_precision(cfg.run.precision, device)
        head = probe_head(encoder.feature_dim, len(train.classes))
        model = Classifier(encoder.backbone, head, frozen=True, chunk=cfg.data.batch_size)
        lr = peak_lr(cfg.optim, min(cfg.optim.batch_size, len(train)))
        groups = [{"params": list(head.parameters()), "lr": lr}]
        workdir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(model, groups, cfg.optim, device, amp, cfg.run.seed, workdir / "state.pt",
                          num_workers=cfg.data.num_workers, quiet=self.quiet,
                          logger=JsonLogger(workdir / "log.jsonl", quiet=True))
        plan = trainer.fit(train)
        scores, targets = predict(model, test, cfg.data.batch_size, device, amp, cfg.data.num_workers, self.quiet)
        evaluator = ClassificationEvaluator()
        evaluator.process(scores, targets)
        return Result(dataset=cfg.data.name, metrics=evaluator.evaluate(), primary="top1",
                      extra={"n_train": len(train), "n_test": len(test), "batch_size": plan.batch_size,
                             "iterations": plan.total_iters, "lr": lr})
