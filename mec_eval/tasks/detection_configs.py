"""Typed configs of the detection tasks (voc07, voc0712, coco); torch-free, like :mod:`mec_eval.tasks.configs`.

Defaults are the MoCo detection protocol (facebookresearch/moco ``detection/configs``) on detectron2's
defaults (``detectron2/config/defaults.py``); the task YAMLs cite each value.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mec_eval.config import Rule, checked, device_field, precision_field, seed_field
from mec_eval.utils import UserError

DETECTION_DATASETS = ("pascal-voc", "coco2017", "shapes-detection")


def _voc_sizes() -> list:
    return list(range(480, 801, 32))  # pascal_voc_R_50_C4_24k_moco.yaml MIN_SIZE_TRAIN (480..800 step 32)


@dataclass
class DetectionDataConfig:
    name: str = checked("pascal-voc", choices=DETECTION_DATASETS)
    root: str | None = None         # shapes-detection: where the set is generated (default ~/.cache/mec-eval)
    train_split: str = checked("trainval0712", choices=("trainval07", "trainval0712", "train"))
                                    # pascal-voc: trainval07 / trainval0712 (detectron2 voc_20XX_trainval);
                                    # coco2017 / shapes-detection: train
    test_split: str = checked("test07", choices=("test07", "val", "test"))  # pascal-voc test07, coco2017 val,
                                    # shapes-detection test (the reported split; never used for selection)
    min_size_train: list = checked(factory=_voc_sizes, items=Rule(ge=8, le=4096), min_items=1)
    max_size: int = checked(1333, ge=8, le=8192)   # INPUT.MAX_SIZE_TRAIN / _TEST
    min_size_test: int = checked(800, ge=8, le=4096)
    flip: bool = True                               # RandomFlip (horizontal, p 0.5)
    num_workers: int = checked(0, ge=0, le=512)
    layout: str = checked("voc", choices=("voc", "coco"))  # shapes-detection only: the on-disk layout read
    shapes_train: int = checked(256, ge=2)          # shapes-detection only: images written per split,
    shapes_test: int = checked(64, ge=1)            # their size and seed
    shapes_size: int = checked(192, ge=32, le=1024)
    shapes_seed: int = seed_field()

    def check_config(self, prefix: str) -> None:
        fits = {"pascal-voc": (("trainval07", "trainval0712"), ("test07",)),
                "coco2017": (("train",), ("val",)), "shapes-detection": (("train",), ("test",))}[self.name]
        if self.train_split not in fits[0] or self.test_split not in fits[1]:
            raise UserError(f"config keys '{prefix}train_split' / '{prefix}test_split' of {self.name} must be "
                            f"{' or '.join(fits[0])} / {fits[1][0]}, got {self.train_split} / {self.test_split}")


@dataclass
class DetectionModelConfig:
    norm: str = checked("syncbn", choices=("bn", "syncbn"))  # Base-RCNN-C4-BN: RESNETS.NORM SyncBN
                                    # (SyncBN only under several GPUs; one process / CPU: BN)
    mask_on: bool = False           # Mask R-CNN (coco) or Faster R-CNN (VOC)
    anchor_sizes: list = checked(factory=lambda: [32, 64, 128, 256, 512], items=Rule(gt=0), min_items=1)
    aspect_ratios: list = checked(factory=lambda: [0.5, 1.0, 2.0], items=Rule(gt=0), min_items=1)
    rpn_batch_per_image: int = checked(256, ge=2)
    rpn_pre_nms_train: int = checked(12000, ge=1)
    rpn_pre_nms_test: int = checked(6000, ge=1)
    rpn_post_nms_train: int = checked(2000, ge=1)
    rpn_post_nms_test: int = checked(1000, ge=1)
    roi_batch_per_image: int = checked(512, ge=2)
    mask_dim: int = checked(256, ge=1)


@dataclass
class DetectionOptimConfig:
    batch_size: int = checked(16, ge=2)            # SOLVER.IMS_PER_BATCH, over all processes
    base_lr: float = checked(0.02, gt=0)           # SOLVER.BASE_LR at reference_batch
    reference_batch: int = checked(16, ge=1)       # lr = base_lr * batch_size / reference_batch (linear scaling)
    momentum: float = checked(0.9, ge=0, lt=1)
    weight_decay: float = checked(1e-4, ge=0)
    weight_decay_norm: float = checked(0.0, ge=0)  # SOLVER.WEIGHT_DECAY_NORM; biases follow weight_decay
    iterations: int = checked(24000, ge=1)         # SOLVER.MAX_ITER
    steps: list = checked(factory=lambda: [18000, 22000], items=Rule(ge=1))  # SOLVER.STEPS
    gamma: float = checked(0.1, gt=0, le=1)
    warmup_iters: int = checked(100, ge=0)
    warmup_factor: float = checked(0.001, ge=0, le=1)
    save_every: int = checked(1000, ge=0)          # iterations between state.pt saves (not protocol)
    log_every: int = checked(20, ge=0)

    def check_config(self, prefix: str) -> None:
        if list(self.steps) != sorted(set(self.steps)):
            raise UserError(f"config key '{prefix}steps' must be increasing iterations, got {self.steps!r}")
        if self.steps and self.steps[-1] >= self.iterations:
            raise UserError(f"config key '{prefix}steps' ({self.steps!r}) must end before '{prefix}iterations' "
                            f"({self.iterations})")


@dataclass
class DetectionRunConfig:
    seed: int = seed_field()
    device: str = device_field()
    precision: str = precision_field()  # auto: fp16/bf16 AMP on CUDA (detectron2 AMP), bf16 on CPU
    trials: int = checked(1, ge=1, le=100)  # MoCo: means of 5 trials (expand runs seeds seed..seed+trials-1)
    eval_batch: int = checked(1, ge=1)


@dataclass
class LrSearchConfig:
    enabled: bool = False           # MEC App. C "a searched learning rate"; off by default
    base_lrs: list = checked(factory=lambda: [0.01, 0.02, 0.04], items=Rule(gt=0), min_items=1)
    held_out_fraction: float = checked(0.2, gt=0, lt=1)  # of the training set, never the reported split
    seed: int = seed_field()


@dataclass
class DetectionConfig:
    protocol: str                   # required: "paper" or "cpu-small" (set in tasks/*.yaml)
    data: DetectionDataConfig = field(default_factory=DetectionDataConfig)
    model: DetectionModelConfig = field(default_factory=DetectionModelConfig)
    optim: DetectionOptimConfig = field(default_factory=DetectionOptimConfig)
    run: DetectionRunConfig = field(default_factory=DetectionRunConfig)
    lr_search: LrSearchConfig = field(default_factory=LrSearchConfig)
    backend: str = checked("torchvision", choices=("torchvision", "detectron2"))  # detectron2: tasks.detectron2_backend
