"""Detection evaluation time: COCOEvaluator vs pycocotools' own COCOeval (and faster-coco-eval), and VOCEvaluator.

One fixed synthetic set (shapes-detection, COCO and VOC layouts) and one fixed set of jittered
detections; each contender runs on the same detections, interleaved in one process so machine
noise hits all alike; medians and ratios are printed with the CPU they ran on.

    python benchmarks/bench_detection_eval.py            # 200 images, 3 repeats
    python benchmarks/bench_detection_eval.py --quick    # 20 images, 1 repeat
"""
from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import tempfile
import time

import numpy as np
import torch

from mec_eval.data.detection import LOADERS
from mec_eval.metrics.coco import COCOEvaluator, coco_results
from mec_eval.metrics.voc import VOCEvaluator


def _detections(dataset, per_image: int, seed: int = 0):
    """Per image: the ground truth jittered plus random boxes up to ``per_image`` detections."""
    rng = np.random.default_rng(seed)
    ids, targets, outputs = [], [], []
    for i in range(len(dataset)):
        target = dataset.annotations(i)
        h, w = target["height"], target["width"]
        n = len(target["boxes"])
        xy = torch.tensor(rng.uniform(0, min(h, w) * 0.7, (per_image - n, 2)), dtype=torch.float32)
        boxes = torch.cat([target["boxes"] + torch.tensor(rng.normal(0, 2, (n, 4)), dtype=torch.float32),
                           torch.cat([xy, xy + 20], dim=1)])
        labels = torch.cat([target["labels"], torch.tensor(rng.integers(1, len(dataset.classes) + 1, per_image - n))])
        ids.append(target["image_id"])
        targets.append(target)
        outputs.append({"boxes": boxes, "scores": torch.tensor(rng.random(per_image), dtype=torch.float32),
                        "labels": labels})
    return ids, targets, outputs


def _pycocotools(coco_gt, results, image_ids) -> list[float]:
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco_gt, coco_gt.loadRes([dict(r) for r in results]), "bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 images, one repeat (a smoke run)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--per-image", type=int, default=100, help="detections per image (detectron2 keeps 100)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    images, repeats = (20, 1) if args.quick else (args.images, args.repeats)
    root = tempfile.mkdtemp(prefix="bench-detection-")
    coco = LOADERS["shapes-detection"](root, "test", layout="coco", masks=False, n_train=1, n_test=images)
    voc = LOADERS["shapes-detection"](root, "test", layout="voc", n_train=1, n_test=images)
    ids, _, outputs = _detections(coco, args.per_image)
    voc_ids, voc_targets, voc_outputs = _detections(voc, args.per_image)
    results = coco_results(ids, outputs, coco.label_to_category_id, ("bbox",))

    def ours(fast: bool):
        evaluator = COCOEvaluator(coco.coco, coco.label_to_category_id, ("bbox",), fast=fast)
        evaluator.process(ids, outputs)
        return evaluator.evaluate()

    def voc_eval():
        evaluator = VOCEvaluator(voc.classes)
        evaluator.process(voc_ids, voc_targets, voc_outputs)
        return evaluator.evaluate()

    contenders = {"pycocotools COCOeval": lambda: _pycocotools(coco.coco, results, sorted(ids)),
                  "COCOEvaluator": lambda: ours(False), "COCOEvaluator fast": lambda: ours(True),
                  "VOCEvaluator (10 IoUs)": voc_eval}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    print(f"cpu {platform.processor() or platform.machine()}  cpu_capability {torch.backends.cpu.get_cpu_capability()}"
          f"  threads {torch.get_num_threads()}  images {images}  detections/image {args.per_image}  repeats {repeats}")
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name:24s} {value * 1000:9.1f} ms")
    base = median["pycocotools COCOeval"]
    print(f"ratio COCOEvaluator/pycocotools={median['COCOEvaluator'] / base:.2f}x  "
          f"fast/pycocotools={median['COCOEvaluator fast'] / base:.2f}x")


if __name__ == "__main__":
    main()
