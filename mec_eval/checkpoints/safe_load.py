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
import pickletools
import re
import warnings
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import torch

from mec_eval.checkpoints.restricted_pickle import (
    HARMLESS_GLOBALS,
    WEIGHT_KEYS,
    ForeignWeights,
    extract_weights,
    is_hostile,
    is_plain_torch_zip,
    restricted_torch_load,
)
from mec_eval.utils import UserError

# DINO (`main_dino.py`) and timm (`checkpoint_saver.py`) store their argparse namespace under "args";
# a Namespace only receives attributes from a dict, so allowing it cannot run code (timm does the same).
TORCH_SAFE_GLOBALS = [argparse.Namespace]

# How torch's weights-only unpickler words a refusal (an object it will not build), as opposed to
# damage ("Unsupported operand", "String is too long"), which is reported as a corrupt file.
_REFUSAL = re.compile(r"GLOBAL|Can only create new object|Can only build|call reduce for unrecognized")
_CHUNK = 1 << 20
_ZIP_MAGIC = b"PK\x03\x04"
_STRING_OPS = {"UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING",
               "SHORT_BINSTRING"}
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # pickle protocol 2, then torch's magic number (LONG1, 10 bytes)
CHECKPOINT_SUFFIXES = {".pt", ".pth", ".tar", ".pkl", ".torch", ".ckpt", ".safetensors", ".bin"}
_NEVER_UNPICKLES = ("mec-eval never unpickles arbitrary objects (weights_only=True, numpy-only unpickler, "
                    "placeholders for foreign objects)")


class RefusedPickle(UserError):
    """The file pickles objects outside the weights-only allowlist (refused, nothing executed)."""


def folder_message(path: Path) -> str:
    """The one-line error for a checkpoint spec that names a folder, pointing at the files inside."""
    candidates = sorted(p.name for p in path.glob("*") if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    preferred = [n for n in ("last.pt", "checkpoint.pth.tar", "model_final.pkl") if n in candidates]
    example = (preferred or candidates[-1:] or [None])[0]
    hint = f"pass a file inside it, e.g. {path / example}" if example else "pass the checkpoint file itself"
    return f"{path} is a folder, not a checkpoint file; {hint}"


def check_file(path: Path) -> None:
    """UserError unless ``path`` is an existing regular file (a folder is named as such)."""
    if path.is_dir():
        raise UserError(folder_message(path))
    if not path.exists():
        raise UserError(f"checkpoint file not found: {path}")
    if not path.is_file():
        raise UserError(f"checkpoint path is not a regular file: {path}")


def corrupt_message(path: Path, detail: str) -> str:
    """A damaged file: what is wrong and how to get an intact copy (one line)."""
    return (
        f"{path} is truncated or corrupt ({detail}); if it is a pre-training last.pt, delete it and re-run "
        "to start that pre-training over (checkpoint_XXXX.pt files hold weights only, no resume state), "
        "otherwise copy it again from its source"
    )


def _foreign_message(path: Path, detail: str) -> str:
    return (
        f"{path} is not a PyTorch checkpoint ({detail}); pass a file written by torch.save (.pt/.pth/.tar), "
        "a detectron2 .pkl or a .safetensors file"
    )


def _first_line(err: BaseException) -> str:
    # First sentence only: torch appends paragraphs of advice that would drown the one-line message.
    text = str(err).strip()
    return type(err).__name__ + (f": {text.splitlines()[0].split('. ')[0][:150]}" if text else "")


def _read_failure(path: Path, err: BaseException, *, torch_file: bool = True) -> str:
    """Why a file the readers rejected is unreadable, judged from its first bytes.

    ``torch_file=False``: it was read as a plain (detectron2) pickle, so a pickle start means damage.
    """
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head:
        return corrupt_message(path, "the file is empty, 0 bytes")
    if head[:1] == b"\x80" and not torch_file:
        return corrupt_message(path, _first_line(err))
    if head[:1] == b"\x80":  # pickle protocol >= 2: torch's legacy format, or a plain pickle
        names = _scan_pickle_globals(path)
        if names:  # torch stops at an opcode it lacks (e.g. protocol 4's FRAME) before reaching the global
            return _refused_message(path, names)
        if len(head) > 1 and head[1] > 2 and not head.startswith(_LEGACY_MAGIC):
            return _foreign_message(path, f"a plain Python pickle (protocol {head[1]}), not a torch.save file; "
                                          "if it holds numpy arrays (detectron2), name it .pkl")
        return corrupt_message(path, _first_line(err))
    if head.startswith(b"PK"):
        return corrupt_message(path, _first_line(err))
    if head.lstrip()[:1] in (b"{", b"[") or all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return _foreign_message(path, f"it starts with text {head.decode('ascii', 'replace')!r}, e.g. JSON or YAML")
    return _foreign_message(path, f"unknown file signature {head[:4].hex()}, or the file is corrupt")


def _zip_member_check(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    # Reading a member to its end makes zipfile compare the CRC-32 stored in the archive.
    with archive.open(info) as member:
        while member.read(_CHUNK):
            pass


def verify_zip(path: Path) -> None:
    """Check a torch zip checkpoint end to end before anything in it is trusted.

    Every member is streamed (1 MiB at a time, so no second copy of the weights in memory) and its
    CRC-32 compared with the one the archive records; torch's reader never does this, so flipped
    bytes inside a tensor would otherwise load as other weights. Files saved with
    ``torch.serialization.set_crc32_options(False)`` record CRC 0: such members cannot be checked.

    Raises:
        UserError: truncated (no central directory), a CRC mismatch or a broken member header,
            or a zip that is not a torch checkpoint (no ``data.pkl``).
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise UserError(corrupt_message(path, f"no intact zip directory at the end of the file, as in a cut-off "
                                              f"copy: {_first_line(err)}")) from None
    with archive:
        infos = [info for info in archive.infolist() if not info.is_dir()]
        if not any(info.filename.rpartition("/")[2] == "data.pkl" for info in infos):
            names = ", ".join(info.filename for info in infos[:3]) or "none"
            raise UserError(_foreign_message(path, f"a zip archive without the data.pkl member of torch.save; "
                                                   f"members: {names}"))
        for info in infos:
            if info.CRC == 0 and info.file_size > 0:  # saved without CRCs: nothing to compare
                continue
            try:
                _zip_member_check(archive, info)
            except zipfile.BadZipFile as err:
                what = "CRC mismatch" if "CRC" in str(err) else _first_line(err)
                raise UserError(corrupt_message(path, f"{what} in member {info.filename}")) from None
            except (EOFError, OSError, ValueError, NotImplementedError, zlib.error) as err:
                raise UserError(corrupt_message(path, f"member {info.filename} is unreadable: "
                                                      f"{_first_line(err)}")) from None


def safe_torch_load(path: str | os.PathLike) -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with user-facing errors.

    Zip-format files (torch >= 1.6) are first checked member by member (:func:`verify_zip`);
    legacy non-zip files carry no checksums and are read as before.

    Raises:
        UserError: the file is missing, a folder, truncated or corrupt, not a torch file, or it
            holds a pickled callable or class outside the tensor allowlist (refused before anything
            is executed).
    """
    path = Path(path).expanduser()
    check_file(path)
    if _starts_with(path, _ZIP_MAGIC):  # how torch.load itself tells zip from legacy files
        verify_zip(path)
    try:
        # torch warns about odd pickles it then fails on; keep the one-line error alone on stderr.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        for warning in caught:  # the file loaded: the warnings may matter, pass them on
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return obj
    except pickle.UnpicklingError as err:
        if _REFUSAL.search(str(err)):
            raise RefusedPickle(_refused_message(path)) from None
        raise UserError(_read_failure(path, err)) from None
    except Exception as err:
        # The file is untrusted input and a damaged one fails anywhere in the parser: a cut legacy
        # file as EOFError, flipped bytes as KeyError/IndexError/AssertionError. Whatever the type,
        # the file cannot be read, which is the user's to fix.
        raise UserError(_read_failure(path, err)) from None


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(magic)) == magic


def _scan_pickle_globals(path: Path, pickles: int = 4) -> list[str]:
    """Globals a non-zip pickle file names outside torch's allowlist, read from opcodes only.

    Looks at the first ``pickles`` pickles (a legacy torch file holds 4 before the raw storages);
    ``STACK_GLOBAL`` takes its names from the last two strings pushed, which is how pickle writes them.
    """
    try:  # a private torch helper, used only to word the message
        from torch._weights_only_unpickler import _get_allowed_globals

        torch_allowed = set(_get_allowed_globals())
    except ImportError:  # pragma: no cover - another torch: count every torch.* name as allowed
        torch_allowed = None
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in TORCH_SAFE_GLOBALS} | (torch_allowed or set())
    found: list[str] = []
    strings: list[str] = []
    with open(path, "rb") as fh:
        for _ in range(pickles):
            try:
                for op, arg, _pos in pickletools.genops(fh):
                    if op.name in _STRING_OPS:
                        strings.append(str(arg))
                    elif op.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
            except Exception:  # the end of the pickles, or damage: report what was read so far
                break
    unsafe = [n for n in dict.fromkeys(found) if n not in allowed and n not in HARMLESS_GLOBALS
              and (torch_allowed is not None or not n.startswith("torch."))]
    return unsafe[:5]


def _refused_message(path: Path, names: list[str] | None = None, why: str = "") -> str:
    """The refusal line; ``names``: the refused globals (read from opcodes when None), ``why``: a weight fault."""
    if names is None:
        names = _unsafe_globals(path) if _starts_with(path, _ZIP_MAGIC) else _scan_pickle_globals(path)
    what = f" ({', '.join(names)})" if names else ""
    return (
        f"refused to load {path}: it contains pickled Python objects{what} that could run code"
        f"{', and ' + why if why else ''}; "
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
    # Sorted: torch returns a set. Plain containers (builtins.dict, collections.defaultdict) refuse
    # nothing dangerous, so the message names only the objects that stop the file from loading.
    return sorted(name for name in names if name not in HARMLESS_GLOBALS)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the numpy allowlist."""


class RefusedObjectArray(pickle.UnpicklingError):
    """The pickle builds an object-dtype array, whose elements only a full unpickler can rebuild."""


def _numeric_dtype(*args: object) -> object:
    """``numpy.dtype(*args)`` for the unpickler, refusing dtypes that hold Python objects."""
    import numpy as np

    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise RefusedObjectArray(str(dtype))
    return dtype


def _numpy_allowlist() -> dict[tuple[str, str], object]:
    import codecs

    import numpy as np

    try:  # numpy >= 2 moved the implementation to numpy._core; pickles may name either module.
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed = {
        ("numpy", "ndarray"): np.ndarray,
        # Refuses dtype=object: its elements are arbitrary pickled objects, not weights.
        ("numpy", "dtype"): _numeric_dtype,
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
    Object-dtype arrays are refused while unpickling; arrays of strings, dates or records are
    refused after it (weights are numbers).
    """
    path = Path(path).expanduser()
    check_file(path)
    try:
        with open(path, "rb") as fh:
            obj = NumpyOnlyUnpickler(fh, encoding="latin1").load()
    except RefusedObjectArray as err:
        raise UserError(
            f"refused to load {path}: it holds a numpy array of dtype {err} (Python objects, not numbers), "
            f"which only a full unpickler can rebuild; nothing in it was executed. Re-export the weights as "
            "numeric arrays (e.g. mec-eval convert --to detectron2)"
        ) from None
    except RefusedGlobal as err:
        raise UserError(
            f"refused to load {path}: its pickle references {err}, which is not a numpy array "
            f"component; it was NOT executed. {_NEVER_UNPICKLES}"
        ) from None
    except Exception as err:  # damaged input fails anywhere in pickle/numpy; see safe_torch_load
        raise UserError(_read_failure(path, err, torch_file=False)) from None
    # Only the weights must be numbers; other entries may be metadata (author strings and the like).
    in_model = isinstance(obj, dict) and isinstance(obj.get("model"), dict)
    bad = _non_numeric_array(obj["model"], "['model']") if in_model else _non_numeric_array(obj, "")
    if bad is not None:
        where, dtype = bad
        raise UserError(f"{path}: the array at {where} has dtype {dtype}, not numbers; a weights .pkl holds "
                        "numeric arrays only (re-export it, e.g. mec-eval convert --to detectron2)")
    return obj


def _non_numeric_array(obj: object, where: str) -> tuple[str, str] | None:
    """(location, dtype) of the first numpy array or scalar in ``obj`` that is not bool/int/float/complex."""
    import numpy as np

    stack, seen = [(where, obj)], set()
    while stack:
        where, node = stack.pop()
        if id(node) in seen:  # pickles can build self-referencing containers
            continue
        seen.add(id(node))
        if isinstance(node, (np.ndarray, np.generic)):
            if node.dtype.kind not in "biufc":
                return where or "the top level", str(node.dtype)
        elif isinstance(node, dict):
            stack.extend((f"{where}[{key!r}]", value) for key, value in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{where}[{index}]", value) for index, value in enumerate(node))
    return None


def _safetensors_load(path: Path) -> object:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise UserError(f"{path} is a .safetensors file; install the 'safetensors' package to read it") from None
    check_file(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError for bad headers
        if path.stat().st_size == 0:
            raise UserError(corrupt_message(path, "the file is empty, 0 bytes")) from None
        raise UserError(corrupt_message(path, _first_line(err))) from None


def read_checkpoint_file(path: str | os.PathLike) -> tuple[object, list[str]]:
    """(the object of any supported checkpoint file, notes for the user), choosing the reader by suffix.

    ``.pkl`` -> :func:`safe_pickle_load` (detectron2), ``.safetensors`` -> safetensors (a format
    that holds tensors only), anything else -> :func:`safe_torch_load`. A torch zip file that
    ``weights_only=True`` refuses is read again by :func:`_read_foreign_objects`, which keeps only
    its weights; the note then names the objects that were ignored.
    """
    path = Path(path).expanduser()
    # A .pkl written by torch.save (zip container) is a torch file whatever its name says.
    if path.suffix == ".pkl" and not (path.is_file() and _starts_with(path, _ZIP_MAGIC)):
        return safe_pickle_load(path), []
    if path.suffix == ".safetensors":
        return _safetensors_load(path), []
    try:
        return safe_torch_load(path), []
    except RefusedPickle:
        if not (_starts_with(path, _ZIP_MAGIC) and is_plain_torch_zip(path)):
            raise
    return _read_foreign_objects(path)


def _read_foreign_objects(path: Path) -> tuple[object, list[str]]:
    """Re-read a refused (already CRC-checked) torch zip with foreign objects as inert placeholders.

    Raises:
        UserError: a known code-execution global (``os.system``, ``builtins.eval``) anywhere in the
            file, weights that are themselves foreign objects or tensor subclasses, no weight key,
            or a file the restricted reader cannot parse.
    """
    try:
        obj, foreign = restricted_torch_load(path)
    except Exception:  # untrusted bytes: any failure is the refusal the user already had
        raise RefusedPickle(_refused_message(path)) from None
    hostile = [name for name in foreign if is_hostile(name)]
    if hostile:
        raise RefusedPickle(_refused_message(path, hostile[:5]))
    try:
        clean, dropped = extract_weights(obj)
    except ForeignWeights as err:
        named = [name for name in foreign if name not in HARMLESS_GLOBALS][:5]
        raise RefusedPickle(_refused_message(path, named, f"{err}, which only running code could build")) from None
    shown = [name for name in foreign if name not in HARMLESS_GLOBALS]
    listed = ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
    note = (f"{path.name} pickles foreign Python objects ({listed or 'none named'}) that weights_only=True "
            f"refuses; they were read as inert placeholders, never imported or run, and ignored: kept only "
            f"the tensors under {', '.join(repr(k) for k in WEIGHT_KEYS if k in clean)}"
            f"{' and plain values' if len(clean) > 1 else ''}, dropped {', '.join(dropped) or 'nothing else'}")
    return clean, [note]


def load_checkpoint_file(path: str | os.PathLike) -> object:
    """:func:`read_checkpoint_file` without the notes, which are issued as a UserWarning instead."""
    obj, notes = read_checkpoint_file(path)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    return obj
