"""Read the weights out of a torch zip checkpoint that also pickles foreign Python objects.

solo-learn's Lightning ``.ckpt`` files keep ``functools.partial(solo.methods.base.static_lr, ...)``
and scheduler objects under ``lr_schedulers`` (and omegaconf configs under ``hyper_parameters``);
``torch.load(weights_only=True)`` refuses such files outright. :func:`restricted_torch_load` is
tried only after that refusal. Its unpickler resolves a small allow-list (tensor rebuilding, plain
containers, dtypes) and turns every other global into an inert :class:`ForeignObject` class: nothing
is imported, no function of the file is called. Building one only records nothing: calling it,
``NEWOBJ``/``REDUCE``, ``BUILD`` (``__setstate__``), ``SETITEMS`` and ``APPENDS`` all leave an
empty placeholder. The caller then keeps only tensors from the weight keys and refuses the file
when a weight itself is a placeholder (a tensor subclass or anything else that needs code).
"""
from __future__ import annotations

import argparse
import collections
import io
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

# Globals whose module (first dotted part) marks the file as a weapon, not a training by-product:
# these are refused even where a placeholder would be inert. A deny-list is a message, not the
# safety boundary (that is the allow-list below); it keeps exploit files loud instead of loaded.
HOSTILE_MODULES = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "shutil", "pathlib", "socket", "importlib", "runpy",
    "pickle", "_pickle", "marshal", "ctypes", "code", "codeop", "pty", "webbrowser", "urllib", "http",
    "io", "_io", "tempfile", "multiprocessing", "signal", "asyncio", "threading", "_thread", "pdb",
    "timeit", "operator", "_operator", "types", "inspect", "gc", "ssl", "ftplib", "smtplib", "telnetlib",
})
HOSTILE_BUILTINS = frozenset({
    "eval", "exec", "compile", "open", "__import__", "getattr", "setattr", "delattr", "globals", "locals",
    "vars", "breakpoint", "input", "exit", "quit", "help", "memoryview", "type", "object", "super",
})


class ForeignObject:
    """An inert stand-in for a global that the file names; each such global is its own subclass.

    Every way the unpickler can use a class or an object leads back here and keeps nothing: the
    arguments and state the file supplies are dropped, so no tensor or object hides inside.
    """

    foreign_name = "?"

    def __new__(cls, *args: object, **kwargs: object) -> ForeignObject:  # NEWOBJ, REDUCE, INST
        return object.__new__(cls)

    def __init__(self, *args: object, **kwargs: object) -> None:
        """Accept and drop the constructor arguments of the original class."""

    def __call__(self, *args: object, **kwargs: object) -> ForeignObject:  # REDUCE with an instance
        return object.__new__(type(self))

    def __reduce__(self) -> tuple:
        return (type(self), ())

    def __setstate__(self, state: object) -> None:
        """BUILD: drop the state (nothing is set on the object)."""

    def __setitem__(self, key: object, value: object) -> None:
        """SETITEM(S): drop the items."""

    def append(self, item: object) -> None:
        """APPENDS on a non-list: drop the item."""

    def extend(self, items: object) -> None:
        """APPENDS on a non-list: drop the items."""

    def __repr__(self) -> str:
        return f"<foreign {self.foreign_name}, not built>"


def _foreign_class(full_name: str) -> type:
    return type(full_name.rpartition(".")[2] or "foreign", (ForeignObject,),
                {"foreign_name": full_name, "__module__": __name__})


def _empty_hooks(hooks: object) -> bool:
    return isinstance(hooks, dict) and not hooks


def _tensor_v2(storage: object, offset: object, size: object, stride: object, requires_grad: object,
               hooks: object, metadata: object = None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2`` for plain dense tensors only (no hooks, odd arguments)."""
    plain = (isinstance(storage, torch.storage.TypedStorage) and isinstance(offset, int)
             and isinstance(size, tuple) and isinstance(stride, tuple)
             and all(isinstance(n, int) for n in (*size, *stride)) and isinstance(requires_grad, bool)
             and _empty_hooks(hooks) and (metadata is None or isinstance(metadata, dict)))
    if not plain:
        raise ValueError("a tensor record with unexpected arguments (hooks or non-integer shape)")
    return torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
                                           collections.OrderedDict(), metadata)


def _parameter(data: object, requires_grad: object, hooks: object) -> torch.Tensor:
    """``torch._utils._rebuild_parameter``, returned as the plain tensor (weights need no Parameter)."""
    if type(data) is not torch.Tensor or not isinstance(requires_grad, bool) or not _empty_hooks(hooks):
        raise ValueError("a parameter record that does not hold a plain tensor")
    return data


def _latin1(text: object, encoding: object = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only: no codec lookup)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("a _codecs.encode record other than latin-1 text")
    return text.encode("latin1")


def _allowed() -> dict[str, object]:
    """What the restricted unpickler resolves; every other global becomes a :class:`ForeignObject`."""
    allowed: dict[str, object] = {
        "torch._utils._rebuild_tensor_v2": _tensor_v2,
        "torch._utils._rebuild_parameter": _parameter,
        "torch.UntypedStorage": torch.UntypedStorage,
        "torch.Size": torch.Size,
        "torch.device": torch.device,
        "_codecs.encode": _latin1,
        "argparse.Namespace": argparse.Namespace,
        "collections.OrderedDict": collections.OrderedDict,
        "collections.defaultdict": collections.defaultdict,
        "collections.Counter": collections.Counter,
    }
    for kind in (dict, list, tuple, set, frozenset, bytearray, complex):
        allowed[f"builtins.{kind.__name__}"] = kind
    for name, value in vars(torch).items():  # vars(): no lazy submodule import through torch.__getattr__
        if isinstance(value, torch.dtype):
            allowed[f"torch.{name}"] = value
    return allowed


ALLOWED = _allowed()
# Globals a refusal message need not name: plain containers and tensor plumbing.
HARMLESS_GLOBALS = frozenset(ALLOWED) | {"torch.nn.parameter.Parameter", "torch.serialization._get_layout"}


def is_hostile(full_name: str) -> bool:
    """Whether a global is a known code-execution tool (os.system, builtins.eval, ...)."""
    module, _, name = full_name.rpartition(".")
    return module.split(".")[0] in HOSTILE_MODULES or (module == "builtins" and name in HOSTILE_BUILTINS)


class _StorageType:
    """What ``torch.<Kind>Storage`` resolves to inside the unpickler: only its dtype is used."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _storage_types() -> dict[str, _StorageType]:
    # The legacy typed-storage classes warn that they are deprecated when touched; reading their
    # dtype once here must not print that on every command's stderr.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {f"torch.{name}": _StorageType(getattr(torch, name).dtype) for name in vars(torch)
                if name.endswith("Storage") and name != "UntypedStorage"
                and isinstance(getattr(getattr(torch, name), "dtype", None), torch.dtype)}


_STORAGE_TYPES = _storage_types()


def _record_prefix(archive: zipfile.ZipFile) -> str:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise ValueError("not a torch.save zip (no single <name>/data.pkl)")
    prefix = pickles[0].rpartition("/")[0]
    if f"{prefix}/byteorder" in archive.namelist() and archive.read(f"{prefix}/byteorder").strip() != b"little":
        raise ValueError("a big-endian torch file")
    return prefix


def _unpickler(archive: zipfile.ZipFile, prefix: str, found: dict[str, None]) -> pickle.Unpickler:
    """Our own unpickler over ``data.pkl``: the allow-list, placeholders, storages read from the zip."""
    classes: dict[str, type] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            full_name = f"{module}.{name}"
            if full_name in ALLOWED:
                return ALLOWED[full_name]
            if full_name in _STORAGE_TYPES:
                return _STORAGE_TYPES[full_name]
            found.setdefault(full_name)
            if full_name not in classes:
                classes[full_name] = _foreign_class(full_name)
            return classes[full_name]

        def persistent_load(self, pid: object) -> torch.storage.TypedStorage:
            # torch.save's storage record: ("storage", storage type, key, location, element count).
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise pickle.UnpicklingError(f"an unexpected persistent record {str(pid)[:60]}")
            _, kind, key, _location, numel = pid
            dtype = torch.uint8 if kind is torch.UntypedStorage else getattr(kind, "dtype", None)
            if not isinstance(dtype, torch.dtype) or not isinstance(numel, int) or not isinstance(key, str):
                raise pickle.UnpicklingError("a storage record of an unknown kind")
            data = archive.read(f"{prefix}/data/{key}")
            if len(data) != numel * torch._utils._element_size(dtype):
                raise pickle.UnpicklingError(f"storage {key} holds {len(data)} bytes, not {numel} elements")
            raw = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
            return torch.storage.TypedStorage(wrap_storage=raw.untyped_storage(), dtype=dtype, _internal=True)

    return Unpickler(io.BytesIO(archive.read(f"{prefix}/data.pkl")))


def is_plain_torch_zip(path: Path) -> bool:
    """A torch.save zip (``data.pkl``), not a TorchScript archive."""
    with zipfile.ZipFile(path) as archive:
        names = {n.rpartition("/")[2] for n in archive.namelist()}
    return "data.pkl" in names and "constants.pkl" not in names


def restricted_torch_load(path: Path) -> tuple[object, list[str]]:
    """(the unpickled object, the foreign globals turned into placeholders, in order of appearance).

    Only for zip files that :func:`is_plain_torch_zip` accepts. The file is read with our own
    unpickler (never ``torch.load`` without ``weights_only``): globals resolve through the allow-list
    or become placeholders, and storages are built from the zip's records as bytes, so no code the
    file names is imported or run.
    """
    found: dict[str, None] = {}
    with zipfile.ZipFile(path) as archive:
        obj = _unpickler(archive, _record_prefix(archive), found).load()
    return obj, list(found)


# Where checkpoint formats that pickle foreign objects keep their weights (Lightning / solo-learn).
WEIGHT_KEYS = ("state_dict",)
_PLAIN = (str, int, float, bool, type(None))


class ForeignWeights(ValueError):
    """A weight entry is not a plain tensor map; ``args[0]`` says where and what it is."""


def _what(value: object) -> str:
    if isinstance(value, ForeignObject):
        return f"a pickled {value.foreign_name} object"
    if isinstance(value, torch.Tensor):
        return f"a {type(value).__module__}.{type(value).__qualname__} (a tensor subclass)"
    return f"a {type(value).__name__}"


def extract_weights(obj: object) -> tuple[dict, list[str]]:
    """(the weight keys' tensors plus the plain top-level values, the names of the dropped entries).

    Raises:
        ForeignWeights: no weight key, or a weight key whose value is not a ``{str: torch.Tensor}``
            dict of plain tensors (a placeholder, a tensor subclass).
    """
    if not isinstance(obj, dict):
        raise ForeignWeights(f"the file holds {_what(obj)}, not a dict with {' or '.join(WEIGHT_KEYS)}")
    present = [key for key in WEIGHT_KEYS if key in obj]
    if not present:
        raise ForeignWeights(f"no weights under {' or '.join(repr(k) for k in WEIGHT_KEYS)} besides the objects")
    clean: dict = {}
    for key in present:
        weights = obj[key]
        if not isinstance(weights, dict):
            raise ForeignWeights(f"its weights [{key!r}] are {_what(weights)}")
        for name, value in weights.items():
            if not isinstance(name, str) or type(value) is not torch.Tensor:
                raise ForeignWeights(f"its weight [{key!r}][{str(name)[:60]!r}] is {_what(value)}")
        clean[key] = dict(weights)  # a plain dict: attributes the file set on its OrderedDict are dropped
    dropped = []
    for key, value in obj.items():
        if key in clean:
            continue
        if isinstance(key, str) and isinstance(value, _PLAIN):
            clean[key] = value
        else:
            dropped.append(str(key)[:40])
    return clean, dropped
