"""``backend=detectron2``: the voc07 / voc0712 / coco protocol trained and scored by detectron2 itself.

The configuration is the one of facebookresearch/moco ``detection/configs`` (commit 7397dfe):
``Base-RCNN-C4-BN.yaml`` (GeneralizedRCNN R50-C4, ``RESNETS.NORM`` SyncBN, ``FREEZE_AT`` 0, ROI heads
``Res5ROIHeadsExtraNorm``, ``TEST.PRECISE_BN`` on, RPN ``PRE/POST_NMS_TOPK_TEST`` 6000/1000) +
``pascal_voc_R_50_C4_24k_moco.yaml`` / ``coco_R_50_C4_1x_moco.yaml`` (SSL ``PIXEL_MEAN`` / ``PIXEL_STD``,
``INPUT.FORMAT`` RGB, ``RESNETS.STRIDE_IN_1X1`` False), with every number the task YAML sets
(sizes, anchors, samples, schedule) taken from the same :class:`DetectionConfig` the torchvision
engine reads, so both backends run one protocol. The checkpoint is exported with
:func:`~mec_eval.checkpoints.export.export_detectron2` (``mec-eval convert --to detectron2``).
Training is detectron2's ``DefaultTrainer``, resumable through its checkpointer
(``workdir/detectron2/last_checkpoint``); scoring is its ``PascalVOCDetectionEvaluator`` /
``COCOEvaluator``, whose numbers go into result.json under the engine's names.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from mec_eval.checkpoints.export import export_detectron2
from mec_eval.data.detection import read_class_list, shapes_root, voc_root
from mec_eval.data.folders import root_dir
from mec_eval.data.shapes_detection import write_shapes_detection
from mec_eval.data.transfer import VOC_CLASSES
from mec_eval.dist import resolve_device, world_size
from mec_eval.tasks.base import Result
from mec_eval.tasks.detection import load_split
from mec_eval.tasks.detection_configs import DetectionConfig
from mec_eval.utils import UserError, atomic_write_text

INSTALL_HINT = ("backend=detectron2 needs detectron2, which is not installed: after torch, run FORCE_CUDA=0 pip "
                "install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' "
                "(or use backend=torchvision, the default, which needs nothing)")
SSL_PIXEL_MEAN = [123.675, 116.28, 103.53]  # moco pascal_voc_R_50_C4_24k_moco.yaml MODEL.PIXEL_MEAN (RGB)
SSL_PIXEL_STD = [58.395, 57.12, 57.375]     # ... MODEL.PIXEL_STD
EXTRA_NORM_HEADS = "Res5ROIHeadsExtraNorm"
_COCO_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def require_detectron2():
    """The ``detectron2`` module, or the one-line UserError saying how to install it."""
    try:
        return importlib.import_module("detectron2")
    except ImportError:
        raise UserError(INSTALL_HINT) from None


def require_resnet50(encoder) -> None:
    """One-line UserError unless ``encoder.backbone`` has exactly torchvision ResNet-50's keys and shapes.

    ``build_d2_config`` always builds detectron2's R50 (``RESNETS.DEPTH`` 50, width 64, bottleneck
    res5), and detectron2's checkpointer only *warns* about a weight of another shape and skips it (fvcore
    ``Checkpointer._load_model`` pops ``incorrect_shapes``, then ``load_state_dict(strict=False)``): a
    resnet_tiny checkpoint would train a randomly initialised R50 under its name. Refused here instead.
    """
    from torchvision.models import resnet50

    with torch.device("meta"):  # shapes only: no memory, no initialisation
        expected = {k: tuple(v.shape) for k, v in resnet50().state_dict().items() if not k.startswith("fc.")}
    got = {k: tuple(v.shape) for k, v in encoder.backbone.state_dict().items() if not k.startswith("fc.")}
    wrong = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
    if got.keys() != expected.keys() or wrong:
        missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
        what = "; ".join(f"{label} {len(keys)} ({', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''})"
                         for label, keys in (("missing", missing), ("unexpected", extra), ("other shape", wrong))
                         if keys)
        raise UserError(f"backend=detectron2 builds detectron2's R50-C4, which needs a torchvision ResNet-50; "
                        f"{encoder.name} is a {encoder.arch} ({what}): use backend=torchvision for it")


def register_extra_norm_heads() -> None:
    """Register MoCo's ``Res5ROIHeadsExtraNorm`` (res5 + one more ``RESNETS.NORM`` layer) in detectron2, once.

    facebookresearch/moco ``detection/train_net.py``: the res5 head of an SSL backbone gets a norm
    after its last block, since the pre-trained res5 output was never normalised for the predictor.
    """
    require_detectron2()
    from detectron2.layers import get_norm
    from detectron2.modeling import ROI_HEADS_REGISTRY
    from detectron2.modeling.roi_heads import Res5ROIHeads

    if EXTRA_NORM_HEADS in ROI_HEADS_REGISTRY:
        return

    class Res5ROIHeadsExtraNorm(Res5ROIHeads):
        """Res5ROIHeads whose res5 ends with ``get_norm(RESNETS.NORM)`` (named ``res5.norm``)."""

        @classmethod
        def _build_res5_block(cls, cfg):
            seq, out_channels = super()._build_res5_block(cfg)
            seq.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
            return seq, out_channels

    ROI_HEADS_REGISTRY.register(Res5ROIHeadsExtraNorm)


def build_d2_config(cfg: DetectionConfig, num_classes: int, weights: str, output_dir: str,
                    train: tuple[str, ...], test: tuple[str, ...], processes: int = 1):
    """detectron2's ``CfgNode`` equal to MoCo's R50-C4 config with this task's numbers (``get_cfg()`` + fields)."""
    require_detectron2()
    from detectron2.config import get_cfg

    m, o, d = cfg.model, cfg.optim, cfg.data
    c = get_cfg()  # detectron2/config/defaults.py: every value not set here (IoUs, box weights, score 0.05 ...)
    c.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    c.MODEL.WEIGHTS = weights
    c.MODEL.MASK_ON = m.mask_on
    c.MODEL.PIXEL_MEAN, c.MODEL.PIXEL_STD = list(SSL_PIXEL_MEAN), list(SSL_PIXEL_STD)
    c.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    c.MODEL.BACKBONE.FREEZE_AT = 0                              # Base-RCNN-C4-BN.yaml
    c.MODEL.RESNETS.DEPTH = 50
    c.MODEL.RESNETS.OUT_FEATURES = ["res4"]                     # C4
    # Base-RCNN-C4-BN.yaml NORM "SyncBN"; a single process has nothing to sync (and CPU has no SyncBN)
    c.MODEL.RESNETS.NORM = "SyncBN" if m.norm == "syncbn" and processes > 1 else "BN"
    c.MODEL.RESNETS.STRIDE_IN_1X1 = False                       # *_moco.yaml: torchvision's stride in the 3x3
    c.MODEL.ANCHOR_GENERATOR.SIZES = [list(m.anchor_sizes)]
    c.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [list(m.aspect_ratios)]
    c.MODEL.RPN.BATCH_SIZE_PER_IMAGE = m.rpn_batch_per_image
    c.MODEL.RPN.PRE_NMS_TOPK_TRAIN, c.MODEL.RPN.PRE_NMS_TOPK_TEST = m.rpn_pre_nms_train, m.rpn_pre_nms_test
    c.MODEL.RPN.POST_NMS_TOPK_TRAIN, c.MODEL.RPN.POST_NMS_TOPK_TEST = m.rpn_post_nms_train, m.rpn_post_nms_test
    c.MODEL.ROI_HEADS.NAME = EXTRA_NORM_HEADS                  # Base-RCNN-C4-BN.yaml
    c.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    c.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = m.roi_batch_per_image
    c.MODEL.ROI_MASK_HEAD.CONV_DIM = m.mask_dim
    c.MODEL.DEVICE = resolve_device(cfg.run.device).type
    c.INPUT.FORMAT = "RGB"                                      # *_moco.yaml
    c.INPUT.MIN_SIZE_TRAIN = tuple(d.min_size_train)
    c.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
    c.INPUT.MAX_SIZE_TRAIN = c.INPUT.MAX_SIZE_TEST = d.max_size
    c.INPUT.MIN_SIZE_TEST = d.min_size_test
    c.INPUT.RANDOM_FLIP = "horizontal" if d.flip else "none"
    c.INPUT.MASK_FORMAT = "bitmask" if d.name == "shapes-detection" else "polygon"  # the synthetic set has RLE
    c.DATASETS.TRAIN, c.DATASETS.TEST = tuple(train), tuple(test)
    c.DATALOADER.NUM_WORKERS = d.num_workers
    c.SOLVER.IMS_PER_BATCH = o.batch_size
    c.SOLVER.BASE_LR = o.base_lr * o.batch_size / o.reference_batch  # linear scaling, as the engine
    c.SOLVER.MOMENTUM, c.SOLVER.WEIGHT_DECAY, c.SOLVER.WEIGHT_DECAY_NORM = o.momentum, o.weight_decay, \
        o.weight_decay_norm
    c.SOLVER.MAX_ITER, c.SOLVER.STEPS, c.SOLVER.GAMMA = o.iterations, tuple(o.steps), o.gamma
    c.SOLVER.WARMUP_ITERS, c.SOLVER.WARMUP_FACTOR, c.SOLVER.WARMUP_METHOD = o.warmup_iters, o.warmup_factor, "linear"
    c.SOLVER.CHECKPOINT_PERIOD = o.save_every or o.iterations
    c.SOLVER.AMP.ENABLED = c.MODEL.DEVICE == "cuda" and cfg.run.precision != "fp32"
    c.TEST.EVAL_PERIOD = 0                                      # scored once, after training
    # Base-RCNN-C4-BN.yaml TEST.PRECISE_BN on (200 iterations); the CPU variants skip it, like the engine
    c.TEST.PRECISE_BN.ENABLED = cfg.protocol == "paper"
    c.SEED = cfg.run.seed
    c.OUTPUT_DIR = output_dir
    c.freeze()
    return c


def _register(name: str, loader, metadata: dict) -> str:
    """Register ``name`` in detectron2's catalogs, replacing an earlier registration in this process."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)
    return name


def _voc_sets(cfg: DetectionConfig, which: str) -> tuple[Path, tuple[str, ...], list[tuple[str, str]]]:
    """(VOCdevkit folder, class names, [(year, image set)]) of the training or reported split."""
    from mec_eval.data.detection import SHAPES_SPLITS, VOC_SPLITS

    d = cfg.data
    if d.name == "pascal-voc":
        return voc_root(d.root), VOC_CLASSES, list(VOC_SPLITS[d.train_split if which == "train" else d.test_split])
    devkit = write_shapes_detection(shapes_root(d.root), "voc", n_train=d.shapes_train, n_test=d.shapes_test,
                                    image_size=d.shapes_size, seed=d.shapes_seed)
    return devkit, read_class_list(devkit / "VOC2007"), list(SHAPES_SPLITS["voc"][which])


def is_coco(cfg: DetectionConfig) -> bool:
    """Whether the data is in the COCO layout (scored by COCOEvaluator) rather than VOC's."""
    return cfg.data.name == "coco2017" or (cfg.data.name == "shapes-detection" and cfg.data.layout == "coco")


def register_datasets(cfg: DetectionConfig, tag: str) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    """(train names, test names, number of classes) registered for detectron2 (``register_pascal_voc`` /
    ``register_coco_instances``), read from the same folders as the engine's loaders."""
    from detectron2.data.datasets import load_coco_json
    from detectron2.data.datasets.pascal_voc import load_voc_instances

    d = cfg.data
    if is_coco(cfg):
        base = (write_shapes_detection(shapes_root(d.root), "coco", n_train=d.shapes_train, n_test=d.shapes_test,
                                       image_size=d.shapes_size, seed=d.shapes_seed)
                if d.name == "shapes-detection" else root_dir("coco2017", d.root, _coco_fail))
        names = []
        for split in ("train", "val"):
            json_file, image_root = base / "annotations" / f"instances_{split}2017.json", base / f"{split}2017"
            name = f"mec_{tag}_coco_{split}"
            # register_coco_instances, with a name that is this run's
            names.append(_register(name, lambda j=str(json_file), r=str(image_root), n=name: load_coco_json(j, r, n),
                                   {"json_file": str(json_file), "image_root": str(image_root),
                                    "evaluator_type": "coco"}))
        from detectron2.data import DatasetCatalog, MetadataCatalog

        DatasetCatalog.get(names[1])  # fills thing_classes / the category id map in the metadata
        return (names[0],), (names[1],), len(MetadataCatalog.get(names[1]).thing_classes)
    out = {}
    for which in ("train", "test"):
        devkit, classes, sets = _voc_sets(cfg, which)
        out[which] = tuple(
            _register(f"mec_{tag}_voc_{year}_{image_set}",
                      lambda dirname=str(devkit / f"VOC{year}"), s=image_set, c=list(classes):
                      load_voc_instances(dirname, s, c),  # register_pascal_voc, with this run's name
                      {"thing_classes": list(classes), "dirname": str(devkit / f"VOC{year}"), "year": int(year),
                       "split": image_set, "evaluator_type": "pascal_voc"})
            for year, image_set in sets)
    return out["train"], out["test"], len(classes)


def _coco_fail(name: str, problem: str) -> UserError:
    from mec_eval.data.detection import fail

    return fail(name, problem)


def _trainer_class():
    """DefaultTrainer with detectron2's own evaluators and no in-training evaluation (scored once, after)."""
    from detectron2.engine import DefaultTrainer, hooks
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

    class Trainer(DefaultTrainer):
        @classmethod
        def build_evaluator(cls, cfg, dataset_name):
            from detectron2.data import MetadataCatalog

            if MetadataCatalog.get(dataset_name).evaluator_type == "pascal_voc":
                return PascalVOCDetectionEvaluator(dataset_name)
            tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
            return COCOEvaluator(dataset_name, tasks, False, output_dir=str(Path(cfg.OUTPUT_DIR) / "inference"))

        def build_hooks(self):
            return [h for h in super().build_hooks() if not isinstance(h, hooks.EvalHook)]

    return Trainer


def metrics_from_detectron2(results: dict, coco: bool) -> tuple[dict[str, float], dict[str, float]]:
    """(metrics under mec-eval's names, per-class AP) from detectron2's evaluator output.

    VOC: ``{"bbox": {"AP", "AP50", "AP75"}}`` as is. COCO: ``bbox_AP`` .. ``segm_APl`` from each task's
    ``AP, AP50, AP75, APs, APm, APl``; its ``AP-<class>`` entries become the per-class AP.
    """
    if not coco:
        return {k: float(results["bbox"][k]) for k in ("AP", "AP50", "AP75")}, {}
    metrics, per_class = {}, {}
    for task in ("bbox", "segm"):
        for key, value in results.get(task, {}).items():
            if key in _COCO_NAMES:
                metrics[f"{task}_{key}"] = float(value)
            elif key.startswith("AP-"):
                per_class[f"{task}_{key[3:]}"] = float(value)
    return metrics, per_class


def run(task, encoder, cfg: DetectionConfig, workdir: Path) -> Result:
    """Export the checkpoint, train with detectron2's DefaultTrainer (resumable) and score with its evaluator."""
    require_detectron2()
    if cfg.lr_search.enabled:
        raise UserError("lr_search.enabled=true runs on backend=torchvision only; search there, then pass "
                        "optim.base_lr=<chosen> with backend=detectron2")
    require_resnet50(encoder)
    from detectron2.utils import comm

    register_extra_norm_heads()
    for which in ("train", "test"):  # the engine's readers: one-line errors for a bad layout or annotation
        load_split(cfg, which, None)
    out = workdir / "detectron2"
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "backbone.pkl"  # what `mec-eval convert --to detectron2` writes
    if comm.is_main_process() and not weights.is_file():
        export_detectron2(encoder.backbone, weights)
    comm.synchronize()
    train, test, num_classes = register_datasets(cfg, workdir.name)
    d2cfg = build_d2_config(cfg, num_classes, str(weights), str(out), train, test, world_size())
    if comm.is_main_process():  # as detectron2's default_setup: the importer reads the anchors from it
        atomic_write_text(out / "config.yaml", d2cfg.dump())
    trainer = _trainer_class()(d2cfg)
    trainer.resume_or_load(resume=True)  # continues from out/last_checkpoint when a requeued job left one
    trainer.train()
    results = trainer.test(d2cfg, trainer.model)
    metrics, per_class = metrics_from_detectron2(results, is_coco(cfg))
    undefined = sorted(k for k, v in metrics.items() if v != v)  # COCOeval's -1 arrives as NaN
    metrics = {k: v for k, v in metrics.items() if k not in undefined}
    extra = {"backend": "detectron2", "iterations": cfg.optim.iterations, "per_class_AP": per_class,
             "detectron2_config": d2cfg.dump(), **({"undefined_metrics": undefined} if undefined else {})}
    scale = {"world_size": world_size(), "effective_batch": cfg.optim.batch_size, "base_lr": cfg.optim.base_lr,
             "reference_batch": cfg.optim.reference_batch}
    return Result(dataset=cfg.data.name, metrics=metrics, primary="bbox_AP" if cfg.model.mask_on else "AP",
                  extra=extra, scale=scale)


__all__ = ["EXTRA_NORM_HEADS", "INSTALL_HINT", "SSL_PIXEL_MEAN", "SSL_PIXEL_STD", "build_d2_config", "is_coco",
           "metrics_from_detectron2", "register_datasets", "register_extra_norm_heads", "require_detectron2",
           "require_resnet50", "run"]
