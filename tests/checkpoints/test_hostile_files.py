"""Damaged, foreign and hostile checkpoint files are one-line UserErrors naming the file and the fix."""
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mec_eval.checkpoints import (
    convert_checkpoint,
    load_checkpoint_file,
    load_encoder,
    make_canonical,
    safe_pickle_load,
    safe_torch_load,
    save_canonical,
)
from mec_eval.checkpoints.manifest import verify_file
from mec_eval.models import build_backbone
from mec_eval.utils import UserError


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(0)
    return build_backbone("resnet_tiny").state_dict()


@pytest.fixture()
def canonical(tmp_path, tiny_state) -> Path:
    path = tmp_path / "c.pt"
    save_canonical(make_canonical("resnet_tiny", tiny_state, meta={"method": "mec", "epoch": 3}), path)
    return path


def user_error(load, *args, **kwargs) -> str:
    """The message of the UserError ``load(*args)`` raises; asserts it is one line."""
    with pytest.raises(UserError) as err:
        load(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message and message.strip() == message
    return message


def flip_inside_largest_tensor(path: Path, count: int = 2000) -> str:
    """Invert ``count`` bytes in the middle of the largest storage member; returns its name."""
    with zipfile.ZipFile(path) as archive:
        member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    local_extra = int.from_bytes(data[member.header_offset + 28:member.header_offset + 30], "little")
    start = member.header_offset + 30 + len(member.filename.encode()) + local_extra
    start += (member.file_size - count) // 2
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    path.write_bytes(bytes(data))
    return member.filename


# ----------------------------------------------------------------------------- 1. CRC / truncation
def test_flipped_tensor_bytes_fail_the_crc_check(canonical, tiny_state):
    member = flip_inside_largest_tensor(canonical)
    # torch itself does not notice: without our check these would be evaluated as other weights.
    damaged = torch.load(canonical, weights_only=True)["backbone"]
    assert any(not torch.equal(damaged[k], tiny_state[k]) for k in tiny_state)
    for load in (safe_torch_load, load_checkpoint_file, lambda p: load_encoder(str(p))):
        message = user_error(load, canonical)
        assert str(canonical) in message and "corrupt" in message
        assert f"CRC mismatch in member {member}" in message and "copy it again" in message


def test_flipped_bytes_in_a_pkl_named_torch_file_are_caught(tmp_path, tiny_state):
    path = tmp_path / "torch_saved.pkl"  # torch.save output with a .pkl name goes through the zip check too
    torch.save(tiny_state, path)
    flip_inside_largest_tensor(path)
    assert "CRC mismatch" in user_error(load_checkpoint_file, path)


def test_truncated_last_pt_message_fits_a_pretraining_folder(canonical, tmp_path):
    last = tmp_path / "pre" / "last.pt"
    last.parent.mkdir()
    data = canonical.read_bytes()
    last.write_bytes(data[:len(data) // 2])
    message = user_error(load_encoder, str(last))
    assert str(last) in message and "truncated or corrupt" in message
    assert "delete it" in message and "download" not in message


def test_zip_files_saved_without_crcs_still_load(tmp_path, tiny_state):
    path = tmp_path / "nocrc.pt"
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(tiny_state, path)
    finally:
        torch.serialization.set_crc32_options(True)
    with zipfile.ZipFile(path) as archive:
        assert all(info.CRC == 0 for info in archive.infolist())
    assert load_encoder(str(path)).arch == "resnet_tiny"


def test_legacy_non_zip_files_keep_loading(tmp_path, tiny_state):
    path = tmp_path / "legacy.pth"
    torch.save(tiny_state, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    enc = load_encoder(str(path))
    assert torch.equal(enc.backbone.state_dict()["conv1.weight"], tiny_state["conv1.weight"])


def test_manifest_hash_mismatch_says_corrupt(canonical):
    message = user_error(verify_file, canonical, {"name": "tiny", "sha256": "0" * 64})
    assert str(canonical) in message and "corrupt" in message and "download it again" in message


# ----------------------------------------------------------------------------- 2. meta types
@pytest.mark.parametrize("key, value", [
    ("epoch", "abc"), ("epoch", 1.5), ("epoch", True), ("epoch", -1), ("epoch", [3]),
    ("method", 3), ("method", {"name": "mec"}), ("arch", 50),
])
def test_wrongly_typed_meta_is_refused_naming_the_key(tmp_path, tiny_state, key, value):
    ckpt = make_canonical("resnet_tiny", tiny_state)
    ckpt["meta"][key] = value  # bypasses make_canonical's check, as a hand-edited file would
    path = tmp_path / "meta.pt"
    torch.save(ckpt, path)
    message = user_error(load_encoder, str(path))
    assert f"meta.{key}" in message and str(path) in message


def test_whole_float_epoch_is_read_as_int(tmp_path, tiny_state):
    ckpt = make_canonical("resnet_tiny", tiny_state)
    ckpt["meta"]["epoch"] = 7.0
    torch.save(ckpt, tmp_path / "e7.pt")
    epoch = load_encoder(str(tmp_path / "e7.pt")).provenance()["epoch"]
    assert epoch == 7 and type(epoch) is int


def test_make_canonical_refuses_a_string_epoch(tiny_state):
    with pytest.raises(ValueError, match="meta.epoch"):
        make_canonical("resnet_tiny", tiny_state, meta={"epoch": "forty"})


# ----------------------------------------------------------------------------- 3. detectron2 .pkl
@pytest.mark.parametrize("array, needle", [
    (np.array(["a", 1], dtype=object), "dtype object"),          # rebuildable without any global
    (np.array([object()], dtype=object), "dtype object"),         # would need builtins.object
    (np.zeros(2, dtype=[("w", "f4"), ("o", "O")]), "dtype object"),  # a record with an object field
    (np.array(["abc"]), "dtype <U3"),
    (np.zeros(2, dtype="datetime64[s]"), "datetime64"),
])
def test_pkl_with_non_numeric_arrays_is_refused(tmp_path, array, needle):
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": {"stem.conv1.weight": array}, "__author__": "x"}, protocol=4))
    for load in (safe_pickle_load, lambda p: load_encoder(str(p))):
        message = user_error(load, path)
        assert str(path) in message and needle in message


def test_pkl_metadata_may_hold_strings(tmp_path, tiny_state):
    from mec_eval.checkpoints import export_detectron2

    path = tmp_path / "d2.pkl"
    export_detectron2(tiny_state, path)
    obj = safe_pickle_load(path)
    obj["notes"] = np.array(["trained on VOC"])
    path.write_bytes(pickle.dumps(obj, protocol=4))
    assert load_encoder(str(path)).layout == "detectron2"


# ----------------------------------------------------------------------------- 4. wrong-arch summary
def test_resnet18_weights_as_resnet50_give_a_short_summary(tmp_path):
    path = tmp_path / "r18as50.pt"
    save_canonical(make_canonical("resnet50", build_backbone("resnet18").state_dict()), path)
    message = user_error(load_encoder, str(path))
    assert len(message.replace(str(path), "")) < 300
    assert "does not fit the resnet50 backbone" in message and "look like resnet18" in message
    assert "165 missing (layer1.0.conv3.weight, " in message and "23 wrong shape (" in message
    assert message.count("layer") <= 6  # a few examples, not the whole list


def test_integer_tensor_where_a_weight_belongs_is_refused(tmp_path, tiny_state):
    state = dict(tiny_state)
    state["conv1.weight"] = torch.zeros_like(state["conv1.weight"], dtype=torch.int64)
    torch.save(state, tmp_path / "ints.pt")
    assert "not floating point (conv1.weight int64)" in user_error(load_encoder, str(tmp_path / "ints.pt"))


def test_non_finite_weights_are_refused(tmp_path, tiny_state):
    state = {k: v.clone() for k, v in tiny_state.items()}
    state["layer2.0.bn1.running_var"][0] = float("inf")
    torch.save(state, tmp_path / "inf.pt")
    message = user_error(load_encoder, str(tmp_path / "inf.pt"))
    assert "NaN or infinite" in message and "layer2.0.bn1.running_var" in message


# ----------------------------------------------------------------------------- 5. folder
def test_folder_as_checkpoint_says_folder(tmp_path, canonical):
    run = tmp_path / "run"
    run.mkdir()
    message = user_error(load_encoder, str(run))
    assert message.startswith(f"{run} is a folder, not a checkpoint file")
    (run / "last.pt").write_bytes(canonical.read_bytes())
    assert str(run / "last.pt") in user_error(load_encoder, str(run))
    for load in (safe_torch_load, safe_pickle_load, load_checkpoint_file):
        assert "is a folder, not a checkpoint file" in user_error(load, run)


# ----------------------------------------------------------------------------- 6. arch provenance
def test_detected_arch_and_its_rule_are_recorded(tmp_path):
    torch.save(build_backbone("cifar_resnet18").state_dict(), tmp_path / "weights.pth")
    prov = load_encoder(str(tmp_path / "weights.pth")).provenance()
    assert prov["arch"] == "cifar_resnet18"
    assert prov["arch_source"].startswith("detected from weights") and "conv1 3x3" in prov["arch_source"]
    forced = load_encoder(str(tmp_path / "weights.pth"), arch="cifar_resnet18").provenance()
    assert forced["arch_source"] == "user"


def test_provenance_with_new_keys_matches_the_schema(canonical, validate_result):
    from mec_eval.runs import build_result

    result = build_result(task="knn", dataset="digits", protocol="paper",
                          checkpoint=load_encoder(str(canonical)).provenance(), metrics={"top1": 50.0},
                          primary="top1", higher_is_better=True, config={}, seed=0,
                          started="2026-01-01T00:00:00+00:00", duration_s=1.0)
    assert validate_result(result)["checkpoint"]["arch_source"] == "checkpoint file"


# ----------------------------------------------------------------------------- 7. absolute path
def test_relative_path_is_recorded_absolute(tmp_path, canonical, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prov = load_encoder("c.pt").provenance()
    assert prov["path"] == str(canonical.resolve()) and Path(prov["path"]).is_absolute()
    assert load_encoder("random:resnet_tiny").provenance()["path"] == "random:resnet_tiny"


# ----------------------------------------------------------------------------- 8. convert --out
def test_convert_refuses_to_overwrite_without_force(tmp_path, canonical):
    out = tmp_path / "notes.txt"
    out.write_text("precious")
    message = user_error(convert_checkpoint, str(canonical), "canonical", out)
    assert str(out) in message and "--force" in message and out.read_text() == "precious"
    assert convert_checkpoint(str(canonical), "canonical", out, force=True) == "mec-eval"
    assert torch.load(out, weights_only=True)["format"] == "mec-eval/1"


@pytest.mark.parametrize("to", ["canonical", "torchvision", "detectron2"])
def test_convert_out_folder_or_missing_parent(tmp_path, canonical, to):
    folder = tmp_path / "dir"
    folder.mkdir()
    for force in (False, True):
        assert "is a folder" in user_error(convert_checkpoint, str(canonical), to, folder, force=force)
    assert list(folder.iterdir()) == []
    missing = tmp_path / "nope" / "x.pt"
    message = user_error(convert_checkpoint, str(canonical), to, missing)
    assert str(missing.parent) in message and "does not exist" in message
    assert not missing.parent.exists()


def test_convert_into_unwritable_folder(tmp_path, canonical, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Root ignores permission bits, so the refusal is simulated where the test runs as root.
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    message = user_error(convert_checkpoint, str(canonical), "canonical", locked / "x.pt")
    assert str(locked) in message and "permission" in message
    assert list(locked.iterdir()) == []


def test_convert_of_a_bad_input_writes_nothing(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 64)
    user_error(convert_checkpoint, str(bad), "canonical", tmp_path / "out.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


# ----------------------------------------------------------------------------- hostile inputs
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (os.urandom(4096).replace(b"\x80", b"\x81").replace(b"PK", b"pk"), "not a PyTorch checkpoint"),
    (json.dumps({"format": "mec-eval/1", "arch": "resnet_tiny"}).encode(), "JSON"),
    (b"\x80\x02\x8a\x0alZ\xfc\x9c", "truncated or corrupt"),  # the start of a legacy torch file
])
def test_broken_or_foreign_bytes(tmp_path, content, needle):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    for load in (safe_torch_load, lambda p: load_encoder(str(p))):
        message = user_error(load, path)
        assert str(path) in message and needle in message


def test_a_zip_that_is_not_a_torch_file(tmp_path):
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    message = user_error(load_encoder, str(path))
    assert "not a PyTorch checkpoint" in message and "data.pkl" in message and "readme.txt" in message


@pytest.mark.parametrize("name", ["evil.pt", "evil.pkl"])
def test_plain_pickle_with_reduce_is_refused_unexecuted(tmp_path, name):
    marker = tmp_path / "PWNED"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    message = user_error(load_encoder, str(path))
    assert "refused" in message and "NOT executed" in message and str(path) in message
    assert not marker.exists()


def test_canonical_tag_with_a_broken_structure(tmp_path, tiny_state):
    ckpt = make_canonical("resnet_tiny", tiny_state)
    ckpt["arch"] = 5
    torch.save(ckpt, tmp_path / "arch5.pt")
    message = user_error(load_encoder, str(tmp_path / "arch5.pt"))
    assert "tagged mec-eval/1 but malformed" in message and "'arch'" in message
    ckpt["arch"], ckpt["backbone"] = "resnet_tiny", {1: torch.zeros(2)}
    torch.save(ckpt, tmp_path / "intkey.pt")
    assert "non-string key 1" in user_error(load_encoder, str(tmp_path / "intkey.pt"))


def test_a_bare_tensor_is_an_unrecognised_layout(tmp_path, recwarn):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    assert "a Tensor, not a dict" in user_error(load_encoder, str(tmp_path / "tensor.pt"))
    assert not [w for w in recwarn if "classy_state_dict" in str(w.message)]


@pytest.mark.parametrize("make, needle", [
    (lambda t: t.to_sparse(), "sparse_coo tensor"),
    (lambda t: torch.empty(t.shape, device="meta"), "meta (no data) tensor"),
])
def test_tensors_without_dense_data_are_refused(tmp_path, tiny_state, make, needle):
    state = dict(tiny_state)
    state["conv1.weight"] = make(state["conv1.weight"])
    torch.save(state, tmp_path / "odd.pt")
    message = user_error(load_encoder, str(tmp_path / "odd.pt"))
    assert "conv1.weight" in message and needle in message


def test_truncated_pkl_is_corrupt_not_refused(tmp_path, tiny_state):
    from mec_eval.checkpoints import export_detectron2

    export_detectron2(tiny_state, tmp_path / "d2.pkl")
    cut = tmp_path / "cut.pkl"
    cut.write_bytes((tmp_path / "d2.pkl").read_bytes()[:1000])
    message = user_error(load_encoder, str(cut))
    assert "truncated or corrupt" in message and "refused" not in message


def test_self_referencing_pickle_does_not_hang(tmp_path):
    loop = {}
    loop["self"] = loop
    (tmp_path / "loop.pkl").write_bytes(pickle.dumps(loop))
    assert "unrecognised checkpoint layout" in user_error(load_encoder, str(tmp_path / "loop.pkl"))


def test_arch_errors_name_the_file(tmp_path, tiny_state):
    ckpt = make_canonical("resnet_tiny", tiny_state)
    ckpt["arch"] = "resnet51"
    torch.save(ckpt, tmp_path / "r51.pt")
    message = user_error(load_encoder, str(tmp_path / "r51.pt"))
    assert str(tmp_path / "r51.pt") in message and "unknown backbone architecture 'resnet51'" in message
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "odd.pt")
    message = user_error(load_encoder, str(tmp_path / "odd.pt"))
    assert message.startswith(f"{tmp_path / 'odd.pt'}: cannot infer the architecture")
