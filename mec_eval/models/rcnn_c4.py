"""Faster / Mask R-CNN R50-C4 as detectron2 builds it (MoCo detection protocol), on torchvision's detection API.

The network is detectron2's ``GeneralizedRCNN`` with a C4 backbone (``Base-RCNN-C4-BN.yaml`` of
facebookresearch/moco ``detection/configs``): stem + res2..res4 of a checkpoint's ResNet (stride 16,
1024 channels for ResNet-50), an RPN on that one map, and :class:`~mec_eval.models.rcnn_heads.Res5ROIHeads`
(res5 = the checkpoint's ``layer4`` as the shared ROI head, plus MoCo's extra norm). Every number
below is a detectron2 default (``detectron2/config/defaults.py``) unless it says otherwise.

Images enter as float tensors [3, H, W] in [0, 1], already resized (the task resizes, as detectron2's
data mapper does); the model normalises them with the torchvision mean / std (MoCo's SSL
``PIXEL_MEAN`` / ``PIXEL_STD``, RGB) and pads the batch to a multiple of 32 with zeros
(``SIZE_DIVISIBILITY`` 32 of the C4 configs; ``ImageList.from_tensors`` pads the normalised image).
"""
from __future__ import annotations

import copy
import math
import re
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import (
    RegionProposalNetwork,
    RPNHead,
    concat_box_prediction_layers,
)

from mec_eval.models.rcnn_heads import LabelMap, MaskHead, Res5ROIHeads, RoiSettings

PIXEL_MEAN = (0.485, 0.456, 0.406)  # = MoCo's PIXEL_MEAN [123.675, 116.28, 103.53] / 255
PIXEL_STD = (0.229, 0.224, 0.225)   # = PIXEL_STD [58.395, 57.12, 57.375] / 255
SIZE_DIVISIBILITY = 32


@dataclass(frozen=True)
class RpnSettings:
    """detectron2 ``MODEL.RPN`` / ``MODEL.ANCHOR_GENERATOR`` defaults (C4: one map, stride 16, offset 0)."""
    anchor_sizes: tuple = (32, 64, 128, 256, 512)
    aspect_ratios: tuple = (0.5, 1.0, 2.0)
    iou_thresholds: tuple = (0.3, 0.7)       # below: background, above: foreground, between: ignored
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    nms_thresh: float = 0.7
    pre_nms_topk_train: int = 12000
    pre_nms_topk_test: int = 6000           # Base-RCNN-C4: PRE_NMS_TOPK_TEST 6000
    post_nms_topk_train: int = 2000
    post_nms_topk_test: int = 1000


class Detectron2Anchors(AnchorGenerator):
    """torchvision's anchor grid with detectron2's cell anchors: sizes outer, ratios inner, not rounded.

    detectron2 ``DefaultAnchorGenerator.generate_cell_anchors``: for each size s and ratio a,
    w = sqrt(s^2 / a), h = a * w, anchor (-w/2, -h/2, w/2, h/2); shifts start at 0 (OFFSET 0).
    torchvision orders ratios outer and rounds the corners, which would change both the boxes and
    which RPN output channel predicts which anchor.
    """

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device=None) -> Tensor:
        cells = []
        for size in scales:
            for ratio in aspect_ratios:
                w = math.sqrt(size ** 2 / ratio)
                h = ratio * w
                cells.append([-w / 2, -h / 2, w / 2, h / 2])
        return torch.tensor(cells, dtype=dtype, device=device)


class Detectron2RPN(RegionProposalNetwork):
    """torchvision's RPN with detectron2's losses: the head outputs are decoded and scored in fp32, the
    box loss is L1 (smooth-L1 with beta 0) and both losses are sums divided by 256 x images.

    detectron2 ``RPN.losses``: ``normalizer = batch_size_per_image * num_images`` (the nominal
    sample count, not the number actually sampled), BCE and L1 summed over the sampled anchors.
    """

    def compute_loss(self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(sampled_pos, dim=0))[0]
        sampled = torch.cat([pos, torch.where(torch.cat(sampled_neg, dim=0))[0]])
        objectness = objectness.flatten()
        labels, regression_targets = torch.cat(labels, dim=0), torch.cat(regression_targets, dim=0)
        normalizer = self.fg_bg_sampler.batch_size_per_image * len(sampled_pos)
        box_loss = F.l1_loss(pred_bbox_deltas[pos], regression_targets[pos], reduction="sum") / normalizer
        cls_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled],
                                                      reduction="sum") / normalizer
        return cls_loss, box_loss

    def forward(self, images: ImageList, features: dict[str, Tensor], targets=None):
        maps = list(features.values())
        objectness, deltas = self.head(maps)
        anchors = self.anchor_generator(images, maps)
        per_level = [o[0].numel() for o in objectness]
        # fp32 from here on: under autocast the proposals would otherwise be decoded in half precision
        objectness, deltas = concat_box_prediction_layers([o.float() for o in objectness], [d.float() for d in deltas])
        proposals = self.box_coder.decode(deltas.detach(), anchors).view(len(anchors), -1, 4)
        boxes, _scores = self.filter_proposals(proposals, objectness, images.image_sizes, per_level)
        losses = {}
        if self.training:
            labels, matched = self.assign_targets_to_anchors(anchors, targets)
            cls_loss, box_loss = self.compute_loss(objectness, deltas, labels, self.box_coder.encode(matched, anchors))
            losses = {"loss_rpn_cls": cls_loss, "loss_rpn_loc": box_loss}  # detectron2's names
        return boxes, losses


def _out_channels(stage: nn.Module) -> int:
    """Output width of a torchvision ResNet stage (its last block's last norm)."""
    last = list(stage.children())[-1]
    norm = getattr(last, "bn3", None) or last.bn2
    return int(norm.num_features)


C4_STRIDE = 16  # detectron2 R50-C4: res4 at 1/16 (the anchors' and the pooler's stride)


def _measured_stride(trunk: nn.Module) -> int:
    probe = torch.zeros(1, 3, 64, 64)
    was_training = trunk.training
    with torch.no_grad():
        stride = 64 // trunk.eval()(probe).shape[-1]
    trunk.train(was_training)
    return int(stride)


def _imagenet_stem_strides(trunk: nn.Module) -> None:
    """Give a CIFAR stem (3x3 conv stride 1, no max-pool) the strides of torchvision's ImageNet stem.

    conv1 strides 2 and a 3x3 stride-2 max-pool follows (``torchvision.models.resnet``), so res4 sits at
    1/16 as the C4 protocol wants; the weights are unchanged (a stride is not a parameter). On the
    128-192 px cpu-small images this also shows layer1 a 32-48 px map, the scale a 32-px pre-training saw.
    """
    trunk.conv1.stride = (2, 2)
    trunk.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


def c4_backbone(resnet: nn.Module) -> tuple[nn.Module, nn.Module, int, int]:
    """(res4 trunk = stem + layer1..3, res5 = a copy of layer4, res4 channels, res4 stride 16) of a torchvision ResNet.

    A CIFAR-stem ResNet (``resnet_tiny``, ``cifar_resnet18``: res4 at 1/4) gets the ImageNet stem's
    strides (:func:`_imagenet_stem_strides`). Raises ValueError for a model without the ResNet stages
    (a ViT, for instance) or whose res4 stride cannot be made 16.
    """
    names = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    if not all(isinstance(getattr(resnet, n, None), nn.Module) for n in names):
        raise ValueError("the C4 detector needs a ResNet backbone (conv1, bn1, layer1..layer4)")
    # named like torchvision's ResNet, so checkpoint keys and detectron2 names map one-to-one
    trunk = nn.Sequential(OrderedDict((n, copy.deepcopy(getattr(resnet, n))) for n in names[:-1]))
    res5 = copy.deepcopy(resnet.layer4)
    stride = _measured_stride(trunk)
    cifar_stem = trunk.conv1.stride == (1, 1) and isinstance(trunk.maxpool, nn.Identity)
    if stride * 4 == C4_STRIDE and cifar_stem:
        _imagenet_stem_strides(trunk)
        stride = _measured_stride(trunk)
    if stride != C4_STRIDE:
        raise ValueError(f"the C4 detector needs res4 at stride {C4_STRIDE}; this ResNet has stride {stride}")
    return trunk, res5, _out_channels(resnet.layer3), stride


class RCNNC4(nn.Module):
    """Faster R-CNN (``mask_on=False``) or Mask R-CNN R50-C4, detectron2's computations on torchvision parts.

    ``forward(images, targets)`` in training returns detectron2's loss dict (loss_rpn_cls,
    loss_rpn_loc, loss_cls, loss_box_reg, loss_mask); in eval mode one dict per image with
    ``boxes`` [N, 4] XYXY, ``scores``, ``labels`` (1..K, the dataset's ids) and, with masks,
    ``masks`` [N, 1, H, W] probabilities, in the coordinates of ``output_sizes`` (default: the inputs').
    """

    def __init__(self, resnet: nn.Module, num_classes: int, mask_on: bool = False,
                 rpn: RpnSettings | None = None, roi: RoiSettings | None = None, mask_dim: int = 256):
        super().__init__()
        rpn, roi = rpn or RpnSettings(), roi or RoiSettings()
        trunk, res5, channels, stride = c4_backbone(resnet)
        self.backbone, self.stride, self.labels = trunk, stride, LabelMap(num_classes)
        anchors = Detectron2Anchors((tuple(rpn.anchor_sizes),), (tuple(rpn.aspect_ratios),))
        low, high = rpn.iou_thresholds
        self.rpn = Detectron2RPN(
            anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]), high, low, rpn.batch_size_per_image,
            rpn.positive_fraction, {"training": rpn.pre_nms_topk_train, "testing": rpn.pre_nms_topk_test},
            {"training": rpn.post_nms_topk_train, "testing": rpn.post_nms_topk_test}, rpn.nms_thresh)
        # detectron2 MIN_SIZE 0 keeps boxes of positive width and height (Boxes.nonempty: > 0); torchvision's
        # remove_small_boxes keeps >= min_size, so 0.0 would keep empty (clipped) boxes: the smallest positive float
        self.rpn.min_size = torch.finfo(torch.float32).tiny
        res5_channels = _out_channels(res5)
        mask_head = MaskHead(res5_channels, num_classes, mask_dim) if mask_on else None
        self.roi_heads = Res5ROIHeads(res5, res5_channels, 1.0 / stride, self.labels, roi, mask_head)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(3, 1, 1), persistent=False)

    @property
    def mask_on(self) -> bool:
        return self.roi_heads.mask_head is not None

    def preprocess(self, images: list[Tensor]) -> ImageList:
        """Normalise each image and pad the batch (bottom / right, zeros) to a multiple of 32."""
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        height = math.ceil(max(h for h, _ in sizes) / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
        width = math.ceil(max(w for _, w in sizes) / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY
        batch = images[0].new_zeros((len(images), 3, height, width))
        for slot, image in zip(batch, images):
            slot[:, :image.shape[-2], :image.shape[-1]].copy_((image - self.pixel_mean) / self.pixel_std)
        return ImageList(batch, sizes)

    def forward(self, images: list[Tensor], targets: list[dict] | None = None,
                output_sizes: list[tuple[int, int]] | None = None):
        if self.training and targets is None:
            raise ValueError("training needs targets (boxes and labels 1..K per image)")
        batch = self.preprocess(images)
        features = self.backbone(batch.tensors)
        proposals, rpn_losses = self.rpn(batch, {"res4": features}, targets)
        if self.training:
            return {**rpn_losses, **self.roi_heads(features, proposals, batch.image_sizes, targets)}
        detections = self.roi_heads(features, proposals, batch.image_sizes)
        return self.roi_heads.postprocess(detections, batch.image_sizes, output_sizes or batch.image_sizes)


def norm_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(parameters of normalisation layers, all others): detectron2 gives the first WEIGHT_DECAY_NORM (0.0).

    detectron2 ``get_default_optimizer_params``: norm weights and biases get ``WEIGHT_DECAY_NORM``;
    other biases ``WEIGHT_DECAY_BIAS``, which defaults to ``WEIGHT_DECAY`` (``solver/build.py``).
    """
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    norm_ids = {id(p) for m in model.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)}
    params = [p for p in model.parameters() if p.requires_grad]
    return [p for p in params if id(p) in norm_ids], [p for p in params if id(p) not in norm_ids]


# (engine name, detectron2 name) patterns; applied in order, reversed for the other direction. detectron2
# ResNet: stem.conv1 (+ .norm), res2..res5 blocks with convK.norm and shortcut (+ .norm), as
# moco/detection/convert-pretrain-to-detectron2.py renames torchvision keys.
_D2_NAMES = (
    (r"^backbone\.conv1\.", "backbone.stem.conv1."),
    (r"^backbone\.bn1\.", "backbone.stem.conv1.norm."),
    (r"^backbone\.layer1\.", "backbone.res2."),
    (r"^backbone\.layer2\.", "backbone.res3."),
    (r"^backbone\.layer3\.", "backbone.res4."),
    (r"^(backbone\.res\d|roi_heads\.res5)\.(\d+)\.bn(\d)\.", r"\1.\2.conv\3.norm."),
    (r"^(backbone\.res\d|roi_heads\.res5)\.(\d+)\.downsample\.0\.", r"\1.\2.shortcut."),
    (r"^(backbone\.res\d|roi_heads\.res5)\.(\d+)\.downsample\.1\.", r"\1.\2.shortcut.norm."),
    (r"^rpn\.head\.conv\.0\.0\.", "proposal_generator.rpn_head.conv."),
    (r"^rpn\.head\.cls_logits\.", "proposal_generator.rpn_head.objectness_logits."),
    (r"^rpn\.head\.bbox_pred\.", "proposal_generator.rpn_head.anchor_deltas."),
)
_D2_REVERSE = (
    (r"^backbone\.stem\.conv1\.norm\.", "backbone.bn1."),
    (r"^backbone\.stem\.conv1\.", "backbone.conv1."),
    (r"^(backbone\.res\d|roi_heads\.res5)\.(\d+)\.conv(\d)\.norm\.", r"\1.\2.bn\3."),
    (r"^(backbone\.res\d|roi_heads\.res5)\.(\d+)\.shortcut\.norm\.", r"\1.\2.downsample.1."),
    (r"^(backbone\.res\d|roi_heads\.res5)\.(\d+)\.shortcut\.", r"\1.\2.downsample.0."),
    (r"^backbone\.res2\.", "backbone.layer1."),
    (r"^backbone\.res3\.", "backbone.layer2."),
    (r"^backbone\.res4\.", "backbone.layer3."),
    (r"^proposal_generator\.rpn_head\.conv\.", "rpn.head.conv.0.0."),
    (r"^proposal_generator\.rpn_head\.objectness_logits\.", "rpn.head.cls_logits."),
    (r"^proposal_generator\.rpn_head\.anchor_deltas\.", "rpn.head.bbox_pred."),
)


def _rename(state_dict: dict, rules) -> dict:
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def to_detectron2_names(state_dict: dict) -> dict:
    """An :class:`RCNNC4` state dict under detectron2's R50-C4 parameter names (same tensors)."""
    return _rename(state_dict, _D2_NAMES)


def from_detectron2_names(state_dict: dict) -> dict:
    """The inverse of :func:`to_detectron2_names` (detectron2's R50-C4 names -> this engine's)."""
    return _rename(state_dict, _D2_REVERSE)


__all__ = ["C4_STRIDE", "PIXEL_MEAN", "PIXEL_STD", "RCNNC4", "Detectron2Anchors", "Detectron2RPN", "RoiSettings", "RpnSettings",
           "c4_backbone", "from_detectron2_names", "norm_parameters", "to_detectron2_names"]
