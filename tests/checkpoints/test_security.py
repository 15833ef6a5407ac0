"""A checkpoint that carries code is refused, and the code never runs."""
import os
import pathlib
import pickle
import pickletools

import pytest
import torch

from mec_eval.checkpoints import export_detectron2, load_encoder, safe_pickle_load, safe_torch_load
from mec_eval.models import build_backbone
from mec_eval.utils import UserError


class ShellPayload:
    """Unpickling this runs a shell command (the classic pickle exploit)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class TouchPayload:
    """Unpickling this creates a file through pathlib, without a shell."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _state():
    return build_backbone("resnet_tiny").state_dict()


def test_torch_file_with_callable_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _state(), "payload": ShellPayload(marker)}, path)
    for load in (safe_torch_load, lambda p: load_encoder(str(p))):
        with pytest.raises(UserError) as err:
            load(path)
        message = str(err.value)
        assert "evil.pth" in message and "NOT executed" in message
        assert "never unpickles arbitrary objects" in message
        assert "system" in message  # the refused global is named (read from opcodes, not executed)
        assert not marker.exists()


def test_pkl_with_callable_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({"model": {"stem.conv1.weight": torch.zeros(2).numpy()},
                            "__author__": TouchPayload(marker)}, protocol=4)
    # The payload is live: a plain unpickler would create the marker.
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    for load in (safe_pickle_load, lambda p: load_encoder(str(p))):
        with pytest.raises(UserError) as err:
            load(path)
        assert "pathlib" in str(err.value) and "NOT executed" in str(err.value)
        assert not marker.exists()


def test_pkl_with_shell_payload_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "shell.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"model": ShellPayload(marker)}, fh)
    with pytest.raises(UserError, match="refused"):
        safe_pickle_load(path)
    assert not marker.exists()


def test_exported_pkl_uses_only_numpy_globals(tmp_path):
    export_detectron2(_state(), tmp_path / "d2.pkl")
    data = (tmp_path / "d2.pkl").read_bytes()
    strings = {arg for op, arg, _ in pickletools.genops(data) if op.name == "SHORT_BINUNICODE"}
    modules = {s for s in strings if s.startswith(("numpy", "builtins", "os", "posix", "torch"))}
    assert modules <= {"numpy", "numpy._core.multiarray", "numpy.core.multiarray"}
    assert "torch" not in data.decode("latin1")
    assert safe_pickle_load(tmp_path / "d2.pkl")["__author__"] == "mec-eval"
