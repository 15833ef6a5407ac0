"""SOT and VOS speed: frames/s of the UniTrack heads on the frozen model, and the backbone's share of the time.

Runs the task code itself (``tasks.sot.track_sequence``, ``tasks.vos.segment_sequence``) on synthetic
shapes videos: ``resnet_tiny`` at the CPU variant's sizes (tasks/*-cpu-small.yaml: hard 48x64 frames,
48-px SOT window) and ResNet-50 at the protocol sizes (520-px SOT window, 480x854 VOS frames) for a
couple of frames. Weights are random (speed does not depend on them). Prints one line per case:
``<task>[<arch> <size> layer<l>] fps=... backbone_share=...``; ``--profile`` adds the cProfile top
functions (by own time) of each case.
Usage: python benchmarks/bench_video_heads.py [--frames 3] [--device auto] [--skip-r50] [--profile] | --smoke
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np
import torch

from mec_eval.checkpoints import load_encoder
from mec_eval.data.otb import sot_target
from mec_eval.data.shapes_video import HARD, make_video
from mec_eval.dist import resolve_device
from mec_eval.tasks.sot import track_sequence
from mec_eval.tasks.video_base import FrozenFeatures
from mec_eval.tasks.video_configs import SOTParams, VOSParams
from mec_eval.tasks.vos import segment_sequence


def _labels(video) -> np.ndarray:
    labels = np.zeros(video.size, dtype=np.uint8)
    for track in video.tracks:
        if track.frames[0] is not None:
            labels[track.frames[0].mask] = track.id
    return labels


def measure(task: str, arch: str, layer: int, video, params, device: str, precision: str,
            profile: bool = False) -> str:
    features = FrozenFeatures(load_encoder(f"random:{arch}"), layer, device, precision)
    profiler = cProfile.Profile() if profile else None
    began = time.perf_counter()
    if profiler:
        profiler.enable()
    if task == "sot":
        _, boxes = sot_target(video)
        track_sequence(features, params, video.frames, boxes[0])
    else:
        for _ in segment_sequence(features, params, video.frames, _labels(video)):
            pass
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - began
    parts = features.timer.seconds
    share = parts["backbone"] / max(parts["backbone"] + parts["heads"], 1e-9)
    size = "x".join(map(str, video.size))
    line = (f"{task}[{arch} {size} layer{layer}] fps={len(video.frames) / wall:.3f} "
            f"backbone_share={share:.3f} wall_s={wall:.2f}")
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(8)
        line += "\n" + "\n".join(row for row in text.getvalue().splitlines() if row.strip())
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--skip-r50", action="store_true", help="only the CPU-size resnet_tiny cases")
    parser.add_argument("--smoke", action="store_true", help="resnet_tiny, 3 frames, layer 3 only (CI)")
    parser.add_argument("--profile", action="store_true", help="cProfile each case (top 8 by own time)")
    args = parser.parse_args()
    device = str(resolve_device(args.device))
    frames = 3 if args.smoke else args.frames
    small = make_video(0, n_frames=frames, size=(48, 64), **HARD)
    cases = [("sot", "resnet_tiny", small, SOTParams(search_size=48, template=0)),
             ("vos", "resnet_tiny", small, VOSParams(chunk=24))]
    if not (args.smoke or args.skip_r50):
        big = make_video(0, n_frames=frames, size=(480, 854))
        cases += [("sot", "resnet50", big, SOTParams()), ("vos", "resnet50", big, VOSParams())]
    print(f"device={device} torch_threads={torch.get_num_threads()}")
    for task, arch, video, params in cases:
        for layer in ((3,) if args.smoke else (3, 4)):
            print(measure(task, arch, layer, video, params, device, "fp32" if args.smoke else args.precision,
                          args.profile), flush=True)


if __name__ == "__main__":
    main()
