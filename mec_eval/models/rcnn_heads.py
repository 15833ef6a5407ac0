"""detectron2's ``Res5ROIHeads`` (+ MoCo's ``Res5ROIHeadsExtraNorm``) and the C4 mask head, on torchvision ops.

Sources: detectron2 ``modeling/roi_heads/roi_heads.py`` (``ROIHeads.label_and_sample_proposals``,
``Res5ROIHeads``), ``fast_rcnn.py`` (``FastRCNNOutputLayers``, ``fast_rcnn_inference``),
``mask_head.py`` (``MaskRCNNConvUpsampleHead``, ``mask_rcnn_loss``); facebookresearch/moco
``detection/train_net.py`` (the extra norm appended to res5).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.ops import (
    batched_nms,
    box_iou,
    clip_boxes_to_image,
    roi_align,
)

from mec_eval.models.roi_align_cpu import RoIAlignCPU


@dataclass(frozen=True)
class RoiSettings:
    """detectron2 ``MODEL.ROI_HEADS`` / ``ROI_BOX_HEAD`` / ``TEST`` defaults for R50-C4."""
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    iou_threshold: float = 0.5
    box_weights: tuple = (10.0, 10.0, 5.0, 5.0)
    pooler_resolution: int = 14            # ROIAlignV2 on res4; res5 halves it to 7x7
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100


class LabelMap:
    """The one place where class indices change convention.

    Datasets and outputs use torchvision's ids: 0 is the background, objects are 1..K. Inside the
    heads the classifier follows detectron2: objects 0..K-1 and the background **last**, at K
    (``FastRCNNOutputLayers``: ``cls_score`` has K + 1 outputs, ``bbox_pred`` 4K, no background box),
    so weights map one-to-one onto detectron2's.
    """

    def __init__(self, num_classes: int):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.background = num_classes  # detectron2's index of the background class

    def to_head(self, labels: Tensor) -> Tensor:
        """Dataset labels 1..K -> head classes 0..K-1."""
        return labels - 1

    def to_dataset(self, classes: Tensor) -> Tensor:
        """Head classes 0..K-1 -> dataset labels 1..K."""
        return classes + 1


class MaskHead(nn.Module):
    """``MaskRCNNConvUpsampleHead`` with NUM_CONV 0 (C4): ConvTranspose 2x2 stride 2 + ReLU + 1x1 to K logits.

    On the 7x7 res5 features it predicts 14x14 class-specific masks (Mask R-CNN, Fig. 4 left: the
    C4 head's masks are 14x14). Init: deconv MSRA fill (kaiming normal, fan_out), predictor N(0, 0.001).
    """

    def __init__(self, in_channels: int, num_classes: int, dim: int = 256):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, dim, kernel_size=2, stride=2)
        self.predictor = nn.Conv2d(dim, num_classes, kernel_size=1)
        nn.init.kaiming_normal_(self.deconv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.deconv.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.predictor(F.relu(self.deconv(x)))


class BoxPredictor(nn.Module):
    """``FastRCNNOutputLayers``: class scores (K + 1, background last) and class-specific deltas (4K)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


def mask_targets(gt_masks: Tensor, boxes: Tensor, size: int) -> Tensor:
    """GT masks cropped to ``boxes`` at ``size`` x ``size``: ROIAlign (aligned) of the bit masks, then >= 0.5.

    detectron2 ``BitMasks.crop_and_resize``: ``ROIAlign((M, M), 1.0, 0, aligned=True)`` of the
    float masks, ``output >= 0.5``.
    """
    rois = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], boxes], dim=1)
    return roi_align(gt_masks[:, None].float(), rois, (size, size), 1.0, 0, True).squeeze(1) >= 0.5


def paste_masks(probs: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """[N, 1, M, M] mask probabilities pasted into [N, 1, H, W] images at ``boxes``, as detectron2 pastes them.

    detectron2 ``layers/mask_ops.py`` ``paste_masks_in_image`` / ``_do_paste_mask``: each image pixel
    centre (x + 0.5, y + 0.5) is mapped into the box ([-1, 1] across it) and the M x M mask is sampled
    there bilinearly (``grid_sample``, align_corners False, zeros outside); only the box's integer
    bounds widened by 1 px are filled (its CPU path, one mask at a time; its GPU path fills the whole
    image, which differs only below 0.5, so not after the 0.5 threshold). Returns probabilities:
    detectron2 rounds them to 1/255 or thresholds them, the evaluators threshold these at 0.5.
    """
    h, w = size
    out = probs.new_zeros((len(boxes), 1, h, w), dtype=torch.float32)
    for mask, box, slot in zip(probs.float(), boxes.float(), out):
        x0, y0, x1, y1 = (float(v) for v in box)
        left, top = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
        right, bottom = min(math.ceil(x1) + 1, w), min(math.ceil(y1) + 1, h)
        if right <= left or bottom <= top:
            continue
        gx = (torch.arange(left, right, dtype=torch.float32, device=box.device) + 0.5 - x0) / (x1 - x0) * 2 - 1
        gy = (torch.arange(top, bottom, dtype=torch.float32, device=box.device) + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack([gx[None, :].expand(len(gy), -1), gy[:, None].expand(-1, len(gx))], dim=2)
        slot[:, top:bottom, left:right] = F.grid_sample(mask[None], grid[None], align_corners=False)[0]
    return out


class Res5ROIHeads(nn.Module):
    """Pool 14x14 (ROIAlign aligned=True, sampling ratio 0) on res4, run res5 + extra norm, mean-pool, predict.

    Training: proposals + GT boxes, IoU 0.5 matching, 512 samples per image (25 % foreground),
    losses ``loss_cls`` (cross-entropy, mean) and ``loss_box_reg`` (L1 over foreground, class-specific,
    divided by the number of sampled ROIs); the mask head reuses the res5 features of the
    foreground samples. Test: softmax, per-class decode, clip, score > 0.05, per-class NMS 0.5,
    top 100; masks by re-pooling the final boxes through res5.
    """

    def __init__(self, res5: nn.Module, res5_channels: int, spatial_scale: float, labels, settings: RoiSettings,
                 mask_head: nn.Module | None = None):
        super().__init__()
        self.settings, self.labels = settings, labels
        res5.add_module("norm", nn.BatchNorm2d(res5_channels))  # MoCo Res5ROIHeadsExtraNorm (RESNETS.NORM)
        self.res5 = res5
        # torchvision's ROIAlign; on CPU its backward runs as matrix products (models/roi_align_cpu.py)
        self.pooler = RoIAlignCPU(settings.pooler_resolution, spatial_scale, sampling_ratio=0, aligned=True)
        self.box_predictor = BoxPredictor(res5_channels, labels.num_classes)
        self.mask_head = mask_head
        self.box_coder = det_utils.BoxCoder(settings.box_weights)
        self.proposal_matcher = det_utils.Matcher(settings.iou_threshold, settings.iou_threshold, False)
        self.sampler = det_utils.BalancedPositiveNegativeSampler(settings.batch_size_per_image,
                                                                 settings.positive_fraction)

    def shared_roi_transform(self, features: Tensor, boxes: list[Tensor]) -> Tensor:
        """res5(+norm) of the 14x14 pooled boxes: [R, C5, 7, 7]."""
        return self.res5(self.pooler(features, boxes))  # roi_align runs in fp32 under autocast

    def sample(self, proposals: list[Tensor], targets: list[dict]):
        """detectron2 ``label_and_sample_proposals``: per image (boxes, head classes with K = background,
        matched GT index) of the sampled ROIs, foreground first."""
        out = []
        for props, target in zip(proposals, targets):
            gt_boxes = target["boxes"].to(props.dtype)
            gt_classes = self.labels.to_head(target["labels"])
            boxes = torch.cat([props, gt_boxes])  # add_ground_truth_to_proposals: proposals, then GT
            if len(gt_boxes):
                matched = self.proposal_matcher(box_iou(gt_boxes, boxes))
                classes = gt_classes[matched.clamp(min=0)]
                classes = torch.where(matched >= 0, classes, torch.full_like(classes, self.labels.background))
            else:
                matched = torch.full((len(boxes),), -1, dtype=torch.int64, device=boxes.device)
                classes = torch.full_like(matched, self.labels.background)
            is_fg = (classes >= 0) & (classes < self.labels.background)
            pos, neg = self.sampler([torch.where(is_fg, 1, 0)])  # sampler: 1 positive, 0 negative
            keep = torch.cat([torch.where(pos[0])[0], torch.where(neg[0])[0]])
            out.append((boxes[keep], classes[keep], matched[keep].clamp(min=0), gt_boxes))
        return out

    def losses(self, logits: Tensor, deltas: Tensor, samples) -> dict[str, Tensor]:
        """``FastRCNNOutputLayers.losses``: CE (mean) and L1 box loss / number of sampled ROIs."""
        classes = torch.cat([s[1] for s in samples])
        targets = torch.cat([self.box_coder.encode_single(s[3][s[2]] if len(s[3]) else s[0], s[0]) for s in samples])
        fg = torch.where((classes >= 0) & (classes < self.labels.background))[0]
        per_class = deltas.view(len(deltas), -1, 4)[fg, classes[fg]]
        box_loss = F.l1_loss(per_class, targets[fg], reduction="sum") / max(classes.numel(), 1)
        return {"loss_cls": F.cross_entropy(logits, classes), "loss_box_reg": box_loss}

    def mask_loss(self, features: Tensor, samples, targets: list[dict]) -> Tensor:
        """``mask_rcnn_loss``: BCE (mean) of the GT class's logits against the cropped GT masks."""
        is_fg = [(s[1] < self.labels.background) for s in samples]
        fg_features = features[torch.cat(is_fg)]  # the res5 features of the box head: no second res5 pass
        logits = self.mask_head(fg_features).float()
        if len(fg_features) == 0:
            return logits.sum() * 0
        masks = torch.cat([mask_targets(t["masks"][s[2][f]], s[0][f], logits.shape[-1])
                           for s, f, t in zip(samples, is_fg, targets)])
        classes = torch.cat([s[1][f] for s, f in zip(samples, is_fg)])
        chosen = logits[torch.arange(len(logits), device=logits.device), classes]
        return F.binary_cross_entropy_with_logits(chosen, masks.float())

    def forward(self, features: Tensor, proposals: list[Tensor], image_sizes, targets: list[dict] | None = None):
        if self.training:
            samples = self.sample(proposals, targets)
            proposals = [s[0] for s in samples]
        box_features = self.shared_roi_transform(features, proposals)
        logits, deltas = self.box_predictor(box_features.mean(dim=(2, 3)))
        logits, deltas = logits.float(), deltas.float()
        if self.training:
            losses = self.losses(logits, deltas, samples)
            if self.mask_head is not None:
                losses["loss_mask"] = self.mask_loss(box_features, samples, targets)
            return losses
        detections = self.inference(logits, deltas, proposals, image_sizes)
        if self.mask_head is not None:
            self.predict_masks(features, detections)
        return detections

    def inference(self, logits: Tensor, deltas: Tensor, proposals: list[Tensor], image_sizes) -> list[dict]:
        """``fast_rcnn_inference``: per-class boxes and scores, score > thresh, per-class NMS, top-k."""
        s, k = self.settings, self.labels.num_classes
        boxes_all = self.box_coder.decode(deltas, proposals).view(len(deltas), k, 4)
        scores_all = F.softmax(logits, dim=-1)[:, :k]  # drop the background (last)
        out = []
        for boxes, scores, size in zip(boxes_all.split([len(p) for p in proposals]),
                                       scores_all.split([len(p) for p in proposals]), image_sizes):
            boxes = clip_boxes_to_image(boxes.reshape(-1, 4), size).view(-1, k, 4)
            finite = torch.isfinite(boxes).all(dim=(1, 2)) & torch.isfinite(scores).all(dim=1)
            boxes, scores = boxes[finite], scores[finite]
            roi, cls = torch.where(scores > s.score_thresh)
            boxes, scores = boxes[roi, cls], scores[roi, cls]
            keep = batched_nms(boxes, scores, cls, s.nms_thresh)[:s.detections_per_image]
            out.append({"boxes": boxes[keep], "scores": scores[keep], "classes": cls[keep]})
        return out

    def predict_masks(self, features: Tensor, detections: list[dict]) -> None:
        """``forward_with_given_boxes`` + ``mask_rcnn_inference``: sigmoid of the predicted class's mask."""
        boxes = [d["boxes"] for d in detections]
        if sum(len(b) for b in boxes) == 0:
            for d in detections:
                d["mask_probs"] = features.new_zeros((0, 1, 1, 1))
            return
        logits = self.mask_head(self.shared_roi_transform(features, boxes)).float()
        classes = torch.cat([d["classes"] for d in detections])
        probs = logits[torch.arange(len(logits), device=logits.device), classes][:, None].sigmoid()
        for d, p in zip(detections, probs.split([len(b) for b in boxes])):
            d["mask_probs"] = p

    def postprocess(self, detections: list[dict], image_sizes, output_sizes) -> list[dict]:
        """detectron2 ``detector_postprocess``: boxes scaled to ``output_sizes``, clipped, empty ones dropped
        (``Boxes.nonempty``: width and height > 0); masks pasted there (:func:`paste_masks`)."""
        results = []
        for d, (h, w), (oh, ow) in zip(detections, image_sizes, output_sizes):
            scale = torch.tensor([ow / w, oh / h, ow / w, oh / h], device=d["boxes"].device)
            boxes = clip_boxes_to_image(d["boxes"] * scale, (oh, ow))
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes = boxes[keep]
            result = {"boxes": boxes, "scores": d["scores"][keep], "labels": self.labels.to_dataset(d["classes"][keep])}
            if "mask_probs" in d:
                result["masks"] = paste_masks(d["mask_probs"][keep], boxes, (oh, ow))
            results.append(result)
        return results
