"""UniTrack MOT on MOT16 (given detections): RoIAlign embeddings + :mod:`mec_eval.tasks.association`, TrackEval scores.

:class:`TrackingTask` is the shared loop of the MOT, MOTS and PoseTrack adapters: one run per
feature layer (``expand``), one tracker output file per sequence written atomically under
``workdir/tracks`` (a re-run skips the sequences already written), frames/s per sequence in the log
and in result.json ``extra``. Frames are letterboxed to ``data.image_size`` (UniTrack 1088 x 608).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align
from torchvision.transforms.functional import pil_to_tensor

from mec_eval.checkpoints import Encoder
from mec_eval.data import shapes_tracking
from mec_eval.data.mot import VideoSequences
from mec_eval.metrics.mot import evaluate_mot
from mec_eval.models.appearance import build_appearance_model
from mec_eval.tasks.association import AssociationParams, Detections, Tracker
from mec_eval.tasks.base import Result, TaskBase
from mec_eval.tasks.tracking_configs import TrackingConfig
from mec_eval.utils import UserError, atomic_write_text


def letterbox(image: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, float, float, float]:
    """Resize float [3, H, W] keeping the aspect ratio and pad to [3, height, width] with grey (JDE
    ``letterbox``); returns (image, scale, pad_x, pad_y) so that letterboxed = original * scale + pad."""
    h, w = image.shape[1:]
    scale = min(width / w, height / h)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    out = torch.full((3, height, width), 0.5, dtype=image.dtype)
    px, py = (width - nw) / 2, (height - nh) / 2
    out[:, int(py):int(py) + nh, int(px):int(px) + nw] = resized
    return out, scale, float(int(px)), float(int(py))


def normalise_cells(cells: torch.Tensor) -> np.ndarray:
    """[cells, C] L2-normalised per cell, as float64 numpy (the tracker's embedding)."""
    return F.normalize(cells.float(), dim=1).double().numpy()


def box_embeddings(feat: torch.Tensor, boxes: np.ndarray, stride: int, roi_size) -> list[np.ndarray]:
    """UniTrack MOT embedding: ``roi_align(feat, box, roi_size)`` cells [a * b, C] per box (letterboxed pixels)."""
    if not len(boxes):
        return []
    rois = torch.as_tensor(boxes, dtype=feat.dtype)
    pooled = roi_align(feat[None], [rois], output_size=tuple(roi_size), spatial_scale=1.0 / stride,
                       sampling_ratio=2, aligned=True)
    return [normalise_cells(p.flatten(1).T) for p in pooled]


def mask_embeddings(feat: torch.Tensor, masks: np.ndarray, max_cells: int) -> list[np.ndarray]:
    """UniTrack MOTS embedding (``tracker/mot/mask.py``): all masks resized to the feature grid at once
    (nearest), the masked features of each object rescaled (bilinear, factor sqrt(max_cells / area)) when
    the mask covers more than ``max_cells`` cells, and the cells inside the rescaled mask kept. The
    rescaling works on the mask's bounding crop (the same cells as rescaling the whole map). A mask
    thinner than a cell keeps the cell it covers most (UniTrack draws a random embedding there)."""
    if masks is None or not len(masks):
        return []
    _, fh, fw = feat.shape
    full = torch.as_tensor(np.asarray(masks), dtype=torch.float32)[:, None]
    grids = F.interpolate(full, size=(fh, fw), mode="nearest")[:, 0] > 0.5            # [N, fh, fw]
    empty = ~grids.flatten(1).any(dim=1)
    if bool(empty.any()):
        cover = F.adaptive_avg_pool2d(full[empty], (fh, fw))[:, 0].flatten(1)
        grids[empty] = F.one_hot(cover.argmax(dim=1), fh * fw).bool().view(-1, fh, fw)
    areas = grids.flatten(1).sum(dim=1).tolist()
    out = []
    for grid, area in zip(grids, areas):
        rows, cols = torch.nonzero(grid.any(dim=1))[:, 0], torch.nonzero(grid.any(dim=0))[:, 0]
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        crop_mask = grid[y0:y1, x0:x1]
        crop = feat[:, y0:y1, x0:x1] * crop_mask
        if area > max_cells:
            factor = (max_cells / area) ** 0.5
            size = (max(1, int((y1 - y0) * factor)), max(1, int((x1 - x0) * factor)))
            crop = F.interpolate(crop[None], size=size, mode="bilinear", align_corners=False)[0]
            crop_mask = F.interpolate(crop_mask[None, None].float(), size=size, mode="nearest")[0, 0] >= 0.5
            if not bool(crop_mask.any()):
                crop_mask = torch.ones(size, dtype=torch.bool)
        out.append(normalise_cells(crop[:, crop_mask].T))
    return out


@contextlib.contextmanager
def serial_threads():
    """One torch and one BLAS thread inside: the per-frame association works on matrices of a few dozen
    rows, where thread hand-offs cost more than the arithmetic (measured: 2.8 -> 18 frames/s on a busy
    2-core CPU for the whole loop); the backbone's forward pass keeps all threads."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


class TrackingTask(TaskBase):
    """Shared per-sequence loop; subclasses say how to read, embed, write and score."""

    needs_resnet = True  # UniTrack's stride-8 layer3 / layer4 features; the runner refuses a ViT up front
    result_ext = ".txt"

    @classmethod
    def expand(cls, cfg: TrackingConfig) -> list[list[str]]:
        super().expand(cfg)
        return [["model.layer=3"], ["model.layer=4"]] if cfg.model.layer == 0 else [[]]

    # -- data --------------------------------------------------------------------------------
    def synthetic_root(self, cfg: TrackingConfig) -> Path:
        """``data.root`` or ``RUNS/.cache/shapes-video/<task>-<digest of the video spec>`` (a changed spec
        never re-uses videos written for another)."""
        if cfg.data.root:
            return Path(cfg.data.root)
        digest = hashlib.sha1(repr(self.video_spec(cfg)).encode()).hexdigest()[:10]
        return self.cache_dir.parent / "shapes-video" / f"{self.name}-{digest}"

    def video_spec(self, cfg: TrackingConfig) -> shapes_tracking.VideoSpec:
        """The synthetic videos of ``cfg``: written at the letterbox size ``data.image_size`` (width, height)."""
        width, height = cfg.data.image_size[:2]
        return shapes_tracking.VideoSpec(n_videos=cfg.data.synthetic_videos, n_frames=cfg.data.synthetic_frames,
                                         size=(height, width), n_objects=cfg.data.synthetic_objects,
                                         seed=cfg.run.seed, crossing_miss=cfg.data.synthetic_crossing_miss,
                                         palette=cfg.data.synthetic_palette,
                                         distractors=cfg.data.synthetic_distractors,
                                         palette_jitter=cfg.data.synthetic_palette_jitter)

    def sequences(self, cfg: TrackingConfig):
        if cfg.data.name == "shapes-video":
            root = shapes_tracking.write_shapes_mot(self.synthetic_root(cfg), self.video_spec(cfg))
        elif cfg.data.name == "mot16":
            root = cfg.data.root
        else:
            raise UserError(f"task mot reads mot16 or shapes-video, not {cfg.data.name}")
        return VideoSequences(root, "mot", cfg.data.detections, cfg.data.sequences or None)

    # -- per frame ---------------------------------------------------------------------------
    def frame_tensor(self, image, cfg: TrackingConfig):
        tensor = pil_to_tensor(image).float() / 255
        width, height = cfg.data.image_size[:2]
        return (*letterbox(tensor, width, height), tensor.shape[1], tensor.shape[2])

    def detections(self, feat, geometry, annotation, cfg, stride) -> tuple[Detections, object]:
        det = annotation["det"]
        det = det[det[:, 6] > cfg.association.new_track_thresh]  # UniTrack prepare_obs: conf > conf_thres only
        scale, px, py, _h, _w = geometry
        boxes = np.column_stack([det[:, 2], det[:, 3], det[:, 2] + det[:, 4], det[:, 3] + det[:, 5]]).reshape(-1, 4)
        embeds = box_embeddings(feat, boxes * scale + [px, py, px, py], stride, cfg.association.roi_size)
        return Detections(boxes, det[:, 6].copy(), embeds), boxes

    def write(self, path: Path, seq, outputs: list, cfg: TrackingConfig) -> None:
        rows = []
        for frame, matches, boxes in outputs:
            for track_id, j in matches:
                x1, y1, x2, y2 = boxes[j]
                if (x2 - x1) * (y2 - y1) > cfg.data.min_box_area:
                    rows.append(f"{frame},{track_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,-1,-1,-1\n")
        atomic_write_text(path, "".join(rows))

    def score(self, data, tracks_dir: Path, cfg: TrackingConfig) -> dict:
        base = data.dirs[0].parent
        return evaluate_mot(base, tracks_dir, "MOT16", sequences=[d.name for d in data.dirs])

    # -- the loop ----------------------------------------------------------------------------
    def track_sequence(self, model, seq, cfg: TrackingConfig, device) -> tuple[list, float]:
        p = cfg.association
        params = AssociationParams(**{k: getattr(p, k) for k in AssociationParams.__dataclass_fields__
                                      if hasattr(p, k)})
        params.frame_rate = getattr(getattr(seq, "info", None), "frame_rate", p.frame_rate)
        tracker, outputs, t0 = Tracker(params), [], time.perf_counter()
        frames = seq.frames
        for start in range(0, len(frames), cfg.model.batch_size):
            prepared = [self.frame_tensor(frames[t], cfg) for t in range(start, min(start + cfg.model.batch_size,
                                                                                    len(frames)))]
            with torch.inference_mode():
                feats = model(torch.stack([x[0] for x in prepared]).to(device)).float().cpu()
            with serial_threads():
                for k, (feat, (_img, *geometry)) in enumerate(zip(feats, prepared)):
                    dets, obs = self.detections(feat, geometry, seq.annotations[start + k], cfg, model.stride)
                    outputs.append((start + k + 1, tracker.update(dets), obs))
        return outputs, len(frames) / max(time.perf_counter() - t0, 1e-9)

    def run(self, encoder: Encoder, cfg: TrackingConfig, workdir: Path) -> Result:
        if cfg.model.layer == 0:
            raise UserError("model.layer=0 stands for both layers; run the task through `mec-eval run` "
                            "(one run per layer) or set model.layer=3 or 4")
        data = self.sequences(cfg)
        device = torch.device(self.ctx.device)
        model = build_appearance_model(encoder.backbone, cfg.model.layer).to(device)
        tracks_dir, timing_dir = Path(workdir) / "tracks", Path(workdir) / "timing"
        tracks_dir.mkdir(parents=True, exist_ok=True)
        timing_dir.mkdir(parents=True, exist_ok=True)
        fps, frames, resumed = {}, {}, []
        for index in range(len(data)):
            name = data.dirs[index].name if hasattr(data, "dirs") else data.names[index]
            out, timing = tracks_dir / f"{name}{self.result_ext}", timing_dir / f"{name}.json"
            if out.is_file() and timing.is_file():
                record = json.loads(timing.read_text())
                fps[name], frames[name] = record["fps"], record["frames"]
                resumed.append(name)
                continue
            seq = data[index]
            outputs, fps[name] = self.track_sequence(model, seq, cfg, device)
            frames[name] = len(seq.frames)
            self.write(out, seq, outputs, cfg)
            atomic_write_text(timing, json.dumps({"fps": fps[name], "frames": len(seq.frames)}) + "\n")
            self.ctx.logger.info(f"{self.name} layer{cfg.model.layer}: sequence {index + 1}/{len(data)} {name} "
                                 f"({len(seq.frames)} frames, {fps[name]:.1f} frames/s)")
        scores = self.score(data, tracks_dir, cfg)
        metrics = {k: float(scores[k]) for k in self.metric_names}
        seconds = sum(frames[n] / fps[n] for n in fps)  # overall frames/s: all frames over all tracking time
        extra = {"layer": cfg.model.layer, "fps": sum(frames.values()) / max(seconds, 1e-9), "frames_per_s": fps,
                 "resumed_sequences": resumed,
                 "detections": cfg.data.detections or "dataset's own (det/det.txt or given poses)",
                 **{k: v for k, v in scores.items() if k not in metrics}}
        return Result(dataset=cfg.data.name, metrics=metrics, primary="idf1", lower_is_better_metrics=["id_switches"],
                      extra=extra)

    metric_names = ("idf1", "hota", "mota", "id_switches")


class MOTTask(TrackingTask):
    name = "mot"
    Config = TrackingConfig
