"""ResNet backbones with torchvision parameter names and the classifier removed.

Every backbone keeps torchvision's attribute names (``conv1``, ``bn1``, ``layer1``..``layer4``), so one
state-dict layout (the canonical checkpoint's ``backbone``) serves all of them, and ``fc`` is an
``nn.Identity`` so ``forward`` returns the pooled feature. ``feature_dim`` tells its width.
"""
from __future__ import annotations

from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock, ResNet

from mec_eval.registry import Registry

BACKBONES: Registry = Registry("backbone architecture")


def _headless(model: ResNet, feature_dim: int) -> ResNet:
    model.fc = nn.Identity()
    model.feature_dim = feature_dim
    return model


@BACKBONES.register("resnet50", help="torchvision ResNet-50 (2048-d), the paper's ImageNet backbone")
def build_resnet50() -> ResNet:
    # zero_init_residual as in the official MEC builder (mec/builder.py).
    return _headless(resnet50(weights=None, zero_init_residual=True), 2048)


@BACKBONES.register("resnet18", help="torchvision ResNet-18 (512-d), ImageNet stem")
def build_resnet18() -> ResNet:
    return _headless(resnet18(weights=None, zero_init_residual=True), 512)


def _cifar_stem(model: ResNet, width: int) -> ResNet:
    """3x3 stride-1 first convolution and no max-pool (MEC App. B, after SimSiam's CIFAR ResNet)."""
    model.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@BACKBONES.register("cifar_resnet18", help="ResNet-18 with a 3x3 stem and no max-pool (MEC App. B, 32x32 inputs)")
def build_cifar_resnet18() -> ResNet:
    return _headless(_cifar_stem(resnet18(weights=None, zero_init_residual=True), 64), 512)


class TinyResNet(ResNet):
    """A CPU-friendly ResNet: one BasicBlock per stage, widths 32-64-128-256, CIFAR stem.

    Same module names as torchvision's ResNet, about 1.2 M parameters; meant for the embedded
    32x32 datasets, where a full ResNet-18 costs 8x more per image for little gain.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 128, 256)):
        super().__init__(BasicBlock, [1, 1, 1, 1], zero_init_residual=True)
        # Rebuild the stages at the narrower widths; ResNet.__init__ hard-codes 64..512.
        self.inplanes = widths[0]
        _cifar_stem(self, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = self._make_layer(BasicBlock, widths[0], 1)
        self.layer2 = self._make_layer(BasicBlock, widths[1], 1, stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], 1, stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], 1, stride=2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)


@BACKBONES.register("resnet_tiny", help="1-block-per-stage ResNet, widths 32..256 (256-d), CPU default for embedded data")
def build_resnet_tiny() -> ResNet:
    return _headless(TinyResNet(), 256)


def _register_vit(name: str, size: str, img_size: int, patch_size: int, help: str) -> None:
    def build() -> nn.Module:
        # Imported here: timm loads only when a ViT is built.
        from mec_eval.models.vit import ViTEncoder, vit_spec

        return ViTEncoder(vit_spec(size, img_size, patch_size))

    BACKBONES.register(name, help=help)(build)


# ViTs (models/vit.py): ``vit_<size>`` is the 224 px, 16 px-patch model of MAE / DINO / timm;
# ``vit_<size>_p4`` takes 32 px images in 4 px patches (8x8 = 64 tokens), for the embedded CPU sets.
for _size, _dims in (("tiny", "192-d, 12 blocks, 3 heads"), ("small", "384-d, 12 blocks, 6 heads"),
                     ("base", "768-d, 12 blocks, 12 heads"), ("large", "1024-d, 24 blocks, 16 heads")):
    _register_vit(f"vit_{_size}", _size, 224, 16, f"ViT-{_size.title()}/16 at 224 px ({_dims}), CLS feature")
for _size in ("tiny", "small"):
    _register_vit(f"vit_{_size}_p4", _size, 32, 4, f"ViT-{_size.title()} with 4 px patches at 32 px (64 tokens), "
                  "for the embedded sets on CPU")


def build_backbone(arch: str) -> nn.Module:
    """Instantiate a registered backbone with random weights; ``.feature_dim`` is its output width."""
    return BACKBONES.get(arch)()
