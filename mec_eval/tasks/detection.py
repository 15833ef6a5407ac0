"""VOC 07 / VOC 07+12 (Faster R-CNN) and COCO (Mask R-CNN) R50-C4 fine-tuning: the MoCo detection protocol.

The checkpoint's ResNet becomes :class:`~mec_eval.models.rcnn_c4.RCNNC4` (stem + res2..4 backbone,
res5 ROI head), trained end to end (FREEZE_AT 0) on the one training engine: SGD momentum 0.9,
weight decay 1e-4 (none on norm parameters, as detectron2's WEIGHT_DECAY_NORM 0.0), base lr 0.02
at 16 images scaled linearly, linear warm-up from x0.001 over 100 iterations, x0.1 at each step;
iteration-based and resumable from ``workdir/state.pt``. Training images get a shortest side drawn
from ``data.min_size_train`` (longest at most ``data.max_size``) and a horizontal flip, as
detectron2's ``ResizeShortestEdge(choice)`` + ``RandomFlip``; test images are resized to
``data.min_size_test`` and the detections mapped back to the original pixels.

``lr_search.enabled`` runs the protocol at each of ``lr_search.base_lrs`` training on a seeded
part of the training set and scoring on the rest (MEC App. C's "searched learning rate"), picks
the best, then trains this trial on the whole training set at that lr. The test split is never
read for the choice.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from torch.utils.data import DataLoader, Dataset, Subset

from mec_eval.config import TrainingOptimConfig, config_hash, to_dict
from mec_eval.data.detection import LOADERS
from mec_eval.dist import (
    autocast,
    is_main_process,
    resolve_device,
    resolve_precision,
)
from mec_eval.log import JsonLogger, progress
from mec_eval.models.rcnn_c4 import RCNNC4, RpnSettings, norm_parameters
from mec_eval.models.rcnn_heads import RoiSettings
from mec_eval.runs import folder_lock
from mec_eval.tasks.base import Result
from mec_eval.tasks.detection_configs import DetectionConfig
from mec_eval.tasks.training import TrainedTask
from mec_eval.training.distributed import evaluation_share
from mec_eval.training.engine import LoopOptions, TrainingEngine, make_plan
from mec_eval.training.state import StateFile
from mec_eval.utils import UserError, atomic_write_text


def resized_shape(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2 ``ResizeShortestEdge.get_output_shape``: shortest side ``short``, longest <= ``max_size``."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > max_size:
        factor = max_size / max(new_h, new_w)
        new_h, new_w = new_h * factor, new_w * factor
    return int(new_h + 0.5), int(new_w + 0.5)


def _resize(image: torch.Tensor, target: dict, size: tuple[int, int]) -> tuple[torch.Tensor, dict]:
    """Image (bilinear, antialiased like PIL) and its boxes / masks (nearest) at ``size``."""
    h, w = image.shape[-2:]
    out = dict(target)
    out["boxes"] = target["boxes"] * torch.tensor([size[1] / w, size[0] / h, size[1] / w, size[0] / h])
    if "masks" in target:
        out["masks"] = TF.resize(target["masks"], list(size), interpolation=TF.InterpolationMode.NEAREST)
    return TF.resize(image, list(size), antialias=True), out


@dataclass
class TrainAugment:
    """Random shortest side from ``sizes`` (``ResizeShortestEdge`` "choice"), cap ``max_size``, flip p=0.5.

    Crowd objects are dropped (detectron2's mapper removes ``iscrowd`` annotations for training);
    VOC difficult objects stay (detectron2 ``load_voc_instances`` keeps them).
    """
    sizes: tuple
    max_size: int
    flip: bool
    masks: bool

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        keep = ~target["iscrowd"] if "iscrowd" in target else torch.ones(len(target["boxes"]), dtype=torch.bool)
        target = {"boxes": target["boxes"][keep], "labels": target["labels"][keep],
                  **({"masks": target["masks"][keep]} if self.masks else {})}
        short = self.sizes[int(torch.randint(len(self.sizes), ()))]  # the item's seeded RNG (SeededItems)
        image, target = _resize(image, target, resized_shape(*image.shape[-2:], short, self.max_size))
        if self.flip and bool(torch.rand(()) < 0.5):
            width = image.shape[-1]
            image = image.flip(-1)
            target["boxes"] = torch.stack([width - target["boxes"][:, 2], target["boxes"][:, 1],
                                           width - target["boxes"][:, 0], target["boxes"][:, 3]], dim=1)
            if "masks" in target:
                target["masks"] = target["masks"].flip(-1)
        return image, target


@dataclass
class TestResize:
    """Resize to the test size; the target stays in the original pixels, with ``orig_size`` added."""
    short: int
    max_size: int

    def __call__(self, image: torch.Tensor, target: dict) -> tuple[torch.Tensor, dict]:
        h, w = image.shape[-2:]
        target = {**{k: v for k, v in target.items() if k != "masks"}, "orig_size": (int(h), int(w))}
        return TF.resize(image, list(resized_shape(h, w, self.short, self.max_size)), antialias=True), target


def load_split(cfg: DetectionConfig, which: str, transform) -> Dataset:
    """The training (``which="train"``) or reported (``"test"``) split of ``cfg.data`` with ``transform``."""
    data = cfg.data
    split = data.train_split if which == "train" else data.test_split
    options: dict = {}
    if data.name == "coco2017":
        options = {"masks": cfg.model.mask_on}
    elif data.name == "shapes-detection":
        if cfg.model.mask_on and data.layout == "voc":
            raise UserError("model.mask_on=true needs masks: shapes-detection in the voc layout has none "
                            "(set data.layout=coco)")
        options = {"layout": data.layout, "masks": cfg.model.mask_on, "n_train": data.shapes_train,
                   "n_test": data.shapes_test, "image_size": data.shapes_size, "seed": data.shapes_seed}
    elif cfg.model.mask_on:
        raise UserError("model.mask_on=true needs instance masks; pascal-voc has none (use coco2017)")
    return LOADERS[data.name](data.root, split, transform, **options)


def build_detector(encoder, num_classes: int, cfg: DetectionConfig) -> RCNNC4:
    """The detector on ``encoder``'s ResNet; a backbone without ResNet stages is a UserError.

    The new heads (RPN, box predictor, mask head) are initialised under ``torch.manual_seed(run.seed)`` in a
    forked RNG: the same config gives the same detector in every process, each trial its own, and the
    caller's RNG does not move."""
    m = cfg.model
    rpn = RpnSettings(tuple(m.anchor_sizes), tuple(m.aspect_ratios), batch_size_per_image=m.rpn_batch_per_image,
                      pre_nms_topk_train=m.rpn_pre_nms_train, pre_nms_topk_test=m.rpn_pre_nms_test,
                      post_nms_topk_train=m.rpn_post_nms_train, post_nms_topk_test=m.rpn_post_nms_test)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.run.seed)
            return RCNNC4(encoder.backbone, num_classes, m.mask_on, rpn,
                          RoiSettings(batch_size_per_image=m.roi_batch_per_image), m.mask_dim)
    except ValueError as err:
        raise UserError(f"the detection tasks build the R50-C4 detector on a ResNet (layer1..layer4, res4 at stride "
                        f"16); checkpoint {encoder.name} is a {encoder.arch}: {err}") from None


@dataclass
class _EngineOptim(TrainingOptimConfig):
    """What the engine reads, with the detectron2 warm-up (start factor, length in iterations)."""
    warmup_factor: float = 0.0
    warmup_iterations: int = 0


def _engine_optim(cfg: DetectionConfig, base_lr: float, effective_batch: int) -> _EngineOptim:
    o = cfg.optim
    return _EngineOptim(name="sgd", epochs=1, batch_size=o.batch_size, base_lr=base_lr * effective_batch / o.reference_batch,
                        lr_scaling="none", momentum=o.momentum, weight_decay=o.weight_decay, schedule="multistep",
                        milestones=list(o.steps), gamma=o.gamma, warmup_factor=o.warmup_factor,
                        warmup_iterations=o.warmup_iters)


def _to_device(target: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in target.items() if isinstance(v, torch.Tensor)}


def train_detector(model: RCNNC4, train: Dataset, cfg: DetectionConfig, base_lr: float, workdir: Path,
                   quiet: bool) -> TrainingEngine:
    """Train ``model`` for ``optim.iterations`` (resumable from ``workdir/state.pt``); returns the engine."""
    device = resolve_device(cfg.run.device)
    amp = resolve_precision(cfg.run.precision, device)
    workdir.mkdir(parents=True, exist_ok=True)
    logger = JsonLogger(workdir / "log.jsonl" if is_main_process() else None, quiet=quiet)  # stderr: the engine's BN note
    plan = make_plan(len(train), cfg.optim.batch_size, 1, cfg.optim.iterations)
    optim = _engine_optim(cfg, base_lr, plan.effective_batch)
    norms, others = norm_parameters(model)
    groups = [{"params": others}, {"params": norms, "weight_decay": cfg.optim.weight_decay_norm}]

    def step(net, batch) -> dict:
        images = [image for image, _ in batch]
        targets = [_to_device(target, device) for _, target in batch]
        with autocast(device, amp):
            return {k: v.float() for k, v in net(images, targets).items()}

    options = LoopOptions(seed=cfg.run.seed, device=device, amp_dtype=amp, channels_last=device.type == "cuda",
                          save_every=cfg.optim.save_every, log_every=cfg.optim.log_every,
                          sync_bn=cfg.model.norm == "syncbn", num_workers=cfg.data.num_workers, quiet=quiet,
                          desc="train", non_finite_hint=f"lower optim.base_lr (now {base_lr}) or use run.precision=fp32",
                          collate_fn=list)  # images differ in size: a list of (image, target), not a stack
    store = StateFile(workdir / "state.pt", model.state_dict, model.load_state_dict)
    engine = TrainingEngine(model, groups, step, train, optim, plan, options, store, logger)
    engine.fit()
    return engine


@torch.no_grad()
def detect(model: RCNNC4, dataset: Dataset, cfg: DetectionConfig, quiet: bool):
    """(targets, outputs) of this process's share of ``dataset`` (outputs on CPU, in original pixels)."""
    device = resolve_device(cfg.run.device)
    amp = resolve_precision(cfg.run.precision, device)
    model = model.to(device).eval()
    loader = DataLoader(evaluation_share(dataset), batch_size=cfg.run.eval_batch, collate_fn=list,
                        num_workers=cfg.data.num_workers)
    targets, outputs = [], []
    for batch in progress(loader, total=len(loader), desc="detect", quiet=quiet):
        with autocast(device, amp):
            out = model([image.to(device) for image, _ in batch], output_sizes=[t["orig_size"] for _, t in batch])
        targets += [t for _, t in batch]
        outputs += [{k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in o.items()} for o in out]
    return targets, outputs


def evaluate(dataset: Dataset, targets: list[dict], outputs: list[dict], cfg: DetectionConfig) -> tuple[dict, dict]:
    """(metrics, per-class AP) with the VOC (07 11-point) or COCO evaluator, as the split's layout asks."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    ids = [t["image_id"] for t in targets]
    if hasattr(base, "coco"):
        from mec_eval.metrics.coco import COCOEvaluator

        evaluator = COCOEvaluator(base.coco, base.label_to_category_id,
                                  ("bbox", "segm") if cfg.model.mask_on else ("bbox",))
        evaluator.reset()
        evaluator.process(ids, outputs)
        return evaluator.evaluate(), evaluator.per_class()
    from mec_eval.metrics.voc import VOCEvaluator

    evaluator = VOCEvaluator(base.classes, use_07_metric=True)  # VOC07 test: the devkit's 11-point AP
    evaluator.reset()
    evaluator.process(ids, targets, outputs)
    return evaluator.evaluate(), evaluator.per_class()


def held_out_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training part, held-out part) of ``n`` training images: a seeded permutation, the first ``fraction`` held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    held = max(1, min(n - 2, round(n * fraction)))
    return sorted(order[held:]), sorted(order[:held])


class DetectionTask(TrainedTask):
    """voc07 / voc0712 (Faster R-CNN) and coco (Mask R-CNN): fine-tune the C4 detector, score the test split."""
    name = "detection"
    Config = DetectionConfig
    needs_resnet = True  # R50-C4: res2..4 trunk, res5 box head; the runner refuses a ViT before any data is built

    @classmethod
    def expand(cls, cfg: DetectionConfig) -> list[list[str]]:
        """One run per trial (seeds ``run.seed`` .. ``run.seed + trials - 1``; MoCo reports means of 5)."""
        if cfg.run.trials == 1:
            return [[]]
        return [[f"run.seed={cfg.run.seed + i}", "run.trials=1"] for i in range(cfg.run.trials)]

    def _sets(self, cfg: DetectionConfig, which: str) -> tuple[Dataset, Dataset]:
        """``which`` split read twice: with the training augmentation and with the test resize."""
        d = cfg.data
        augment = TrainAugment(tuple(d.min_size_train), d.max_size, d.flip, cfg.model.mask_on)
        return load_split(cfg, which, augment), load_split(cfg, which, TestResize(d.min_size_test, d.max_size))

    def _fit_and_score(self, encoder, cfg, train: Dataset, scored: Dataset, base_lr: float, workdir: Path):
        model = build_detector(encoder, len(getattr(scored, "dataset", scored).classes), cfg)
        engine = train_detector(model, train, cfg, base_lr, workdir, self.quiet)
        targets, outputs = detect(model, scored, cfg, self.quiet)
        metrics, per_class = evaluate(scored, targets, outputs, cfg)
        return engine, metrics, per_class

    def select_lr(self, encoder, cfg: DetectionConfig) -> tuple[float, dict]:
        """Run each grid lr on the training part, score on the held-out part of the training set; the best lr."""
        s = cfg.lr_search
        ident = {"config": {k: v for k, v in to_dict(cfg).items() if k not in ("run", "lr_search")},
                 "lr_search": to_dict(s), "weights": encoder.sha256 or encoder.name,
                 "precision": cfg.run.precision}
        # shared by every trial of this config (they differ in run.seed only), next to the feature cache
        root = Path(self.cache_dir).parent / "lr-search" / config_hash(ident)
        done = root / "selection.json"
        with folder_lock(root.parent / f"{root.name}.lock"):
            if done.is_file():
                chosen = json.loads(done.read_text())
                return float(chosen["base_lr"]), chosen
            train_aug, train_test = self._sets(cfg, "train")
            fit_part, held = held_out_split(len(train_aug), s.held_out_fraction, s.seed)
            search_cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=s.seed))
            scores = {}
            for lr in s.base_lrs:
                _engine, metrics, _ = self._fit_and_score(encoder, search_cfg, Subset(train_aug, fit_part),
                                                          Subset(train_test, held), lr, root / f"lr-{lr:g}")
                scores[f"{lr:g}"] = metrics
            primary = "bbox_AP" if cfg.model.mask_on else "AP"
            best = max(s.base_lrs, key=lambda lr: scores[f"{lr:g}"][primary])
            chosen = {"base_lr": best, "selected_by": f"{primary} on {len(held)} held-out training images "
                      f"(seed {s.seed})", "scores": scores}
            if is_main_process():
                atomic_write_text(done, json.dumps(chosen, indent=1, sort_keys=True) + "\n")
            return float(best), chosen

    def run(self, encoder, cfg: DetectionConfig, workdir: Path) -> Result:
        if cfg.backend == "detectron2":  # detectron2's own trainer and evaluators (imported only then)
            from mec_eval.tasks import detectron2_backend

            return detectron2_backend.run(self, encoder, cfg, workdir)
        base_lr, search = (self.select_lr(encoder, cfg) if cfg.lr_search.enabled else (cfg.optim.base_lr, None))
        train, _ = self._sets(cfg, "train")
        test = load_split(cfg, "test", TestResize(cfg.data.min_size_test, cfg.data.max_size))
        engine, metrics, per_class = self._fit_and_score(encoder, cfg, train, test, base_lr, workdir)
        if is_main_process():
            self.ctx.logger.info(f"base lr {base_lr:g} at batch {cfg.optim.reference_batch}, effective batch "
                                 f"{engine.plan.effective_batch}, lr {engine.lr:.4g}")
        # COCOeval's -1 (an area range without ground truth) arrives as NaN: left out, and named
        undefined = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        metrics = {k: float(v) for k, v in metrics.items() if k not in undefined}
        extra = {"per_class_AP": per_class, "iterations": engine.plan.total_iters,
                 **({"undefined_metrics": undefined} if undefined else {})}
        if search is not None:
            extra["lr_search"] = search
        scale = {**engine.scale, "base_lr": base_lr, "reference_batch": cfg.optim.reference_batch}
        return Result(dataset=cfg.data.name, metrics=metrics, primary="bbox_AP" if cfg.model.mask_on else "AP",
                      extra=extra, scale=scale)
