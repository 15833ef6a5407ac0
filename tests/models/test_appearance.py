"""UniTrack appearance model: output stride, channels, unchanged weights, refusal of non-ResNets."""
import pytest
import torch
from torch import nn

from mec_eval.models import build_backbone
from mec_eval.models.appearance import build_appearance_model
from mec_eval.utils import UserError


@pytest.mark.parametrize("arch,channels,stride", [pytest.param("resnet50", (1024, 2048), 8, marks=pytest.mark.slow),
                                                  ("resnet18", (256, 512), 8), ("resnet_tiny", (128, 256), 2)])
def test_stride_and_channels(arch, channels, stride):
    backbone = build_backbone(arch)
    for layer, width in zip((3, 4), channels):
        model = build_appearance_model(backbone, layer)
        with torch.no_grad():
            out = model(torch.rand(1, 3, 64, 96))
        assert model.stride == stride and model.out_channels == width
        assert out.shape == (1, width, 64 // stride, 96 // stride)
    # The caller's backbone is left as it was (a copy is modified).
    assert backbone.layer3[0].conv1.stride in ((1, 1), (2, 2)) and backbone.layer4[0].downsample[0].stride == (2, 2)


def test_layer3_layer4_convs_stride_one_no_dilation():
    model = build_appearance_model(build_backbone("resnet50"), 4)
    for name in ("layer3", "layer4"):
        for conv in getattr(model, name).modules():
            if isinstance(conv, nn.Conv2d):
                assert conv.stride == (1, 1) and conv.dilation == (1, 1)
    assert model.layer2[0].conv2.stride == (2, 2)


def test_weights_unchanged():
    backbone = build_backbone("resnet50")
    with torch.no_grad():  # non-trivial BN statistics, so a reset would show
        for module in backbone.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    reference = backbone.state_dict()
    for layer in (3, 4):
        state = build_appearance_model(backbone, layer).state_dict()
        kept = [k for k in reference if not k.startswith("fc.") and (layer == 4 or not k.startswith("layer4."))]
        assert sorted(state) == sorted(kept)
        assert all(torch.equal(state[k], reference[k]) for k in kept)


def test_normalisation_inside():
    model = build_appearance_model(build_backbone("resnet_tiny"), 3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        manual = model.layer3(model.layer2(model.layer1(model.relu(model.bn1(model.conv1((x - mean) / std))))))
        assert torch.allclose(model(x), manual, atol=1e-5)


def test_refuses_non_resnets_and_bad_layer():
    vit = pytest.importorskip("torchvision.models").vit_b_16(weights=None, image_size=32)
    with pytest.raises(UserError, match="ResNet"):
        build_appearance_model(vit, 3)
    with pytest.raises(UserError, match="ResNet"):
        build_appearance_model(nn.Linear(2, 2), 4)
    for bad in (2, 5, "3", True):
        with pytest.raises(UserError, match="model.layer"):
            build_appearance_model(build_backbone("resnet_tiny"), bad)
