"""solo-learn-style checkpoints with foreign pickled objects, refusal messages, and forced layouts."""
import collections
import functools
import sys
import types

import pytest
import torch

from mec_eval.checkpoints import (
    convert_checkpoint,
    load_checkpoint_file,
    load_encoder,
    read_checkpoint_file,
    safe_torch_load,
)
from mec_eval.checkpoints.restricted_pickle import ForeignObject
from mec_eval.models import build_backbone
from mec_eval.utils import UserError


def _fake_solo() -> types.ModuleType:
    """A stand-in for ``solo.methods.base``; calling its static_lr would set ``called``."""
    module = types.ModuleType("solo.methods.base")
    module.called = []

    def static_lr(get_lr, param_group_indexes, lrs_to_replace):
        module.called.append(True)
        return lrs_to_replace

    static_lr.__module__ = module.__name__
    static_lr.__qualname__ = "static_lr"
    module.static_lr = static_lr
    return module


def _save_with_fake_solo(tmp_path, name, make_obj):
    """torch.save ``make_obj(module)`` while a fake ``solo`` package is importable, then remove it."""
    module = _fake_solo()
    names = {"solo": types.ModuleType("solo"), "solo.methods": types.ModuleType("solo.methods"),
             "solo.methods.base": module}
    sys.modules.update(names)
    try:
        path = tmp_path / name
        torch.save(make_obj(module), path)
    finally:
        for key in names:
            del sys.modules[key]
    return path, module


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(0)
    return build_backbone("resnet_tiny").state_dict()


def _solo_ckpt(state, module):
    weights = {f"backbone.{k}": v for k, v in state.items()}
    weights["projector.0.weight"] = torch.randn(4, 8)
    scheduler = {"scheduler": functools.partial(module.static_lr, get_lr=None, param_group_indexes=[1],
                                                lrs_to_replace=[0.05]),
                 "interval": "step", "frequency": 1}
    return {"state_dict": weights, "lr_schedulers": [scheduler], "epoch": 3,
            "hyper_parameters": collections.defaultdict(dict, {"cfg": {"lr": 0.05}})}


def test_solo_learn_ckpt_with_partial_loads_its_weights_only(tmp_path, tiny_state):
    path, module = _save_with_fake_solo(tmp_path, "simsiam.ckpt", lambda m: _solo_ckpt(tiny_state, m))
    assert "solo" not in sys.modules
    with pytest.raises(Exception, match="static_lr|GLOBAL"):
        torch.load(path, weights_only=True)
    obj, notes = read_checkpoint_file(path)
    assert sorted(obj) == ["epoch", "state_dict"] and obj["epoch"] == 3
    assert len(notes) == 1
    note = notes[0]
    assert "functools.partial" in note and "solo.methods.base.static_lr" in note
    assert "never imported or run" in note and "lr_schedulers" in note and "hyper_parameters" in note
    assert "builtins.dict" not in note and "collections.defaultdict" not in note
    enc = load_encoder(str(path))
    assert enc.layout == "solo-learn" and enc.arch == "resnet_tiny" and note in enc.notes
    loaded = enc.backbone.state_dict()
    for key, value in tiny_state.items():
        assert torch.equal(loaded[key], value), key
    assert "solo" not in sys.modules and not any(name.startswith("solo.") for name in sys.modules)
    assert module.called == []
    with pytest.warns(UserWarning, match="static_lr"):
        load_checkpoint_file(path)
    # the strict reader (pre-training resume) still refuses, naming only what it refused
    with pytest.raises(UserError, match="NOT executed") as err:
        safe_torch_load(path)
    assert "builtins.dict" not in str(err.value) and "solo.methods.base.static_lr" in str(err.value)


def test_placeholders_never_run_anything():
    cls = type("static_lr", (ForeignObject,), {"foreign_name": "solo.methods.base.static_lr"})
    obj = cls(1, x=2)
    obj.__setstate__({"__class__": int, "x": 1})
    obj["k"] = 1
    obj.append(1)
    assert type(obj) is cls and vars(obj) == {}
    assert isinstance(obj(3), cls) and isinstance(cls.__reduce__(obj)[0](), cls)
    assert "solo.methods.base.static_lr" in repr(obj)


def test_a_weight_that_is_a_foreign_object_is_refused(tmp_path, tiny_state):
    def make(module):
        weights = {f"backbone.{k}": v for k, v in tiny_state.items()}
        weights["backbone.conv1.weight"] = functools.partial(module.static_lr, 1)
        return {"state_dict": weights, "epoch": 3}

    path, module = _save_with_fake_solo(tmp_path, "bad.ckpt", make)
    with pytest.raises(UserError) as err:
        load_encoder(str(path))
    message = str(err.value)
    assert "refused" in message and "NOT executed" in message and str(path) in message
    assert "backbone.conv1.weight" in message and "functools.partial" in message
    assert "solo" not in sys.modules and module.called == []


class _Tagged(torch.Tensor):
    """A tensor subclass: only its class's code could rebuild it."""


def test_a_tensor_subclass_weight_is_refused(tmp_path, tiny_state):
    weights = {f"backbone.{k}": v for k, v in tiny_state.items()}
    weights["backbone.conv1.weight"] = weights["backbone.conv1.weight"].as_subclass(_Tagged)
    path = tmp_path / "sub.ckpt"
    torch.save({"state_dict": weights}, path)
    with pytest.raises(UserError) as err:
        load_encoder(str(path))
    assert "refused" in str(err.value) and "backbone.conv1.weight" in str(err.value)


def test_a_file_with_only_foreign_objects_is_refused(tmp_path):
    path, _ = _save_with_fake_solo(tmp_path, "sched.ckpt", lambda m: {"lr_schedulers": [functools.partial(m.static_lr)]})
    with pytest.raises(UserError, match="refused.*static_lr"):
        load_encoder(str(path))


def test_refusal_names_only_refused_globals(tmp_path, tiny_state):
    path, _ = _save_with_fake_solo(tmp_path, "mixed.pt", lambda m: {
        "model": dict(tiny_state), "extra": collections.defaultdict(dict, {"a": {}}),
        "hook": functools.partial(m.static_lr, 1)})
    with pytest.raises(UserError) as err:
        safe_torch_load(path)
    message = str(err.value)
    assert "functools.partial" in message and "solo.methods.base.static_lr" in message
    assert "builtins.dict" not in message and "collections.defaultdict" not in message


def test_forced_layout(tmp_path, tiny_state):
    solo = tmp_path / "solo.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in tiny_state.items()}, "epoch": 1}, solo)
    enc = load_encoder(str(solo), layout="solo-learn")
    assert enc.layout == "solo-learn" and "layout 'solo-learn' forced by the user" in enc.notes
    out = tmp_path / "out.pt"
    assert convert_checkpoint(str(solo), "canonical", out, layout="solo-learn") == "solo-learn" and out.is_file()
    with pytest.raises(UserError, match="did you mean solo-learn") as err:
        load_encoder(str(solo), layout="solo-lern")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="does not look like the forced layout 'moco'.*it matches solo-learn"):
        load_encoder(str(solo), layout="moco")
    with pytest.raises(UserError, match="did you mean"):
        convert_checkpoint(str(solo), "canonical", tmp_path / "o2.pt", layout="torchvisio")
    assert not (tmp_path / "o2.pt").exists()
    with pytest.raises(UserError, match="reads no file"):
        load_encoder("random:resnet_tiny", layout="torchvision")


def test_forced_layout_that_does_not_fit_lists_the_keys(tmp_path, tiny_state):
    flat = tmp_path / "flat.pth"
    torch.save({f"encoder.{k}": v for k, v in tiny_state.items()}, flat)
    with pytest.raises(UserError) as err:
        load_encoder(str(flat), layout="torchvision", arch="resnet_tiny")
    message = str(err.value)
    assert "does not fit the resnet_tiny backbone" in message and "missing" in message
    assert "unexpected" in message and "encoder.conv1.weight" in message
