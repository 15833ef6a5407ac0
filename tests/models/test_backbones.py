import pytest
import torch

from mec_eval.models import BACKBONES, build_backbone
from mec_eval.utils import UserError


@pytest.mark.parametrize("arch,dim,size", [("resnet_tiny", 256, 32), ("cifar_resnet18", 512, 32), ("resnet18", 512, 64)])
def test_feature_dims(arch, dim, size):
    model = build_backbone(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, dim) and model.feature_dim == dim


@torch.no_grad()
def feature_map_shapes(model, image_size):
    """Stage output shapes, walked through torchvision's ResNet attributes."""
    x = model.eval().maxpool(model.relu(model.bn1(model.conv1(torch.zeros(1, 3, image_size, image_size)))))
    shapes = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        x = getattr(model, name)(x)
        shapes[name] = tuple(x.shape[1:])
    return shapes


def test_cifar_stem_keeps_resolution():
    shapes = feature_map_shapes(build_backbone("cifar_resnet18"), 32)
    assert shapes["layer1"] == (64, 32, 32) and shapes["layer4"] == (512, 4, 4)
    tv = feature_map_shapes(build_backbone("resnet18"), 64)
    assert tv["layer1"] == (64, 16, 16)


def test_resnet50_has_torchvision_names_and_no_fc():
    keys = set(build_backbone("resnet50").state_dict())
    assert "layer4.2.conv3.weight" in keys and "layer1.0.downsample.1.running_var" in keys
    assert not any(k.startswith("fc.") for k in keys)


def test_unknown_arch():
    with pytest.raises(UserError, match="resnet50"):
        build_backbone("resnet5")
    assert "resnet_tiny" in BACKBONES.names()
