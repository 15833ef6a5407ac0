"""The typed configs of every task adapter, in one module that needs no torch.

``mec-eval run`` builds and validates a task's config from its YAML and the overrides before
torch loads, so a bad key or value answers at once. Each adapter module imports its config from
here; :data:`TASK_CONFIGS` maps adapter names (``tasks/*.yaml`` ``adapter:``) to them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mec_eval.config import (
    EvalDataConfig,
    EvalOptimConfig,
    EvalRunConfig,
    Rule,
    checked,
)
from mec_eval.tasks.detection_configs import DetectionConfig
from mec_eval.tasks.tracking_configs import TRACKING_CONFIGS
from mec_eval.tasks.video_configs import SOTConfig, VOSConfig
from mec_eval.utils import UserError


@dataclass
class KNNParams:
    k: int = checked(20, ge=1)
    temperature: float = checked(0.07, gt=0)
    chunk: int = checked(1024, ge=1)  # test rows per similarity block (memory bound)


@dataclass
class KNNConfig:
    protocol: str                   # required: "paper", "fast", "paper-mec" (set in tasks/*.yaml)
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    knn: KNNParams = field(default_factory=KNNParams)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


HEAD_KINDS = ("bn", "linear")  # BatchNorm1d(affine=False) + linear (main_lincls.py), or the linear layer alone


@dataclass
class LinearGridParams:
    """A grid of probe heads trained in one pass over the frozen backbone (DINOv2 ``eval/linear.py``).

    Empty ``base_lrs``: one head at ``optim.base_lr`` (the protocol). Otherwise one head per
    (base lr, head kind), selected by top-1 on a seeded ``val_fraction`` of the training split held
    out from training; only the selected head is scored on the test split.
    """
    base_lrs: list = checked(factory=list, items=Rule(gt=0))
    heads: list = checked(factory=lambda: ["bn"], items=Rule(choices=HEAD_KINDS), min_items=1)
    val_fraction: float = checked(0.1, gt=0, lt=1)


@dataclass
class LinearConfig:
    protocol: str                   # required: "paper", "fast", "paper-mec" (set in tasks/*.yaml)
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    optim: EvalOptimConfig = field(default_factory=lambda: EvalOptimConfig(
        name="lars", epochs=100, batch_size=4096, base_lr=0.03, momentum=0.9, weight_decay=0.0))
    grid: LinearGridParams = field(default_factory=LinearGridParams)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


@dataclass
class LinearFastParams:
    wd_grid: list = checked(factory=lambda: [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1], items=Rule(ge=0), min_items=1)
    val_fraction: float = checked(0.2, gt=0, lt=1)
    max_iter: int = checked(500, ge=1)  # L-BFGS iterations per fit


@dataclass
class LinearFastConfig:
    protocol: str                   # required: "paper", "fast", "paper-mec" (set in tasks/*.yaml)
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    linear: LinearFastParams = field(default_factory=LinearFastParams)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


@dataclass
class SemiConfig:
    protocol: str                   # required: "paper", "fast", "paper-mec" (set in tasks/*.yaml)
    data: EvalDataConfig = field(default_factory=lambda: EvalDataConfig(percent=1.0))
    optim: EvalOptimConfig = field(default_factory=lambda: EvalOptimConfig(
        name="sgd", epochs=20, batch_size=256, base_lr=0.005, lr_scaling="none", head_lr=0.5,
        weight_decay=0.0, schedule="cosine-epoch"))
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


@dataclass
class TransferLinearParams:
    wd_min_exp: float = checked(-6.0, ge=-30, le=30)  # wd grid = logspace(wd_min_exp, wd_max_exp, wd_count)
    wd_max_exp: float = checked(5.0, ge=-30, le=30)   # (linear.py)
    wd_count: int = checked(45, ge=1)
    max_iter: int = checked(1000, ge=1)  # per fit; see the task YAML for why not sklearn's default 100
    n_jobs: int = checked(-1, ge=1, also=(-1,))  # grid points fitted in parallel (joblib; -1: all cores)

    def check_config(self, prefix: str) -> None:
        if self.wd_min_exp > self.wd_max_exp:
            raise UserError(f"config key '{prefix}wd_min_exp' ({self.wd_min_exp:g}) must be <= "
                            f"'{prefix}wd_max_exp' ({self.wd_max_exp:g})")

    def grid(self) -> list[float]:
        if self.wd_count < 1:
            raise UserError("transfer.wd_count must be >= 1")
        return [float(w) for w in np.logspace(self.wd_min_exp, self.wd_max_exp, self.wd_count)]


@dataclass
class TransferLinearConfig:
    protocol: str                   # required: "paper", "fast", "paper-mec" (set in tasks/*.yaml)
    data: EvalDataConfig = field(default_factory=lambda: EvalDataConfig(name="all", batch_size=64))
    transfer: TransferLinearParams = field(default_factory=TransferLinearParams)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


@dataclass
class FinetuneGrid:
    lrs: list = checked(factory=lambda: [0.1, 0.01, 0.001, 0.0001], items=Rule(gt=0), min_items=1)
    wd_times_lr: list = checked(factory=lambda: [0.0, 1e-6, 1e-5, 1e-4, 1e-3], items=Rule(ge=0), min_items=1)
                                    # weight decay = value / lr


@dataclass
class TransferFinetuneConfig:
    protocol: str                   # required: "paper", "fast", "paper-mec" (set in tasks/*.yaml)
    data: EvalDataConfig = field(default_factory=lambda: EvalDataConfig(name="all", batch_size=64))
    optim: EvalOptimConfig = field(default_factory=lambda: EvalOptimConfig(
        name="sgd", steps=5000, batch_size=64, lr_scaling="none", momentum=0.9, nesterov=True, schedule="cosine"))
    grid: FinetuneGrid = field(default_factory=FinetuneGrid)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


@dataclass
class DiagnosticsParams:
    n: int = checked(10000, ge=2)        # held-out images for the single-view quantities (seeded subset)
    n_views: int = checked(2048, ge=2)   # images (of the same subset) for the two-view quantities
    eps_d2: float = checked(0.06, gt=0)  # coding-length distortion eps_d^2 (MEC App. C)
    mu: float = checked(1.0, gt=0)       # total coding rate mu (M-MAE, ViT-B)
    alpha: float = checked(1.0, gt=0)    # Renyi order of the mutual information / joint entropy
    augment: str = checked("byol", choices=("byol", "cifar"))  # the pre-training recipe's two views
    crop_min_scale: float = checked(0.2, gt=0, le=1)


@dataclass
class DiagnosticsConfig:
    protocol: str                   # required: "paper", "fast", "paper-mec" (set in tasks/*.yaml)
    data: EvalDataConfig = field(default_factory=EvalDataConfig)
    diag: DiagnosticsParams = field(default_factory=DiagnosticsParams)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


TASK_CONFIGS: dict[str, type] = {
    "knn": KNNConfig, "linear": LinearConfig, "linear-fast": LinearFastConfig, "semi": SemiConfig,
    "transfer-linear": TransferLinearConfig, "transfer-finetune": TransferFinetuneConfig,
    "diagnostics": DiagnosticsConfig,
    "detection-voc": DetectionConfig, "detection-coco": DetectionConfig,
    **TRACKING_CONFIGS,
    "sot": SOTConfig, "vos": VOSConfig,
}
