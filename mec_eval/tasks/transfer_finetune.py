"""Fine-grained transfer, fine-tuning protocol of the ssl-transfer study (MEC Table 8, ``finetune.py``).

The whole network plus a new linear layer is trained with SGD (Nesterov momentum 0.9), batch 64,
for 5,000 steps with a per-step cosine schedule, on bicubic RandomResizedCrop(224) + flip. Each
point of the grid lr in {0.1, 0.01, 0.001, 0.0001} x weight decay in {0, 1e-6, 1e-5, 1e-4, 1e-3}/lr
is trained on train and scored on val (no augmentation); the best is retrained on train+val and
scored once on test. Every grid point is its own resumable run under ``workdir/grid/``: a finished
point is never trained again, so a re-queued job continues the search.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, Subset

from mec_eval.checkpoints import Encoder
from mec_eval.config import EvalDataConfig, EvalOptimConfig
from mec_eval.data import build_dataset, dataset_spec
from mec_eval.data.subsets import holdout_split
from mec_eval.data.transforms import interpolation_mode, train_transform
from mec_eval.dist import barrier, is_main_process
from mec_eval.metrics.evaluator import gather_columns
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import TransferFinetuneConfig
from mec_eval.tasks.features import test_transform
from mec_eval.tasks.training import Classifier, TrainedTask, fit_then_predict
from mec_eval.tasks.transfer import VAL_FRACTION, VAL_SEED, expand_all_transfer_sets, score, transfer_data
from mec_eval.utils import UserError, atomic_write_text


@dataclass
class FinetuneSplits:
    train: Dataset      # augmented
    val: Dataset        # not augmented
    trainval: Dataset   # augmented
    test: Dataset       # not augmented
    classes: list[str]
    val_source: str


def finetune_splits(data: EvalDataConfig) -> FinetuneSplits:
    """The four datasets of finetune.py: official val where it exists, else the 20 % hold-out."""
    aug = train_transform(data.image_size, interpolation=interpolation_mode(data.interpolation))
    plain = test_transform(data)
    # The test split is read once: only training images are worth the decoded-image cache.
    build = lambda split, transform: build_dataset(  # noqa: E731
        data.name, data.root, split, transform, cache_mb=0 if split == "test" else data.decoded_cache_mb,
        workers=data.num_workers)
    test = build("test", plain)
    if "val" in dataset_spec(data.name).splits:
        train = build("train", aug)
        return FinetuneSplits(train, build("val", plain), ConcatDataset([train, build("val", aug)]), test,
                              list(train.classes), "official val split")
    full = build("train", aug)
    tr, va = holdout_split(len(full), VAL_FRACTION, VAL_SEED)
    return FinetuneSplits(Subset(full, tr.tolist()), Subset(build("train", plain), va.tolist()), full, test,
                          list(full.classes), f"{VAL_FRACTION:.0%} of train held out (seed {VAL_SEED})")


class TransferFinetuneTask(TrainedTask):
    name = "transfer-finetune"
    Config = TransferFinetuneConfig
    expand = classmethod(expand_all_transfer_sets)

    def _train_and_score(self, encoder: Encoder, cfg: TransferFinetuneConfig, optim: EvalOptimConfig, fit_on: Dataset,
                         score_on: Dataset, num_classes: int, folder: Path) -> tuple[dict[str, float], dict]:
        """Metrics on ``score_on`` after training on ``fit_on``, and the run's scale (result.json)."""
        spec = dataset_spec(cfg.data.name)
        backbone = copy.deepcopy(encoder.backbone)  # every run starts from the pre-trained weights
        torch.manual_seed(cfg.run.seed)  # same head initialisation for every grid point and after a resume
        model = Classifier(backbone, nn.Linear(encoder.feature_dim, num_classes), frozen=False)
        engine, scores, targets = fit_then_predict(model, [{"params": list(model.parameters())}], fit_on, score_on,
                                                   optim, cfg.data, cfg.run, folder, self.ctx,
                                                   multilabel=spec.multilabel)
        # Every process scored its share; the metric needs all rows (their order does not matter).
        parts = gather_columns((scores, targets))
        scores, targets = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return score(spec.metric, scores.numpy().astype(np.float64), targets.numpy()), engine.scale

    def run(self, encoder: Encoder, cfg: TransferFinetuneConfig, workdir: Path) -> Result:
        if cfg.data.name == "all":
            raise UserError("data.name=all is expanded by `mec-eval run`/`suite`; call run_task_all for it")
        if not cfg.grid.lrs or not cfg.grid.wd_times_lr or min(cfg.grid.lrs) <= 0:
            raise UserError("grid.lrs must be non-empty and > 0, grid.wd_times_lr non-empty")
        cfg = dataclasses.replace(cfg, data=transfer_data(cfg.data))
        metric = dataset_spec(cfg.data.name).metric
        splits = finetune_splits(cfg.data)
        searched = []
        for lr in cfg.grid.lrs:
            for factor in cfg.grid.wd_times_lr:
                point = workdir / "grid" / f"lr{lr:g}_wd{factor:g}"
                done = point / "val.json"
                if not done.is_file():
                    optim = dataclasses.replace(cfg.optim, base_lr=lr, weight_decay=factor / lr, lr_scaling="none")
                    val, _ = self._train_and_score(encoder, cfg, optim, splits.train, splits.val,
                                                   len(splits.classes), point)
                    if is_main_process():  # rank 0 writes; the others wait for the record before reading it
                        atomic_write_text(done, json.dumps({"lr": lr, "weight_decay": factor / lr, **val}))
                        (point / "state.pt").unlink(missing_ok=True)  # a finished point's weights are not needed
                    barrier()
                searched.append(_read_point(done))
        best = max(range(len(searched)), key=lambda i: (searched[i][metric], -i))  # first maximum, as finetune.py
        chosen = searched[best]
        optim = dataclasses.replace(cfg.optim, base_lr=chosen["lr"], weight_decay=chosen["weight_decay"],
                                    lr_scaling="none")
        metrics, scale = self._train_and_score(encoder, cfg, optim, splits.trainval, splits.test,
                                               len(splits.classes), workdir / "final")
        return Result(dataset=cfg.data.name, metrics=metrics, primary=metric,
                      extra={"selected_lr": chosen["lr"], "selected_weight_decay": chosen["weight_decay"],
                             "val_metric": chosen[metric], "grid": searched, "validation": splits.val_source,
                             "split_source": getattr(splits.test, "split_source", None),
                             "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
                             "image_size": cfg.data.image_size}, scale=scale)


def _read_point(path: Path) -> dict:
    """The record of a finished grid point; an unreadable one is a UserError naming it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not {"lr", "weight_decay"} <= set(record):
            raise ValueError("not a grid-point record")
        return record
    except ValueError as err:
        raise UserError(f"{path} is corrupt ({err}); delete it to train that grid point again") from None
