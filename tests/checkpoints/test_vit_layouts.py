"""ViT checkpoints: MAE / U-MAE / M-MAE, DINO ViT, timm and canonical layouts load strictly, give the same features."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import timm
import torch

from mec_eval.checkpoints import (
    load_encoder,
    make_canonical,
    require_resnet,
    save_canonical,
)
from mec_eval.models import build_backbone
from mec_eval.models.mae import MaskedAutoencoder
from mec_eval.utils import UserError

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def mae_net():
    torch.manual_seed(1)
    net = MaskedAutoencoder(build_backbone("vit_tiny_p4"), 0.75, 64, 1, 4)
    with torch.no_grad():  # a non-zero CLS / position table, so a wrong key shows in the features
        net.backbone.cls_token.normal_()
        net.backbone.pos_embed.normal_()
    return net.eval()


def _features(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(X)


def _assert_same(encoder, reference) -> None:
    got, ref = encoder.backbone.state_dict(), reference.state_dict()
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    torch.testing.assert_close(_features(encoder.backbone), _features(reference))


def _mae_file(net, **extra) -> dict:
    """main_pretrain.py's misc.save_model: {'model': encoder + decoder_* + mask_token, 'epoch', 'args', ...}."""
    model = {**net.backbone.state_dict(), **net.decoder.state_dict()}
    return {"model": model, "optimizer": {}, "epoch": 199, **extra}


@pytest.mark.parametrize("reg,method", [("none", "mae"), ("spectral", "umae"), ("TCR", "mmae")])
def test_mae_layouts(tmp_path, mae_net, reg, method):
    path = tmp_path / "checkpoint-199.pth"
    args = argparse.Namespace(model="mae_vit_tiny_patch4", reg=reg, mask_ratio=0.75)
    torch.save(_mae_file(mae_net, args=args), path)
    enc = load_encoder(str(path))
    assert (enc.layout, enc.arch, enc.method, enc.epoch) == ("mae", "vit_tiny_p4", method, 199)
    assert any("decoder tensors" in note for note in enc.notes)
    _assert_same(enc, mae_net.backbone)


def test_mae_online_classifier_is_a_head(tmp_path, mae_net):
    """U-MAE / M-MAE train a detached online linear classifier ``fc``: kept as a head, not in the backbone."""
    file = _mae_file(mae_net)
    file["model"].update({"fc.weight": torch.randn(10, 192), "fc.bias": torch.zeros(10)})
    torch.save(file, tmp_path / "umae.pth")
    enc = load_encoder(str(tmp_path / "umae.pth"))
    assert enc.method is None  # no args: the method is not stated
    _assert_same(enc, mae_net.backbone)


def test_released_encoder_only_mae_weights(tmp_path, mae_net):
    torch.save({"model": mae_net.backbone.state_dict()}, tmp_path / "mae_pretrain_vit_tiny.pth")
    enc = load_encoder(str(tmp_path / "mae_pretrain_vit_tiny.pth"))
    assert enc.layout == "mae" and not any("decoder" in n for n in enc.notes)
    _assert_same(enc, mae_net.backbone)


def test_dino_vit_teacher(tmp_path, mae_net):
    teacher = {f"module.backbone.{k}": v for k, v in mae_net.backbone.state_dict().items()}
    teacher["module.head.last_layer.weight_g"] = torch.ones(65536, 1)
    student = {k: v + 1.0 for k, v in teacher.items()}
    torch.save({"teacher": teacher, "student": student, "epoch": 100, "args": argparse.Namespace(arch="vit_tiny")},
               tmp_path / "checkpoint.pth")
    enc = load_encoder(str(tmp_path / "checkpoint.pth"))
    assert (enc.layout, enc.method, enc.epoch) == ("dino-vit", "dino", 100)
    _assert_same(enc, mae_net.backbone)


def test_timm_vit_weights(tmp_path):
    """A real timm vit_tiny_patch16_224 state dict (with its classifier), flat and in a train.py wrapper."""
    torch.manual_seed(2)
    ref = timm.create_model("vit_tiny_patch16_224", num_classes=10).eval()
    torch.save(ref.state_dict(), tmp_path / "flat.pth")
    torch.save({"epoch": 3, "arch": "vit_tiny_patch16_224", "state_dict": ref.state_dict(),
                "state_dict_ema": {k: v.clone() for k, v in ref.state_dict().items()}}, tmp_path / "train.pth.tar")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = ref.forward_head(ref.forward_features(x), pre_logits=True)
    for name, wrapper_note in (("flat.pth", None), ("train.pth.tar", "state_dict_ema")):
        enc = load_encoder(str(tmp_path / name))
        assert (enc.layout, enc.arch) == ("timm-vit", "vit_tiny")
        assert any("classifier" in n for n in enc.notes)
        assert wrapper_note is None or any(wrapper_note in n for n in enc.notes)
        with torch.no_grad():
            torch.testing.assert_close(enc.backbone(x), expected, rtol=0, atol=1e-5)


def test_our_canonical_vit(tmp_path, mae_net):
    save_canonical(make_canonical("vit_tiny_p4", mae_net.backbone.state_dict(), meta={"method": "mmae"}),
                   tmp_path / "ours.pt")
    enc = load_encoder(str(tmp_path / "ours.pt"))
    assert (enc.layout, enc.arch, enc.arch_source) == ("mec-eval", "vit_tiny_p4", "checkpoint file")
    _assert_same(enc, mae_net.backbone)


def test_truncated_vit_lists_the_missing_keys(tmp_path, mae_net):
    state = {k: v for k, v in mae_net.backbone.state_dict().items() if not k.startswith("blocks.11.")}
    torch.save({"model": state}, tmp_path / "short.pth")
    with pytest.raises(UserError, match=r"12 missing \(blocks\.11\.") as err:
        load_encoder(str(tmp_path / "short.pth"), arch="vit_tiny_p4")
    assert "\n" not in str(err.value)


def test_wrong_size_vit_is_a_shape_error(tmp_path, mae_net):
    torch.save({"model": mae_net.backbone.state_dict()}, tmp_path / "p4.pth")
    with pytest.raises(UserError, match="wrong shape.*patch_embed.proj.weight|wrong shape.*pos_embed"):
        load_encoder(str(tmp_path / "p4.pth"), arch="vit_tiny")


def test_truncated_file(tmp_path, mae_net):
    path = tmp_path / "cut.pth"
    torch.save(_mae_file(mae_net), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError):
        load_encoder(str(path))


def test_non_tensor_vit_entries_are_not_read_as_mae(tmp_path):
    torch.save({"model": {"cls_token": [1.0], "pos_embed": 2, "patch_embed.proj.weight": "x"}}, tmp_path / "odd.pth")
    with pytest.raises(UserError, match="unrecognised checkpoint layout"):
        load_encoder(str(tmp_path / "odd.pth"))


def test_resnet_files_keep_their_layouts(tmp_path):
    torch.save(build_backbone("resnet_tiny").state_dict(), tmp_path / "r.pth")
    torch.save({"model": build_backbone("resnet_tiny").state_dict()}, tmp_path / "m.pth")
    assert load_encoder(str(tmp_path / "r.pth")).layout == "torchvision"
    assert load_encoder(str(tmp_path / "m.pth")).layout == "timm"


def test_require_resnet():
    require_resnet(load_encoder("random:resnet_tiny"), "voc07")
    with pytest.raises(UserError, match="task 'sot' needs a ResNet backbone.*vit_tiny_p4") as err:
        require_resnet(load_encoder("random:vit_tiny_p4"), "sot")
    assert "\n" not in str(err.value)


def test_vit_detectors_are_mutually_exclusive(mae_net):
    """Each ViT layout object is detected by exactly one of all registered layouts (ResNet ones included)."""
    from mec_eval.checkpoints import LAYOUTS

    encoder = mae_net.backbone.state_dict()
    objects = {
        "mae": _mae_file(mae_net),
        "dino-vit": {"teacher": {f"backbone.{k}": v for k, v in encoder.items()},
                     "student": {f"backbone.{k}": v for k, v in encoder.items()}},
        "timm-vit": {"state_dict": encoder, "epoch": 1},
        "mec-eval": make_canonical("vit_tiny_p4", encoder),
    }
    for expected, obj in objects.items():
        assert [name for name in LAYOUTS.names() if LAYOUTS.get(name).detect(obj)] == [expected]
    assert [name for name in LAYOUTS.names() if LAYOUTS.get(name).detect(encoder)] == ["timm-vit"]


@pytest.mark.parametrize("task", ["voc07-cpu-small", "sot-cpu-small", "mot-cpu-small"])
def test_resnet_tasks_refuse_a_vit_at_once(tmp_path, task):
    """Detection (R50-C4) and the UniTrack tasks refuse a ViT in one line, exit 2, before any data is made."""
    out = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-m", "mec_eval", "run", "--task", task, "--ckpt", "random:vit_tiny_p4",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "Traceback" not in done.stderr
    assert "needs a ResNet backbone" in done.stderr and "vit_tiny_p4" in done.stderr
    assert not out.exists() or not any(out.rglob("*"))
