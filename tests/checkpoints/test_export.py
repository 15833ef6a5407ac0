"""detectron2 .pkl and torchvision exports: names, values, round trips, and the CLI's convert."""
import numpy as np
import pytest
import torch
import torchvision

from mec_eval.checkpoints import (
    convert_checkpoint,
    detectron2_to_torchvision,
    export_detectron2,
    export_torchvision,
    load_encoder,
    make_canonical,
    safe_pickle_load,
    safe_torch_load,
    save_canonical,
)
from mec_eval.checkpoints.export import detectron2_to_torchvision_name, torchvision_to_detectron2_name
from mec_eval.models import build_backbone
from mec_eval.utils import UserError


@pytest.fixture(scope="module")
def r50_state():
    gen = torch.Generator().manual_seed(0)
    state = build_backbone("resnet50").state_dict()
    return {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in state.items()}


@pytest.fixture(scope="module")
def r50_pkl(r50_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("d2") / "r50.pkl"
    export_detectron2(r50_state, path)
    return path


# MoCo's convert-pretrain-to-detectron2.py on these torchvision keys gives these detectron2 keys.
KNOWN_NAMES = {
    "conv1.weight": "stem.conv1.weight",
    "bn1.running_mean": "stem.conv1.norm.running_mean",
    "bn1.weight": "stem.conv1.norm.weight",
    "layer1.0.conv1.weight": "res2.0.conv1.weight",
    "layer1.0.bn2.running_var": "res2.0.conv2.norm.running_var",
    "layer1.0.downsample.0.weight": "res2.0.shortcut.weight",
    "layer1.0.downsample.1.weight": "res2.0.shortcut.norm.weight",
    "layer3.5.conv3.weight": "res4.5.conv3.weight",
    "layer4.2.bn3.bias": "res5.2.conv3.norm.bias",
}


@pytest.mark.parametrize("tv_name, d2_name", sorted(KNOWN_NAMES.items()))
def test_renaming_matches_the_moco_converter(tv_name, d2_name):
    assert torchvision_to_detectron2_name(tv_name) == d2_name
    assert detectron2_to_torchvision_name(d2_name) == tv_name


def test_resnet50_pkl_layout_and_values(r50_state, r50_pkl):
    data = safe_pickle_load(r50_pkl)
    assert data["__author__"] == "mec-eval" and data["matching_heuristics"] is True
    model = data["model"]
    assert len(model) == len(r50_state)
    for name in ("stem.conv1.weight", "stem.conv1.norm.running_mean", "res2.0.conv1.weight",
                 "res2.0.shortcut.norm.weight", "res5.2.conv3.norm.bias", "res4.5.conv2.norm.weight"):
        assert isinstance(model[name], np.ndarray), name
    assert not any("layer" in k or "bn" in k or "downsample" in k for k in model)
    for tv_name, d2_name in KNOWN_NAMES.items():
        np.testing.assert_array_equal(model[d2_name], r50_state[tv_name].numpy())


def test_resnet50_roundtrip_back_to_torchvision(r50_state, r50_pkl):
    back = detectron2_to_torchvision(safe_pickle_load(r50_pkl)["model"])
    assert set(back) == set(r50_state)
    assert all(torch.equal(back[k], v) for k, v in r50_state.items())
    enc = load_encoder(str(r50_pkl))
    assert (enc.layout, enc.arch, enc.feature_dim) == ("detectron2", "resnet50", 2048)
    assert torch.equal(enc.backbone.state_dict()["layer4.2.bn3.bias"], r50_state["layer4.2.bn3.bias"])


def test_detectron2_checkpointer_reads_the_pkl(r50_state, r50_pkl):
    pytest.importorskip("detectron2", reason="detectron2 is an optional backend (not on PyPI); build it from "
                        "source to check that its checkpointer reads our .pkl")
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone as d2_build_backbone

    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False  # torchvision layout, as the MoCo detection configs set
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    backbone = d2_build_backbone(cfg)
    DetectionCheckpointer(backbone).load(str(r50_pkl))
    loaded = backbone.state_dict()
    assert torch.equal(loaded["stem.conv1.weight"], r50_state["conv1.weight"])
    assert torch.equal(loaded["res5.2.conv3.norm.bias"], r50_state["layer4.2.bn3.bias"])


def test_export_torchvision_is_a_plain_state_dict(tmp_path):
    model = build_backbone("resnet18")
    export_torchvision(model, tmp_path / "r18.pth")
    state = safe_torch_load(tmp_path / "r18.pth")
    assert not any(k.startswith("fc.") for k in state)
    reference = torchvision.models.resnet18(weights=None)
    reference.fc = torch.nn.Identity()
    reference.load_state_dict(state)  # strict: every torchvision key but the classifier is there
    assert torch.equal(reference.layer4[1].bn2.running_var, model.layer4[1].bn2.running_var)
    assert load_encoder(str(tmp_path / "r18.pth")).layout == "torchvision"


@pytest.mark.parametrize("target, layout_after", [("detectron2", "detectron2"), ("torchvision", "torchvision"),
                                                  ("canonical", "mec-eval")])
def test_convert_checkpoint(target, layout_after, tmp_path):
    source = tmp_path / "src.pt"
    state = build_backbone("resnet_tiny").state_dict()
    save_canonical(make_canonical("resnet_tiny", state, meta={"method": "mec"}), source)
    out = tmp_path / ("out.pkl" if target == "detectron2" else "out.pt")
    assert convert_checkpoint(str(source), target, out) == "mec-eval"
    enc = load_encoder(str(out))
    assert enc.layout == layout_after
    assert all(torch.equal(enc.backbone.state_dict()[k], v) for k, v in state.items())


def test_convert_random_init_and_bad_target(tmp_path):
    assert convert_checkpoint("random:resnet_tiny", "detectron2", tmp_path / "rand.pkl") == "random"
    reference = load_encoder("random:resnet_tiny").backbone.state_dict()
    assert torch.equal(load_encoder(str(tmp_path / "rand.pkl")).backbone.state_dict()["conv1.weight"],
                       reference["conv1.weight"])
    with pytest.raises(UserError, match="unknown conversion target"):
        convert_checkpoint("random:resnet_tiny", "onnx", tmp_path / "x")
