"""The canonical format, safe loading of damaged files, and the strict backbone loader."""
import os
import pickle

import pytest
import torch

from mec_eval.checkpoints import (
    FORMAT,
    is_canonical,
    load_backbone_weights,
    load_encoder,
    make_canonical,
    safe_pickle_load,
    safe_torch_load,
    save_canonical,
)
from mec_eval.models import build_backbone
from mec_eval.utils import UserError


@pytest.fixture()
def tiny_state():
    return build_backbone("resnet_tiny").state_dict()


def test_make_canonical_structure_and_hygiene(tiny_state):
    backbone = {**tiny_state, "fc.weight": torch.zeros(10, 256), "fc.bias": torch.zeros(10)}
    backbone["layer1.0.conv1.weight"] = backbone["layer1.0.conv1.weight"].transpose(0, 1)  # non-contiguous view
    ckpt = make_canonical("resnet_tiny", backbone, heads={"projector": {"0.weight": torch.ones(2, 2)}},
                          teacher={**tiny_state, "fc.weight": torch.zeros(1)}, meta={"method": "mec", "epoch": 5})
    assert is_canonical(ckpt)
    assert list(ckpt) == ["format", "arch", "backbone", "heads", "teacher", "meta"]
    assert ckpt["format"] == FORMAT == "mec-eval/1"
    assert not any(k.startswith("fc.") for k in ckpt["backbone"]) and "fc.weight" not in ckpt["teacher"]
    assert all(t.is_contiguous() and t.device.type == "cpu" for t in ckpt["backbone"].values())
    assert ckpt["meta"] == {"method": "mec", "epoch": 5, "config": {}}
    # Cloned: changing the source afterwards leaves the checkpoint alone.
    tiny_state["conv1.weight"].add_(1.0)
    assert not torch.equal(ckpt["backbone"]["conv1.weight"], tiny_state["conv1.weight"])


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"arch": ""}, ValueError),
        ({"backbone": {}}, ValueError),
        ({"backbone": {"conv1.weight": [1.0]}}, TypeError),
        ({"meta": {"config": {"path": object()}}}, TypeError),
        ({"heads": {"projector": "not a state dict"}}, TypeError),
    ],
)
def test_make_canonical_rejects_bad_parts(kwargs, error, tiny_state):
    args = {"arch": "resnet_tiny", "backbone": tiny_state, **kwargs}
    with pytest.raises(error):
        make_canonical(**args)


def test_save_canonical_is_weights_only_readable_and_atomic(tiny_state, tmp_path):
    ckpt = make_canonical("resnet_tiny", tiny_state, meta={"config": {"lr": 0.1, "crops": [224, 96]}})
    path = tmp_path / "runs" / "last.pt"
    save_canonical(ckpt, path)
    assert sorted(os.listdir(path.parent)) == ["last.pt"]  # no temp file left behind
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert is_canonical(loaded) and loaded["meta"]["config"]["crops"] == [224, 96]
    assert all(torch.equal(loaded["backbone"][k], v) for k, v in ckpt["backbone"].items())
    with pytest.raises(ValueError):
        save_canonical({"backbone": tiny_state}, tmp_path / "bad.pt")


def test_is_canonical_rejects_other_objects(tiny_state):
    assert not is_canonical(tiny_state)
    assert not is_canonical({"format": "mec-eval/0", "arch": "x", "backbone": {}, "meta": {}})
    assert not is_canonical(None)


def test_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        safe_torch_load(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="not found"):
        load_encoder(str(tmp_path / "nope.pt"))


@pytest.mark.parametrize("zip_format", [True, False])
def test_truncated_file_is_user_error(zip_format, tiny_state, tmp_path):
    full = tmp_path / "full.pt"
    torch.save(tiny_state, full, _use_new_zipfile_serialization=zip_format)
    data = full.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated") as err:
        load_encoder(str(cut))
    assert "cut.pt" in str(err.value)


def test_truncated_and_garbage_pkl_are_user_errors(tmp_path):
    data = pickle.dumps({"model": {"stem.conv1.weight": torch.zeros(2).numpy()}}, protocol=4)
    (tmp_path / "cut.pkl").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pkl").write_bytes(b"this is not a pickle")
    for name in ("cut.pkl", "junk.pkl"):
        with pytest.raises(UserError, match=name):
            safe_pickle_load(tmp_path / name)


def test_strict_loader_lists_missing_extra_and_mismatched(tiny_state):
    state = dict(tiny_state)
    del state["layer2.0.conv1.weight"]
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(16, 3, 3, 3)
    with pytest.raises(UserError) as err:
        load_backbone_weights(build_backbone("resnet_tiny"), state, "bad.pt", arch="resnet_tiny")
    message = str(err.value)
    assert "bad.pt" in message and "resnet_tiny" in message
    assert "1 missing (layer2.0.conv1.weight)" in message
    assert "1 unexpected (layer9.0.conv1.weight)" in message
    assert "1 wrong shape (conv1.weight file 16x3x3x3, model 32x3x3x3)" in message


def test_strict_loader_truncates_long_lists(tiny_state):
    state = {k: v for k, v in tiny_state.items() if not k.startswith("layer4.")}
    with pytest.raises(UserError, match=r"\d+ missing \(layer4\.[^,]+, [^,]+, [^,]+, \.\.\.\)") as err:
        load_backbone_weights(build_backbone("resnet_tiny"), state, "short.pt")
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_strict_loader_fills_only_bn_counters(tiny_state):
    state = {k: v for k, v in tiny_state.items() if not k.endswith("num_batches_tracked")}
    model = build_backbone("resnet_tiny")
    notes = load_backbone_weights(model, state, "old.pth")
    assert notes and "num_batches_tracked" in notes[0]
    assert torch.equal(model.state_dict()["bn1.running_var"], state["bn1.running_var"])


def test_bad_keys_in_a_file_reach_the_user(tiny_state, tmp_path):
    state = dict(tiny_state)
    del state["layer3.0.bn2.weight"]
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(UserError) as err:
        load_encoder(str(tmp_path / "broken.pth"))
    assert "layer3.0.bn2.weight" in str(err.value) and "extra.weight" in str(err.value)


def test_forcing_the_wrong_arch_lists_shape_mismatches(tiny_state, tmp_path):
    torch.save(tiny_state, tmp_path / "tiny.pth")
    with pytest.raises(UserError, match="wrong shape"):
        load_encoder(str(tmp_path / "tiny.pth"), arch="cifar_resnet18")
