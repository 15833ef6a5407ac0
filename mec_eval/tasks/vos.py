"""UniTrack video object segmentation (DAVIS-2017 val) by label propagation on frozen features.

As UniTrack / CRW (Jabri et al., NeurIPS 2020, ``test.py`` label propagation): frames at full
resolution, features L2-normalised over channels; the context of frame t is the first frame (all its
cells) and the ``context`` previous frames with their predicted soft labels, restricted to keys within
``radius`` cells of the query (Euclidean, strict); affinity = dot / ``temperature``; each query keeps
its ``topk`` keys, softmax, and sums their labels; the soft map is upsampled bilinearly and argmaxed.
First-frame labels are the one-hot annotation resized bilinearly to the feature grid. The context
starts with the first frame alone (no padding by repeated first frames).
"""
from __future__ import annotations

import os
import shutil
from collections import deque
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mec_eval.checkpoints import Encoder
from mec_eval.data.davis import VOID, load_davis, write_label_png, write_shapes_davis
from mec_eval.log import progress
from mec_eval.metrics.vos import evaluate_vos
from mec_eval.tasks.base import Result
from mec_eval.tasks.video_base import (
    FrozenFeatures,
    SequenceRecords,
    VideoTask,
    frame_tensor,
    speed,
)
from mec_eval.tasks.video_configs import VOSConfig, VOSParams


def propagate_labels(query: torch.Tensor, first: tuple[torch.Tensor, torch.Tensor],
                     previous: list[tuple[torch.Tensor, torch.Tensor]], params: VOSParams) -> torch.Tensor:
    """Soft labels [K, h, w] of a frame from its context.

    ``query`` and every context feature map are L2-normalised [C, h, w]; labels are [K, h, w]. Queries
    go in bands of ``params.chunk`` rows; a band's keys in previous frames are only the rows within
    ``radius`` of it, so memory and time grow with the band, not with the frame. Per band, the keys of
    all context frames are one matrix: one product, one mask (cached per band geometry), one top-k.
    """
    channels, height, width = query.shape
    n_labels = first[1].shape[0]
    first_feat, first_label = first[0].reshape(channels, -1), first[1].reshape(n_labels, -1)
    if previous:  # [C, P, h, w] / [K, P, h, w]: a band of every previous frame is one slice
        prev_feat = torch.stack([feat for feat, _ in previous], dim=1)
        prev_label = torch.stack([label for _, label in previous], dim=1)
    out = torch.empty(n_labels, height, width, device=query.device)
    reach = int(np.ceil(params.radius))
    for top in range(0, height, params.chunk):
        bottom = min(top + params.chunk, height)
        q = query[:, top:bottom].reshape(channels, -1).T / params.temperature     # [Q, C]
        keys, labels = first_feat, first_label
        if previous:
            lo, hi = max(0, top - reach), min(height, bottom + reach)
            keys = torch.cat([first_feat, prev_feat[:, :, lo:hi].reshape(channels, -1)], dim=1)
            labels = torch.cat([first_label, prev_label[:, :, lo:hi].reshape(n_labels, -1)], dim=1)
        scores = q @ keys                                                          # [Q, N_first + P * N_band]
        if previous:
            outside = _outside(top, bottom, lo, hi, width, float(params.radius), str(query.device))
            banded = scores[:, first_feat.shape[1]:].view(len(q), len(previous), -1)  # a view: fills ``scores``
            banded.masked_fill_(outside[:, None], float("-inf"))
        best, index = scores.topk(min(params.topk, scores.shape[1]), dim=1)
        weights = torch.softmax(best, dim=1)                                       # [Q, k]
        picked = labels.T[index]                                                   # [Q, k, K]
        out[:, top:bottom] = torch.einsum("qk,qkl->lq", weights, picked).reshape(n_labels, bottom - top, width)
    return out


@lru_cache(maxsize=64)
def _outside(top: int, bottom: int, lo: int, hi: int, width: int, radius: float, device: str) -> torch.Tensor:
    """[Q, N] True where a key (rows lo..hi) is not strictly within ``radius`` cells of a query (rows top..bottom);
    cached: every frame of a sequence has the same band geometry."""
    q_rows, q_cols = torch.meshgrid(torch.arange(top, bottom, device=device, dtype=torch.float32),
                                    torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    k_rows, k_cols = torch.meshgrid(torch.arange(lo, hi, device=device, dtype=torch.float32),
                                    torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    dist2 = (q_rows.reshape(-1, 1) - k_rows.reshape(1, -1)) ** 2 + (q_cols.reshape(-1, 1) - k_cols.reshape(1, -1)) ** 2
    return dist2 >= radius * radius


def segment_sequence(features: FrozenFeatures, params: VOSParams, frames, first_labels: np.ndarray):
    """Yield the predicted id map (uint8 [H, W]) of every frame; the first is the given annotation."""
    n_ids = int(first_labels[first_labels != VOID].max(initial=0))
    clean = np.where(first_labels == VOID, 0, first_labels)
    one_hot = F.one_hot(torch.from_numpy(clean.astype(np.int64)), n_ids + 1).permute(2, 0, 1).float()
    first, history = None, deque(maxlen=params.context)
    for index, frame in enumerate(frames):
        image = frame_tensor(frame, features.device)
        feat = F.normalize(features(image[None])[0], dim=0)
        with features.timer.part("heads"):
            if index == 0:
                small = F.interpolate(one_hot[None].to(feat.device), size=feat.shape[-2:], mode="bilinear",
                                      align_corners=False)[0]
                first = (feat, small)
                history.append(first)
                yield first_labels.astype(np.uint8)
                continue
            soft = propagate_labels(feat, first, list(history), params)
            history.append((feat, soft))
            full = F.interpolate(soft[None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
            prediction = full.argmax(dim=0).to(torch.uint8).cpu().numpy()
        yield prediction


class VOSTask(VideoTask):
    name = "vos"
    Config = VOSConfig

    def sequences(self, cfg: VOSConfig):
        if cfg.data.name == "shapes-video":
            root = write_shapes_davis(self.synthetic_root("davis", cfg.data.shapes), **cfg.data.shapes.arguments())
            return load_davis(root, "val", cfg.data.sequences or None)
        return load_davis(cfg.data.root, cfg.data.split, cfg.data.sequences or None)

    def _segment(self, features: FrozenFeatures, cfg: VOSConfig, seq, target: Path) -> None:
        """Write the predictions of ``seq`` into ``target`` as one folder rename (no half sequence)."""
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        names = [p.stem for p in seq.annotations.paths]
        for name, prediction in zip(names, segment_sequence(features, cfg.vos, seq.frames, seq.annotations[0])):
            write_label_png(tmp / f"{name}.png", prediction)
        shutil.rmtree(target, ignore_errors=True)  # a folder without its record: an interrupted earlier run
        os.replace(tmp, target)

    def run(self, encoder: Encoder, cfg: VOSConfig, workdir: Path) -> Result:
        sequences = self.sequences(cfg)
        features = self.frozen(encoder, cfg)
        records, results = SequenceRecords(workdir), Path(workdir) / "results"
        timings = []
        for seq in progress(sequences, desc=f"vos layer{cfg.model.layer}", quiet=self.quiet):
            record = records.done(seq.name)
            if record is None:
                before = dict(features.timer.seconds)
                self._segment(features, cfg, seq, results / seq.name)  # load_davis refuses non-folder names
                record = {"frames": len(seq.frames), **{f"{k}_s": v - before[k]
                                                         for k, v in features.timer.seconds.items()}}
                records.save(seq.name, record)
                self.ctx.logger.log(event="sequence", task="vos", layer=cfg.model.layer, sequence=seq.name,
                                    fps=record["frames"] / max(record["backbone_s"] + record["heads_s"], 1e-9))
            timings.append(record)
        gt_folder = sequences[0].gt_folder.parent
        scores = evaluate_vos(gt_folder, results, [s.name for s in sequences])
        extra = {"layer": cfg.model.layer, "stride": features.stride, **speed(timings),
                 "per_sequence": scores["per_sequence"]}
        return Result(dataset=cfg.data.name, metrics={k: scores[k] for k in ("j_mean", "f_mean", "jf_mean")},
                      primary="jf_mean", extra=extra)
