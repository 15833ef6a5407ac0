"""Every external layout, built the way its project saves it, loads to the right tensors.

Fake files carry the real prefixes and nesting (cited per builder) around a real backbone state
dict; student and teacher get different values so picking the wrong one fails the comparison.
"""
import argparse
import pickle

import pytest
import torch

from mec_eval.checkpoints import LAYOUTS, export_detectron2, infer_arch, load_encoder, make_canonical, save_canonical, to_canonical
from mec_eval.checkpoints.export import torchvision_to_detectron2_name
from mec_eval.checkpoints.layouts import detect_layout
from mec_eval.models import build_backbone
from mec_eval.utils import UserError


def _distinct_state(arch: str, seed: int) -> dict:
    """A backbone state dict whose every float tensor is random (zero-init BN weights included)."""
    gen = torch.Generator().manual_seed(seed)
    state = build_backbone(arch).state_dict()
    return {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone() for k, v in state.items()}


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


def _projector(prefix: str, dim: int = 256) -> dict:
    # MEC/SimSiam projector indices (mec/builder.py): fc.{0,1,3,4,6,7}; fc.7 is affine-free BN.
    return {f"{prefix}fc.0.weight": torch.randn(dim, dim), f"{prefix}fc.1.weight": torch.ones(dim),
            f"{prefix}fc.1.bias": torch.zeros(dim), f"{prefix}fc.1.running_mean": torch.zeros(dim),
            f"{prefix}fc.6.weight": torch.randn(64, dim), f"{prefix}fc.6.bias": torch.zeros(64),
            f"{prefix}fc.7.running_mean": torch.zeros(64), f"{prefix}fc.7.running_var": torch.ones(64)}


_OPTIMIZER = {"state": {}, "param_groups": [{"lr": 0.05, "momentum": 0.9, "params": [0, 1, 2]}]}


@pytest.fixture(scope="module")
def student():
    return _distinct_state("resnet_tiny", 1)


@pytest.fixture(scope="module")
def teacher():
    return _distinct_state("resnet_tiny", 2)


def mec_official(s, t):
    """xinliu20/MEC main_pretrain.py save_checkpoint: DDP keys module.encoder/predictor/teacher."""
    state = {**_prefixed(s, "module.encoder."), **_projector("module.encoder."),
             "module.predictor.0.weight": torch.randn(32, 64), "module.predictor.3.weight": torch.randn(64, 32),
             **_prefixed(t, "module.teacher."), **_projector("module.teacher.")}
    return {"epoch": 100, "arch": "resnet50", "state_dict": state, "optimizer": _OPTIMIZER}, s


def simsiam(s, t):
    """facebookresearch/simsiam main_simsiam.py: module.encoder (+fc projector) and module.predictor."""
    state = {**_prefixed(s, "module.encoder."), **_projector("module.encoder."),
             "module.predictor.0.weight": torch.randn(32, 64)}
    return {"epoch": 100, "arch": "resnet50", "state_dict": state, "optimizer": _OPTIMIZER}, s


def moco(s, t):
    """facebookresearch/moco main_moco.py (v2, mlp): encoder_q/encoder_k with fc.0/fc.2, queue."""
    head = {"fc.0.weight": torch.randn(256, 256), "fc.0.bias": torch.zeros(256),
            "fc.2.weight": torch.randn(128, 256), "fc.2.bias": torch.zeros(128)}
    state = {**_prefixed({**s, **head}, "module.encoder_q."), **_prefixed({**t, **head}, "module.encoder_k."),
             "module.queue": torch.randn(128, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    return {"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": _OPTIMIZER}, s


def torchvision_plain(s, t):
    """torchvision release: plain state dict including the ImageNet classifier fc."""
    return {**s, "fc.weight": torch.randn(10, 256), "fc.bias": torch.zeros(10)}, s


def barlow_twins_backbone(s, t):
    """facebookresearch/barlowtwins resnet50.pth: model.module.backbone.state_dict() (fc is Identity)."""
    return dict(s), s


def barlow_twins_full(s, t):
    """facebookresearch/barlowtwins main.py checkpoint.pth: dict(epoch, model=DDP state, optimizer)."""
    state = {**_prefixed(s, "module.backbone."), "module.projector.0.weight": torch.randn(64, 256),
             "module.bn.running_mean": torch.zeros(64), "module.bn.running_var": torch.ones(64)}
    return {"epoch": 1000, "model": state, "optimizer": _OPTIMIZER}, s


def dino(s, t):
    """facebookresearch/dino main_dino.py save_dict: DDP student/teacher MultiCropWrapper, args Namespace."""
    head = {"head.mlp.0.weight": torch.randn(64, 256), "head.last_layer.weight_g": torch.ones(100, 1)}
    args = argparse.Namespace(arch="resnet50", lr=0.03, global_crops_scale=(0.14, 1.0), use_fp16=True)
    return {"student": _prefixed({**_prefixed(s, "backbone."), **head}, "module."),
            "teacher": _prefixed({**_prefixed(t, "backbone."), **head}, "module."),
            "optimizer": _OPTIMIZER, "epoch": 100, "args": args,
            "dino_loss": {"center": torch.zeros(1, 100)}}, t


def solo_learn(s, t):
    """vturrisi/solo-learn Lightning checkpoint: backbone.*, projector.*, momentum_*, classifier.*."""
    state = {**_prefixed(s, "backbone."), "projector.0.weight": torch.randn(64, 256),
             **_prefixed(t, "momentum_backbone."), "momentum_projector.0.weight": torch.randn(64, 256),
             "classifier.weight": torch.randn(100, 256), "classifier.bias": torch.zeros(100)}
    return {"epoch": 399, "global_step": 1000, "pytorch-lightning_version": "2.0.9", "state_dict": state,
            "optimizer_states": [_OPTIMIZER], "lr_schedulers": [{"last_epoch": 399}]}, s


def vissl(s, t):
    """facebookresearch/vissl checkpoint: classy_state_dict.base_model.model.{trunk,heads}."""
    model = {"trunk": _prefixed(s, "_feature_blocks."), "heads": {"0.clf.0.weight": torch.randn(128, 256)}}
    return {"phase_idx": 199, "iteration": 5000, "iteration_num": 5000, "train_phase_idx": 199,
            "loss": {}, "classy_state_dict": {"train": True, "base_model": {"model": model, "meta": {}}}}, s


def timm_train(s, t):
    """timm CheckpointSaver: state_dict + state_dict_ema (timm prefers EMA), args Namespace."""
    fc = {"fc.weight": torch.randn(10, 256), "fc.bias": torch.zeros(10)}
    return {"epoch": 9, "arch": "resnet50", "state_dict": {**s, **fc}, "state_dict_ema": {**t, **fc},
            "optimizer": _OPTIMIZER, "version": 2, "args": argparse.Namespace(model="resnet50")}, t


BUILDERS = {
    "mec-official": mec_official, "simsiam": simsiam, "moco": moco, "torchvision": torchvision_plain,
    "barlow-twins": barlow_twins_full, "dino": dino, "solo-learn": solo_learn, "vissl": vissl,
    "timm": timm_train,
}


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_each_layout_loads_the_right_tensors(layout, student, teacher, tmp_path):
    obj, expected = BUILDERS[layout](student, teacher)
    path = tmp_path / f"{layout}.pth"
    torch.save(obj, path)
    enc = load_encoder(str(path))
    assert enc.layout == layout
    assert enc.arch == "resnet_tiny"
    loaded = enc.backbone.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_barlow_twins_backbone_release_reads_as_torchvision(student, teacher, tmp_path):
    obj, expected = barlow_twins_backbone(student, teacher)
    torch.save(obj, tmp_path / "resnet50.pth")
    enc = load_encoder(str(tmp_path / "resnet50.pth"))
    assert enc.layout == "torchvision"
    assert all(torch.equal(enc.backbone.state_dict()[k], v) for k, v in expected.items())


def test_detectors_are_mutually_exclusive(student, teacher, tmp_path):
    canonical = make_canonical("resnet_tiny", student, teacher=teacher)
    objects = {name: build(student, teacher)[0] for name, build in BUILDERS.items()}
    objects["mec-eval"] = canonical
    export_detectron2(student, tmp_path / "d2.pkl")
    with open(tmp_path / "d2.pkl", "rb") as fh:
        objects["detectron2"] = pickle.load(fh)
    assert set(objects) == set(LAYOUTS.names()) - {"mae", "dino-vit", "timm-vit"}  # ViT: test_vit_layouts.py
    for expected, obj in objects.items():
        matches = [name for name in LAYOUTS.names() if LAYOUTS.get(name).detect(obj)]
        assert matches == [expected]


def test_mec_official_keeps_teacher_and_heads(student, teacher):
    obj, _ = mec_official(student, teacher)
    canonical, layout, notes = to_canonical(obj, "mec.pth.tar")
    assert layout == "mec-official"
    assert set(canonical["heads"]) == {"projector", "predictor", "teacher_projector"}
    assert "0.weight" in canonical["heads"]["projector"]
    assert all(torch.equal(canonical["teacher"][k], v) for k, v in teacher.items())
    assert not any(k.startswith("fc.") for k in canonical["backbone"])
    assert canonical["meta"]["method"] == "mec" and canonical["meta"]["epoch"] == 100
    assert any("student" in note for note in notes)


def test_dino_note_says_teacher(student, teacher):
    canonical, _, notes = to_canonical(dino(student, teacher)[0], "dino.pth")
    assert any("TEACHER" in note for note in notes)
    assert canonical["meta"]["config"]["arch"] == "resnet50"  # args Namespace flattened to plain values
    assert canonical["meta"]["config"]["global_crops_scale"] == [0.14, 1.0]


def test_moco_notes_ignored_key_encoder(student, teacher):
    _, _, notes = to_canonical(moco(student, teacher)[0], "moco.pth.tar")
    assert any("encoder_k" in note for note in notes)


def test_canonical_roundtrip_through_file(student, teacher, tmp_path):
    save_canonical(make_canonical("resnet_tiny", student, meta={"method": "mec", "epoch": 3}), tmp_path / "c.pt")
    enc = load_encoder(str(tmp_path / "c.pt"))
    assert (enc.layout, enc.method, enc.epoch) == ("mec-eval", "mec", 3)


def test_detectron2_moco_converter_output_loads(student, tmp_path):
    # What MoCo's convert-pretrain-to-detectron2.py writes (author "MOCO", all keys incl. counters).
    model = {torchvision_to_detectron2_name(k): v.numpy() for k, v in student.items()}
    with open(tmp_path / "moco_r50.pkl", "wb") as fh:
        pickle.dump({"model": model, "__author__": "MOCO", "matching_heuristics": True}, fh)
    enc = load_encoder(str(tmp_path / "moco_r50.pkl"))
    assert enc.layout == "detectron2"
    assert all(torch.equal(enc.backbone.state_dict()[k], v) for k, v in student.items())


def test_unknown_object_lists_keys_and_layouts():
    obj = {"weights": {"net.conv.weight": torch.zeros(1), "net.conv.bias": torch.zeros(1)}, "step": 3}
    with pytest.raises(UserError) as err:
        detect_layout(obj, "mystery.pt")
    message = str(err.value)
    assert "mystery.pt" in message and "'weights'" in message and "'step'" in message
    assert "net.conv.weight" in message
    assert "mec-official" in message and "detectron2" in message
    with pytest.raises(UserError, match="not a dict"):
        detect_layout([1, 2], "list.pt")


@pytest.mark.parametrize("arch", ["resnet_tiny", "resnet18", "cifar_resnet18"])
def test_infer_arch(arch):
    assert infer_arch(build_backbone(arch).state_dict()) == arch


def test_infer_arch_resnet18_vs_cifar_by_stem_kernel():
    state = build_backbone("resnet18").state_dict()
    assert state["conv1.weight"].shape[-1] == 7
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    assert infer_arch(state) == "cifar_resnet18"


def test_infer_arch_unknown_network():
    with pytest.raises(UserError, match="cannot infer the architecture"):
        infer_arch({"features.0.weight": torch.zeros(8, 3, 3, 3), "classifier.weight": torch.zeros(2, 8)})
