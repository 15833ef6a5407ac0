"""UniTrack single-object tracking (OTB-2015 one-pass evaluation) with the XCorr and DCF heads.

Each head tracks on its own (Wang et al., UniTrack, NeurIPS 2021, Sec. 3.2 / App.; DCFNet tracking
loop): the search window is the target size x (1 + padding), warped to ``search_size`` pixels
(torchvision ``roi_align``, outside the frame filled with the frame's mean colour); ``num_scales``
windows at ``scale_step`` powers are scored, non-central ones times ``scale_penalty``; the peak moves
the target by cells x window / cells; the size is clamped to [min_scale, max_scale] x the first one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.ops import roi_align

from mec_eval.checkpoints import Encoder
from mec_eval.data.otb import load_otb, write_shapes_otb
from mec_eval.log import progress
from mec_eval.metrics.sot import evaluate_sot, mean_scores
from mec_eval.tasks.base import Result
from mec_eval.tasks.sot_heads import DCFHead, XCorrHead
from mec_eval.tasks.video_base import (
    FrozenFeatures,
    SequenceRecords,
    VideoTask,
    frame_tensor,
    speed,
)
from mec_eval.tasks.video_configs import SOTConfig, SOTParams
from mec_eval.utils import UserError, atomic_write_text

HEADS = ("xcorr", "dcf")


def crop_windows(frame: torch.Tensor, centre: np.ndarray, sizes: list[np.ndarray], out: int) -> torch.Tensor:
    """[N, 3, out, out] crops of ``frame`` [3, H, W] centred at ``centre`` with (w, h) ``sizes``."""
    mean = frame.mean(dim=(1, 2), keepdim=True)
    boxes = torch.tensor([[0.0, centre[0] - w / 2, centre[1] - h / 2, centre[0] + w / 2, centre[1] + h / 2]
                          for w, h in sizes], dtype=frame.dtype, device=frame.device)
    # roi_align samples zeros outside the frame: shifting by the mean pads with the mean colour.
    crops = roi_align((frame - mean)[None], boxes, output_size=(out, out), spatial_scale=1.0, sampling_ratio=2,
                      aligned=True)
    return crops + mean[None]


class HeadTracker:
    """One head's target state (centre, size) and the DCFNet-style scale search around it."""

    def __init__(self, name: str, features: FrozenFeatures, params: SOTParams, frame: torch.Tensor, box):
        self.name, self.features, self.p = name, features, params
        x, y, w, h = (float(v) for v in box)
        self.centre, self.size = np.array([x + w / 2, y + h / 2]), np.array([max(w, 1.0), max(h, 1.0)])
        self.initial = self.size.copy()
        self.scales = params.scale_step ** (np.arange(params.num_scales) - params.num_scales // 2)
        self.penalties = params.scale_penalty ** np.abs(np.arange(params.num_scales) - params.num_scales // 2)
        z = self._features(frame, [self.window()])[0]
        cells = z.shape[-1]
        with features.timer.part("heads"):
            if name == "xcorr":
                template = params.template or max(1, round(cells / (1 + params.padding)))
                if template > cells:
                    raise UserError(f"sot.template={template} cells exceeds the {cells}-cell search window "
                                    f"(sot.search_size={params.search_size} at stride {features.stride})")
                self.head = XCorrHead(z, template, params.response_scale)
            else:
                sigma = cells / (1 + params.padding) * params.sigma_factor
                self.head = DCFHead(z, sigma, params.dcf_lambda, params.dcf_lr)

    def window(self, scale: float = 1.0) -> np.ndarray:
        return self.size * (1 + self.p.padding) * scale

    def _features(self, frame: torch.Tensor, sizes: list[np.ndarray]) -> torch.Tensor:
        crops = crop_windows(frame, self.centre, sizes, self.p.search_size)
        return self.features(crops)

    def search_crops(self, frame: torch.Tensor) -> torch.Tensor:
        """[num_scales, 3, S, S] search windows around the current target."""
        return crop_windows(frame, self.centre, [self.window(s) for s in self.scales], self.p.search_size)

    def track(self, frame: torch.Tensor, x: torch.Tensor) -> tuple[float, float, float, float]:
        """Move to the best response of the search features ``x``; return the box (x, y, w, h)."""
        with self.features.timer.part("heads"):
            responses = self.head.respond(x)
            peaks = [self.head.displacement(r) for r in responses]
            best = int(np.argmax([value * pen for (_, _, value), pen in zip(peaks, self.penalties)]))
            dy, dx, _ = peaks[best]
            cell = self.window(self.scales[best]) / x.shape[-1]
            height, width = frame.shape[1:]
            self.centre = np.clip(self.centre + np.array([dx, dy]) * cell, 0, [width, height])
            self.size = np.clip(self.size * self.scales[best], self.p.min_scale * self.initial,
                                self.p.max_scale * self.initial)
        if isinstance(self.head, DCFHead) and self.p.dcf_lr > 0:
            z = self._features(frame, [self.window()])[0]
            with self.features.timer.part("heads"):
                self.head.update(z)
        w, h = self.size
        return (float(self.centre[0] - w / 2), float(self.centre[1] - h / 2), float(w), float(h))


def track_sequence(features: FrozenFeatures, params: SOTParams, frames, first_box) -> dict[str, list]:
    """Boxes (x, y, w, h) per frame for each head; the first frame's is the given box."""
    boxes = {head: [tuple(float(v) for v in first_box)] for head in HEADS}
    trackers = None
    for index, frame in enumerate(frames):
        image = frame_tensor(frame, features.device)
        if index == 0:
            trackers = [HeadTracker(head, features, params, image, first_box) for head in HEADS]
            continue
        # One backbone pass for the search windows of both heads.
        x = features(torch.cat([tracker.search_crops(image) for tracker in trackers]))
        for tracker, x_head in zip(trackers, x.split(params.num_scales)):
            boxes[tracker.name].append(tracker.track(image, x_head))
    return boxes


def _rect_text(boxes: list) -> str:
    return "".join(",".join(f"{v:.2f}" for v in box) + "\n" for box in boxes)


class SOTTask(VideoTask):
    name = "sot"
    Config = SOTConfig

    def sequences(self, cfg: SOTConfig):
        if cfg.data.name == "shapes-video":
            root = write_shapes_otb(self.synthetic_root("otb", cfg.data.shapes), **cfg.data.shapes.arguments())
            return load_otb(root, cfg.data.sequences or None)
        return load_otb(cfg.data.root, cfg.data.sequences or None)

    def run(self, encoder: Encoder, cfg: SOTConfig, workdir: Path) -> Result:
        sequences = self.sequences(cfg)  # a bad root fails before the model is built
        features = self.frozen(encoder, cfg)
        records = SequenceRecords(workdir)
        per_head: dict[str, list[dict]] = {head: [] for head in HEADS}
        timings = []
        for seq in progress(sequences, desc=f"sot layer{cfg.model.layer}", quiet=self.quiet):
            record = records.done(seq.name)
            if record is None:
                before = dict(features.timer.seconds)
                boxes = track_sequence(features, cfg.sot, seq.frames, seq.annotations[0]["box"])
                for head in HEADS:
                    atomic_write_text(records.path(seq.name, f".{head}.txt"), _rect_text(boxes[head]))
                record = {"frames": len(seq.frames), **{f"{k}_s": v - before[k]
                                                         for k, v in features.timer.seconds.items()}}
                records.save(seq.name, record)
                self.ctx.logger.log(event="sequence", task="sot", layer=cfg.model.layer, sequence=seq.name,
                                    fps=record["frames"] / max(record["backbone_s"] + record["heads_s"], 1e-9))
            timings.append(record)
            for head in HEADS:
                scores = evaluate_sot(seq.gt_file, records.path(seq.name, f".{head}.txt"))
                per_head[head].append({"sequence": seq.name, **scores})
        overall = {head: mean_scores(per_head[head]) for head in HEADS}
        extra = {"layer": cfg.model.layer, "stride": features.stride, **speed(timings),
                 **{f"precision_{head}": overall[head]["precision_20"] for head in HEADS},
                 "per_sequence": {s["sequence"]: {head: {"auc": per_head[head][i]["auc"],
                                                         "precision_20": per_head[head][i]["precision_20"]}
                                                  for head in HEADS}
                                  for i, s in enumerate(per_head[HEADS[0]])}}
        return Result(dataset=cfg.data.name, metrics={f"auc_{h}": overall[h]["auc"] for h in HEADS},
                      primary="auc_xcorr", extra=extra)
