"""Detection training step: the engine's R50-C4 against detectron2's, same weights, images and batch, one process.

Issue 10's target: the engine is no slower than detectron2 (ratio detectron2 / engine >= 1.0), with
bf16 autocast + channels_last on and off. Both detectors are built for the same configuration
(``tasks.detectron2_backend.build_d2_config``: Res5ROIHeadsExtraNorm, BN, STRIDE_IN_1X1 False, the
given anchors and sampling sizes) and hold the same random weights (``to_detectron2_names``, strict).
A step is forward with losses + backward (no optimiser: both would run the same SGD). The two
alternate step by step, so a busy machine slows both alike; medians and their ratio are printed,
with the CPU capability. Without detectron2 only the engine's lines are printed.
Cost note: the C4 head runs res5 on every sampled ROI (512 per image at the protocol), so on a CPU
the ROI count, not the image size, sets the step time; ``--rois`` / ``--proposals`` shrink it.
Usage: python benchmarks/bench_detection_train.py [--steps 5] [--size 320] [--images 2]
       [--width-per-group 64] [--rois 512] [--proposals 2000]   |   --smoke (narrow R50, 96 px, 16 ROIs, CI)
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch
from torchvision.models.resnet import Bottleneck, ResNet

from mec_eval.dist import cpu_has_bf16
from mec_eval.models.rcnn_c4 import RCNNC4, RpnSettings, to_detectron2_names
from mec_eval.models.rcnn_heads import RoiSettings
from mec_eval.tasks.detection_configs import DetectionConfig, DetectionModelConfig

try:
    import detectron2  # noqa: F401
except ImportError:
    detectron2 = None

ANCHORS, RATIOS = [32.0, 64.0, 128.0, 256.0, 512.0], [0.5, 1.0, 2.0]  # detectron2's defaults


def batch_of(n: int, side: int, classes: int, seed: int) -> tuple[list[torch.Tensor], list[dict]]:
    """``n`` 8-bit-valued images (side x ~4/3 side, both multiples of 32) with three boxes each, labels 1..K.

    Multiples of 32 so both detectors see the same pixels: the engine pads to 32 (the issue's rule),
    detectron2's C4 backbone has size_divisibility 0 and would otherwise run on fewer pixels."""
    g = torch.Generator().manual_seed(seed)
    height, width = side // 32 * 32, side * 4 // 3 // 32 * 32
    images, targets = [], []
    for _ in range(n):
        images.append((torch.rand(3, height, width, generator=g) * 255).round() / 255)
        corner = torch.rand(3, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6])
        extent = (torch.rand(3, 2, generator=g) * 0.3 + 0.1) * torch.tensor([width, height])
        targets.append({"boxes": torch.cat([corner, corner + extent], dim=1),
                        "labels": torch.randint(1, classes + 1, (3,), generator=g)})
    return images, targets


def build_pair(width_per_group: int, classes: int, model_cfg: DetectionModelConfig):
    """(engine, detectron2 model or None) with the same random weights."""
    resnet = ResNet(Bottleneck, [3, 4, 6, 3], width_per_group=width_per_group)
    rpn = RpnSettings(tuple(ANCHORS), tuple(RATIOS), batch_size_per_image=model_cfg.rpn_batch_per_image,
                      pre_nms_topk_train=model_cfg.rpn_pre_nms_train, pre_nms_topk_test=model_cfg.rpn_pre_nms_test,
                      post_nms_topk_train=model_cfg.rpn_post_nms_train, post_nms_topk_test=model_cfg.rpn_post_nms_test)
    engine = RCNNC4(resnet, classes, mask_on=False, rpn=rpn,
                    roi=RoiSettings(batch_size_per_image=model_cfg.roi_batch_per_image)).train()
    if detectron2 is None:
        return engine, None
    from detectron2.modeling import build_model

    from mec_eval.tasks.detectron2_backend import build_d2_config, register_extra_norm_heads

    register_extra_norm_heads()
    d2cfg = build_d2_config(DetectionConfig(protocol="benchmark", model=model_cfg), classes, "", "/nonexistent",
                            ("unused",), ("unused",)).clone()
    d2cfg.defrost()
    d2cfg.MODEL.RESNETS.WIDTH_PER_GROUP = width_per_group
    d2cfg.MODEL.DEVICE = "cpu"
    d2 = build_model(d2cfg).train()
    d2.load_state_dict(to_detectron2_names(engine.state_dict()), strict=True)
    return engine, d2


def d2_inputs(images: list[torch.Tensor], targets: list[dict]) -> list[dict]:
    from detectron2.structures import Boxes, Instances

    inputs = []
    for image, target in zip(images, targets):
        instances = Instances(tuple(image.shape[1:]))
        instances.gt_boxes, instances.gt_classes = Boxes(target["boxes"]), target["labels"] - 1  # d2: 0..K-1
        inputs.append({"image": image * 255.0, "height": image.shape[1], "width": image.shape[2],
                       "instances": instances})
    return inputs


def step_seconds(model, inputs, fast: bool) -> float:
    """One forward-with-losses + backward; ``fast``: bf16 autocast (channels_last is set on the model)."""
    storage = contextlib.nullcontext()
    if not isinstance(model, RCNNC4):
        from detectron2.utils.events import EventStorage
        storage = EventStorage()
    began = time.perf_counter()
    with storage, torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
        losses = model(*inputs) if isinstance(model, RCNNC4) else model(inputs)
    model.zero_grad(set_to_none=True)
    sum(v.float() for v in losses.values()).backward()
    return time.perf_counter() - began


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--size", type=int, default=320, help="image short side (protocol 480-800; CPU: smaller)")
    p.add_argument("--images", type=int, default=2, help="images per step (protocol: 2 per GPU)")
    p.add_argument("--width-per-group", type=int, default=64, help="64: ResNet-50; 16: a narrow R50 for speed")
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--rois", type=int, default=512, help="ROIs sampled per image (protocol 512; res5 runs on each)")
    p.add_argument("--proposals", type=int, default=2000, help="RPN post-NMS top-k in training (protocol 2000)")
    p.add_argument("--roialign-baseline", action="store_true",
                   help="also time the engine with torchvision's own RoIAlign backward (before models/roi_align_cpu.py)")
    p.add_argument("--smoke", action="store_true", help="narrow R50, 96 px, one image, 1 step (CI)")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="the bf16+channels_last pass: auto runs it only where the CPU has native bf16 "
                        "(it is emulated, ~100x slower, on AVX2 and plain AVX512 CPUs)")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.size, args.images, args.width_per_group, args.rois, args.proposals = 1, 96, 1, 16, 16, 64
    model_cfg = DetectionModelConfig(norm="bn", mask_on=False, anchor_sizes=ANCHORS, aspect_ratios=RATIOS,
                                     roi_batch_per_image=args.rois, rpn_post_nms_train=args.proposals)
    engine, d2 = build_pair(args.width_per_group, args.classes, model_cfg)
    images, targets = batch_of(args.images, args.size, args.classes, seed=0)
    print(f"cpu_capability {torch.backends.cpu.get_cpu_capability()}  native bf16 {cpu_has_bf16()}  threads {torch.get_num_threads()}  "
          f"R50-C4 width_per_group {args.width_per_group}  images {args.images} x {tuple(images[0].shape[1:])}  "
          f"rois/image {args.rois}  proposals {args.proposals}  steps {args.steps}  "
          f"detectron2 {'yes' if d2 is not None else 'not installed'}")
    sides = [("engine", engine, (images, targets))]
    if args.roialign_baseline:  # same weights, torchvision's serial CPU backward in the C4 head's pooler
        from torchvision.ops import RoIAlign
        baseline = copy.deepcopy(engine)
        baseline.roi_heads.pooler = RoIAlign(engine.roi_heads.pooler.output_size, engine.roi_heads.pooler.spatial_scale,
                                             sampling_ratio=0, aligned=True)
        sides.append(("engine-torchvision-roialign", baseline, (images, targets)))
    if d2 is not None:
        sides.append(("detectron2", d2, d2_inputs(images, targets)))
    native = cpu_has_bf16()
    modes = [False] + ([True] if args.bf16 == "on" or (args.bf16 == "auto" and native) else [])
    if True not in modes:
        print(f"[bf16+channels_last] skipped: {'--bf16 off' if args.bf16 == 'off' else 'no native bf16 on this CPU'}")
    for fast in modes:
        memory = torch.channels_last if fast else torch.contiguous_format
        for _, model, inputs in sides:
            model.to(memory_format=memory)
            step_seconds(model, inputs, fast)  # warm-up
        times = {name: [] for name, _, _ in sides}
        for _ in range(args.steps):
            for name, model, inputs in sides:
                times[name].append(step_seconds(model, inputs, fast))
        medians = {name: statistics.median(v) for name, v in times.items()}
        mode = "bf16+channels_last" if fast else "fp32"
        line = "  ".join(f"{name} {seconds:.3f} s/step" for name, seconds in medians.items())
        if args.roialign_baseline:
            line += f"  ratio torchvision-roialign/engine {medians['engine-torchvision-roialign'] / medians['engine']:.3f}"
        if d2 is not None:
            line += f"  ratio detectron2/engine {medians['detectron2'] / medians['engine']:.3f} (target >= 1.0)"
        print(f"[{mode}] {line}", flush=True)


if __name__ == "__main__":
    main()
