"""Semi-supervised fine-tuning on 1 % / 10 % of the labels (MEC Table 2).

The whole network is fine-tuned on a labelled subset and scored top-1/top-5 on the full test
split after the last epoch. ImageNet uses the fixed SimCLR subsets (``1percent.txt``,
``10percent.txt``, passed as ``data.subset_file``; their official sha256 is recognised and
recorded); other datasets use a class-balanced subset drawn with a fixed seed (0), so every
checkpoint and trial sees the same labelled images, as with the official files.

Default protocol (``semi-1pct``/``semi-10pct``): Barlow Twins ``evaluate.py`` — SGD momentum 0.9,
backbone lr 0.005, head lr 0.5, no weight decay, cosine stepped per epoch, 20 epochs, batch 256,
RandomResizedCrop + flip. The MEC paper's stated variant (App. C) is ``semi-*-mec``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from mec_eval.checkpoints import Encoder
from mec_eval.config import EvalDataConfig
from mec_eval.data.subsets import (
    IMAGENET_SUBSETS,
    identify_subset_file,
    percent_subset_indices,
    read_subset_file,
    subset_indices,
)
from mec_eval.metrics.classification import ClassificationEvaluator
from mec_eval.tasks.base import Result
from mec_eval.tasks.configs import SemiConfig
from mec_eval.tasks.training import Classifier, TrainedTask, fit_then_predict, linear_head, supervised_sets
from mec_eval.utils import UserError

SUBSET_SEED = 0  # fixed, like the official split files: trials vary the training seed, not the labels


def official_name(percent: float) -> str | None:
    """"1percent" / "10percent" for the percentages the SimCLR files provide."""
    return {1.0: "1percent", 10.0: "10percent"}.get(float(percent))


def labelled_subset(train: Dataset, data: EvalDataConfig) -> tuple[list[int], str]:
    """Indices of the labelled images and a description of where they come from."""
    if data.subset_file:
        if not hasattr(train, "samples"):
            raise UserError(f"data.subset_file lists image files; dataset '{data.name}' is not read from image "
                            "files (use data.percent for it, or the imagenet/imagefolder datasets)")
        names = read_subset_file(data.subset_file)
        which = identify_subset_file(data.subset_file)
        expected = official_name(data.percent) if data.name == "imagenet" else None
        if which and expected and which != expected:
            raise UserError(f"data.subset_file is the official {which}.txt but this task uses {data.percent:g} % "
                            f"of the labels ({expected}.txt)")
        source = f"SimCLR {which}.txt (official sha256)" if which else f"user file {data.subset_file} (not an official split)"
        return subset_indices(train.samples, names, data.subset_file), source
    if data.name == "imagenet":
        files = ", ".join(f"{k}.txt ({n} lines, sha256 {h[:12]}...)" for k, (n, h) in IMAGENET_SUBSETS.items())
        raise UserError("semi-supervised ImageNet uses the fixed SimCLR splits: set data.subset_file=PATH to "
                        f"google-research/simclr imagenet_subsets/{official_name(data.percent) or '1percent'}.txt "
                        f"(known: {files})")
    indices = percent_subset_indices(train.targets, data.percent, SUBSET_SEED).tolist()
    return indices, f"class-balanced {data.percent:g} % of train, seed {SUBSET_SEED}"


class SemiTask(TrainedTask):
    name = "semi"
    Config = SemiConfig

    def run(self, encoder: Encoder, cfg: SemiConfig, workdir: Path) -> Result:
        train, test = supervised_sets(cfg.data)
        indices, source = labelled_subset(train, cfg.data)
        labelled = Subset(train, indices)
        torch.manual_seed(cfg.run.seed)  # the head's initialisation depends on run.seed only
        head = linear_head(encoder.feature_dim, len(train.classes))
        model = Classifier(encoder.backbone, head, frozen=False)
        # The backbone group takes the engine's scaled lr; the head its own absolute lr when set (evaluate.py).
        head_group = {"params": list(head.parameters())}
        if cfg.optim.head_lr is not None:
            head_group["lr"] = cfg.optim.head_lr
        groups = [{"params": list(encoder.backbone.parameters())}, head_group]
        engine, scores, targets = fit_then_predict(model, groups, labelled, test, cfg.optim, cfg.data, cfg.run,
                                                   workdir, self.ctx)
        evaluator = ClassificationEvaluator()
        evaluator.process(scores, targets)
        return Result(dataset=cfg.data.name, metrics=evaluator.evaluate(), primary="top1",
                      extra={"labelled_images": len(labelled), "subset": source, "n_test": len(test),
                             "backbone_lr": engine.lr, "head_lr": head_group.get("lr", engine.lr),
                             "iterations": engine.plan.total_iters}, scale=engine.scale)
