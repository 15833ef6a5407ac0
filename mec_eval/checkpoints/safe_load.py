"""Read checkpoint files without ever executing code stored in them.

Pickle files can name any importable callable and have the unpickler call it; a downloaded
checkpoint is untrusted input. So ``torch.load`` always runs with ``weights_only=True`` (tensors and
plain containers only) and detectron2 ``.pkl`` files go through :class:`NumpyOnlyUnpickler`, which
resolves nothing but what numpy arrays need. Every failure becomes a :class:`UserError` that names
the file, so the CLI prints one line instead of a traceback.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

from mec_eval.utils import UserError

# DINO (`main_dino.py`) and timm (`checkpoint_saver.py`) store their argparse namespace under "args";
# a Namespace only receives attributes from a dict, so allowing it cannot run code (timm does the same).
TORCH_SAFE_GLOBALS = [argparse.Namespace]

# How torch's weights-only unpickler words a refusal (an object it will not build), as opposed to
# damage ("Unsupported operand", "String is too long"), which is reported as a corrupt file.
_REFUSAL = re.compile(r"GLOBAL|Can only create new object|Can only build|call reduce for unrecognized")
_NEVER_UNPICKLES = "mec-eval never unpickles arbitrary objects (weights_only=True / numpy-only unpickler)"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise UserError(f"checkpoint path is not a file: {path}")


def safe_torch_load(path: str | os.PathLike) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with user-facing errors.

    Raises:
        UserError: the file is missing, truncated or corrupt, or it holds a pickled callable or
            class outside the tensor allowlist (refused before anything is executed).
    """
    path = Path(path).expanduser()
    _check_file(path)
    try:
        with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if _REFUSAL.search(str(err)):
            raise UserError(_refused_message(path)) from None
        raise UserError(_corrupt_message(path, err)) from None
    except Exception as err:
        # The file is untrusted input and a damaged one fails anywhere in the parser: a cut zip as
        # RuntimeError, a cut legacy file as EOFError, flipped bytes as KeyError/IndexError/
        # AssertionError. Whatever the type, the file cannot be read, which is the user's to fix.
        raise UserError(_corrupt_message(path, err)) from None


def _refused_message(path: Path) -> str:
    names = _unsafe_globals(path)
    what = f" ({', '.join(names)})" if names else ""
    return (
        f"refused to load {path}: it contains pickled Python objects{what} that could run code; "
        f"they were NOT executed. {_NEVER_UNPICKLES}. Re-save the weights as a plain state dict "
        "(torch.save(model.state_dict(), ...)) in a trusted environment"
    )


def _unsafe_globals(path: Path) -> list[str]:
    # Reads pickle opcodes only (no unpickling); available for zip-format files in torch >= 2.5.
    lister = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if lister is None:
        return []
    try:
        names = lister(str(path))
    except Exception:  # a damaged file: the refusal message is still right, only without names
        return []
    safe = {f"{g.__module__}.{g.__qualname__}" for g in TORCH_SAFE_GLOBALS}
    return [name for name in names if name not in safe]


def _corrupt_message(path: Path, err: BaseException) -> str:
    # First sentence only: torch appends paragraphs of advice that would drown the one-line message.
    text = str(err).strip()
    detail = type(err).__name__ + (f": {text.splitlines()[0].split('. ')[0][:150]}" if text else "")
    return (
        f"cannot read checkpoint {path}: the file is truncated, corrupt or not a PyTorch/pickle "
        f"checkpoint ({detail}); download or copy it again"
    )


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the numpy allowlist."""


def _numpy_allowlist() -> dict[tuple[str, str], object]:
    import codecs

    import numpy as np

    try:  # numpy >= 2 moved the implementation to numpy._core; pickles may name either module.
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): OrderedDict,
        # Protocol-2 pickles (Python-2 era detectron2 files) store raw bytes through this.
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays, dtypes and dicts, and refuses every other global.

    This is the whole content of a detectron2 weights ``.pkl`` (``{"model": {name: ndarray}, ...}``).
    """

    _allowed: dict[tuple[str, str], object] | None = None

    def find_class(self, module: str, name: str) -> object:
        """Resolve only allowlisted numpy/collections names; anything else raises RefusedGlobal."""
        if NumpyOnlyUnpickler._allowed is None:
            NumpyOnlyUnpickler._allowed = _numpy_allowlist()
        try:
            return NumpyOnlyUnpickler._allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: object) -> object:
        """Refuse persistent ids (torch's legacy format uses them for storages; plain .pkl never does)."""
        raise RefusedGlobal(f"persistent id {pid!r}")


def safe_pickle_load(path: str | os.PathLike) -> object:
    """Read a detectron2-style ``.pkl`` (numpy arrays in dicts) with :class:`NumpyOnlyUnpickler`.

    ``encoding="latin1"`` lets Python-2 pickles of numpy arrays load, as detectron2 itself does.
    """
    path = Path(path).expanduser()
    _check_file(path)
    try:
        with open(path, "rb") as fh:
            return NumpyOnlyUnpickler(fh, encoding="latin1").load()
    except RefusedGlobal as err:
        raise UserError(
            f"refused to load {path}: its pickle references {err}, which is not a numpy array "
            f"component; it was NOT executed. {_NEVER_UNPICKLES}"
        ) from None
    except Exception as err:  # damaged input fails anywhere in pickle/numpy; see safe_torch_load
        raise UserError(_corrupt_message(path, err)) from None


def _safetensors_load(path: Path) -> object:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise UserError(f"{path} is a .safetensors file; install the 'safetensors' package to read it") from None
    _check_file(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError for bad headers
        raise UserError(_corrupt_message(path, err)) from None


def load_checkpoint_file(path: str | os.PathLike) -> object:
    """Read any supported checkpoint file, choosing the reader by suffix.

    ``.pkl`` -> :func:`safe_pickle_load` (detectron2), ``.safetensors`` -> safetensors (a format
    that holds tensors only), anything else -> :func:`safe_torch_load`.
    """
    path = Path(path).expanduser()
    # A .pkl written by torch.save (zip container) is a torch file whatever its name says.
    if path.suffix == ".pkl" and not (path.is_file() and zipfile.is_zipfile(path)):
        return safe_pickle_load(path)
    if path.suffix == ".safetensors":
        return _safetensors_load(path)
    return safe_torch_load(path)
