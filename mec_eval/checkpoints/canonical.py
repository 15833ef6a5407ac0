"""The canonical checkpoint ``mec-eval/1`` and the state-dict hygiene every loader shares.

A canonical checkpoint is a plain dict that ``torch.load(..., weights_only=True)`` can read::

    {"format": "mec-eval/1", "arch": "resnet50",
     "backbone": {torchvision names, no fc}, "heads": {name: state_dict},
     "teacher": state_dict | None, "meta": {"method": ..., "epoch": ..., "config": {...}}}

Tensors are cloned to contiguous CPU memory so a saved file never drags along a view of a larger
storage (optimizer state, a whole DDP model) and loads on machines without a GPU.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping

import torch

from mec_eval.utils import atomic_torch_save

FORMAT = "mec-eval/1"
CANONICAL_KEYS = ("format", "arch", "backbone", "heads", "teacher", "meta")

# Wrapper prefixes added by DistributedDataParallel/DataParallel and torch.compile (timm's list).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_PLAIN = (str, int, float, bool, type(None))


def clean_state_dict(state_dict: Mapping) -> dict[str, torch.Tensor]:
    """Drop DDP/compile wrapper prefixes from every key (timm's ``clean_state_dict``)."""
    cleaned = {}
    for key, value in state_dict.items():
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        cleaned[key] = value
    return cleaned


def select_prefix(state_dict: Mapping, prefix: str) -> dict:
    """The entries whose key starts with ``prefix``, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def strip_fc(state_dict: Mapping) -> tuple[dict, list[str]]:
    """Split off the classifier/projector ``fc.*`` keys; returns (backbone entries, dropped keys)."""
    kept = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    return kept, [k for k in state_dict if k.startswith("fc.")]


def _tensor_dict(state_dict: object, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{what} must be a state dict (mapping of name -> tensor), got {type(state_dict).__name__}")
    out = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"{what} has a non-string key {key!r}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{what}['{key}'] is a {type(value).__name__}, not a tensor")
        # weights_only reads sparse and data-less "meta" tensors too; neither holds dense weights.
        if value.layout != torch.strided or value.is_meta:
            kind = "meta (no data)" if value.is_meta else str(value.layout).replace("torch.", "")
            raise TypeError(f"{what}['{key}'] is a {kind} tensor, not a dense one with data")
        out[key] = value.detach().to("cpu").contiguous().clone()
    return out


def _check_plain(value: object, where: str) -> None:
    """Meta must survive ``weights_only=True``: plain containers, scalars, strings and tensors only."""
    if isinstance(value, _PLAIN) or isinstance(value, torch.Tensor):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; use str keys")
            _check_plain(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; canonical meta may hold only str/int/float/bool/None, "
        "lists, dicts and tensors so that weights_only=True can read it"
    )


def check_meta_types(meta: Mapping) -> dict:
    """The provenance fields of ``meta`` type-checked: ``epoch`` a whole number >= 0 or None
    (an int-valued float becomes int), ``method`` and ``arch`` strings or None.

    Raises:
        ValueError: naming the key, its value and what it must be.
    """
    out = dict(meta)
    epoch = out.get("epoch")
    if epoch is not None:
        whole = isinstance(epoch, int) or (isinstance(epoch, float) and math.isfinite(epoch) and epoch.is_integer())
        if isinstance(epoch, bool) or not whole or epoch < 0:
            raise ValueError(f"meta.epoch is {_shown(epoch)} ({type(epoch).__name__}); it must be a whole "
                             "number of epochs >= 0 or absent")
        out["epoch"] = int(epoch)
    for key in ("method", "arch"):
        value = out.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"meta.{key} is {_shown(value)} ({type(value).__name__}); it must be a string or absent")
    return out


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, (str, int, float, bool)) else f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."


def make_canonical(
    arch: str,
    backbone: Mapping,
    heads: Mapping | None = None,
    teacher: Mapping | None = None,
    meta: Mapping | None = None,
) -> dict:
    """Validate the parts and assemble a canonical ``mec-eval/1`` dict.

    ``fc.*`` keys are removed from ``backbone`` and ``teacher`` (the backbone ends at the pooled
    feature); every tensor is cloned to contiguous CPU memory. ``meta`` gets ``method``, ``epoch``
    and ``config`` defaults when absent; its provenance fields are type-checked
    (:func:`check_meta_types`).

    Raises:
        TypeError / ValueError: a part has the wrong type, or meta holds a non-plain object.
    """
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"arch must be a non-empty string, got {arch!r}")
    backbone_sd, _ = strip_fc(_tensor_dict(backbone, "backbone"))
    if not backbone_sd:
        raise ValueError("backbone state dict is empty")
    heads_sd = {}
    for name, head in (heads or {}).items():
        if not isinstance(name, str):
            raise TypeError(f"head names must be strings, got {name!r}")
        heads_sd[name] = _tensor_dict(head, f"heads['{name}']")
    teacher_sd = None if teacher is None else strip_fc(_tensor_dict(teacher, "teacher"))[0]
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    meta_out = check_meta_types(meta or {})
    meta_out.setdefault("method", None)
    meta_out.setdefault("epoch", None)
    meta_out.setdefault("config", {})
    _check_plain(meta_out, "meta")
    return {
        "format": FORMAT,
        "arch": arch,
        "backbone": backbone_sd,
        "heads": heads_sd,
        "teacher": teacher_sd,
        "meta": meta_out,
    }


def is_canonical(obj: object) -> bool:
    """True when ``obj`` has the ``mec-eval/1`` structure (format tag, backbone mapping, meta dict)."""
    return (
        isinstance(obj, Mapping)
        and obj.get("format") == FORMAT
        and isinstance(obj.get("arch"), str)
        and isinstance(obj.get("backbone"), Mapping)
        and isinstance(obj.get("heads", {}), Mapping)
        and (obj.get("teacher") is None or isinstance(obj.get("teacher"), Mapping))
        and isinstance(obj.get("meta", {}), Mapping)
    )


def save_canonical(ckpt: Mapping, path: str | os.PathLike) -> None:
    """Write a canonical checkpoint atomically (temp file, fsync, rename)."""
    if not is_canonical(ckpt):
        raise ValueError(f"not a {FORMAT} checkpoint; build it with make_canonical()")
    atomic_torch_save(dict(ckpt), path)
