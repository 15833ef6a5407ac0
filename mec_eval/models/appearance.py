"""UniTrack's appearance model: a checkpoint's ResNet cut at layer3 or layer4, with layer3/layer4 strides 1.

UniTrack (Wang et al., NeurIPS 2021; github Zhongdao/UniTrack, ``model/model.py`` and the per-task
configs' ``remove_layers`` / ``model_type``) evaluates a frozen ImageNet-stem ResNet whose layer3 and
layer4 convolutions (downsample included) have stride 1 and no dilation, so the output stride is 8:
"layer3" removes layer4 (1024-d for ResNet-50), "layer4" keeps it (2048-d). avgpool and fc are dropped
and the ImageNet mean/std normalisation happens inside, so the model takes float RGB in [0, 1].

The same surgery on a CIFAR-stem ResNet (``resnet_tiny``, ``cifar_resnet18``: 3x3 stride-1 first
convolution, no max-pool) gives output stride 2, not 8; ``.stride`` is measured, and the heads work in
feature cells of ``.stride`` pixels, so they take either.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from mec_eval.utils import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _check_resnet(backbone: nn.Module) -> None:
    """UserError unless ``backbone`` has torchvision ResNet stages made of Basic/Bottleneck blocks."""
    missing = [name for name in _STAGES if not isinstance(getattr(backbone, name, None), nn.Module)]
    blocks_ok = not missing and all(
        isinstance(block, (BasicBlock, Bottleneck))
        for name in ("layer1", "layer2", "layer3", "layer4") for block in getattr(backbone, name).children())
    if missing or not blocks_ok:
        raise UserError(f"the UniTrack video tasks need a ResNet backbone (torchvision names conv1, bn1, "
                        f"layer1..layer4); {type(backbone).__name__} is not one: evaluate a ResNet checkpoint")


class AppearanceModel(nn.Module):
    """Frozen stride-reduced ResNet trunk; ``forward`` maps float [B, 3, H, W] in [0, 1] to features.

    The stages keep the backbone's attribute names, so ``state_dict()`` keys and values equal the
    checkpoint's for the kept layers (the normalisation buffers are not saved).
    """

    def __init__(self, backbone: nn.Module, layer: int):
        super().__init__()
        for name in _STAGES[:7 if layer == 3 else 8]:
            setattr(self, name, getattr(backbone, name))
        self.layer = layer
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        last = list(getattr(self, f"layer{layer}").children())[-1]
        self.out_channels = int((last.conv3 if isinstance(last, Bottleneck) else last.conv2).out_channels)
        self.eval()  # before the probe: a training-mode pass would move the BatchNorm running statistics
        self.stride = self._measure_stride()

    def _measure_stride(self, side: int = 64) -> int:
        with torch.no_grad():
            probe = torch.zeros(1, 3, side, side, device=self.mean.device)
            return side // int(self.forward(probe).shape[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.layer4(x) if self.layer == 4 else x


def build_appearance_model(backbone: nn.Module, layer: int) -> AppearanceModel:
    """The UniTrack model of ``backbone`` (left untouched: a copy is modified), cut after ``layer`` (3 or 4)."""
    if isinstance(layer, bool) or layer not in (3, 4):
        raise UserError(f"model.layer must be 3 or 4 (UniTrack's layer3 / layer4 features), got {layer!r}")
    _check_resnet(backbone)
    trunk = copy.deepcopy(backbone)
    for name in ("layer3", "layer4"):
        for module in getattr(trunk, name).modules():
            if isinstance(module, nn.Conv2d):
                # Stride 1 without dilation, as UniTrack does; padding stays, so sizes are kept.
                module.stride = (1, 1)
    model = AppearanceModel(trunk, layer)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model
