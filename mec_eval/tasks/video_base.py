"""What the UniTrack SOT and VOS adapters share: one run per feature layer, the frozen model, timing,
per-sequence records that make a run resumable, and the synthetic set written in the real layouts."""
from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from mec_eval.checkpoints import Encoder
from mec_eval.dist import autocast, resolve_precision
from mec_eval.models.appearance import build_appearance_model
from mec_eval.runs import safe_name
from mec_eval.tasks.base import TaskBase
from mec_eval.utils import UserError, atomic_write_text


class Timer:
    """Seconds spent in the backbone and in the heads (CUDA synchronised, so the split is real)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, {"backbone": 0.0, "heads": 0.0}

    @contextmanager
    def part(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.seconds[name] += time.perf_counter() - start


class FrozenFeatures:
    """The UniTrack appearance model of an encoder on a device; ``__call__`` maps images to fp32 features."""

    def __init__(self, encoder: Encoder, layer: int, device: str, precision: str):
        self.device = torch.device(device)
        self.model = build_appearance_model(encoder.backbone, layer).to(self.device)
        self.amp = resolve_precision(precision, self.device)
        self.stride, self.timer = self.model.stride, Timer(self.device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """float [N, 3, H, W] in [0, 1] on the device -> float32 [N, C, H/stride, W/stride]."""
        with self.timer.part("backbone"), torch.no_grad(), autocast(self.device, self.amp):
            return self.model(images).float()


def frame_tensor(frame, device: torch.device) -> torch.Tensor:
    """A PIL image or uint8 [H, W, 3] array as float [3, H, W] in [0, 1] on ``device``."""
    pixels = torch.from_numpy(np.array(frame, dtype=np.uint8, copy=True))
    return pixels.to(device).permute(2, 0, 1).float().div_(255.0)


class VideoTask(TaskBase):
    """Base of the SOT and VOS adapters: one run per UniTrack feature layer, resumable per sequence."""

    needs_resnet = True  # UniTrack's stride-8 layer3 / layer4 features; the runner refuses a ViT up front

    @classmethod
    def expand(cls, cfg) -> list[list[str]]:
        super().expand(cfg)
        return [["model.layer=3"], ["model.layer=4"]] if cfg.model.layer == 0 else [[]]

    def frozen(self, encoder: Encoder, cfg) -> FrozenFeatures:
        if cfg.model.layer == 0:
            raise UserError("model.layer=0 stands for both layers, which `mec-eval run` expands into two runs; "
                            "set model.layer=3 or model.layer=4 to run one")
        return FrozenFeatures(encoder, cfg.model.layer, self.ctx.device, cfg.run.precision)

    def synthetic_root(self, layout: str, params) -> Path:
        """Where the synthetic shapes-video set of these parameters is written in ``layout`` (shared cache)."""
        digest = hashlib.sha256(json.dumps(params.arguments(), sort_keys=True).encode()).hexdigest()[:12]
        return self.cache_dir.parent / "shapes-video" / f"{layout}-{digest}"


class SequenceRecords:
    """``<workdir>/sequences/<name>.json``: the record of each finished sequence, written last and atomically."""

    def __init__(self, workdir: Path):
        self.folder = Path(workdir) / "sequences"

    def path(self, name: str, suffix: str = ".json") -> Path:
        return self.folder / f"{safe_name(name)}{suffix}"

    def done(self, name: str) -> dict | None:
        try:
            return json.loads(self.path(name).read_text())
        except (OSError, ValueError):  # not finished (or cut off while written): run it again
            return None

    def save(self, name: str, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path(name), json.dumps(record, sort_keys=True))


def speed(records: list[dict]) -> dict:
    """frames/s over all sequences and the share of time in the backbone (the rest: heads)."""
    frames = sum(r["frames"] for r in records)
    backbone, heads = sum(r["backbone_s"] for r in records), sum(r["heads_s"] for r in records)
    total = backbone + heads
    return {"frames": frames, "fps": frames / total if total > 0 else None,
            "backbone_share": backbone / total if total > 0 else None}
