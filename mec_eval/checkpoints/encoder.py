"""Turn a checkpoint spec (path, ``random:<arch>``, ``manifest:<name>``) into a loaded backbone.

Every task receives an :class:`Encoder`: the backbone in eval mode plus where it came from, which
goes into ``result.json`` as ``"checkpoint"``. Loading is strict: a key missing, left over or of the
wrong shape is an error that lists them, never ``strict=False`` in silence.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mec_eval.checkpoints.canonical import make_canonical, save_canonical
from mec_eval.checkpoints.export import export_detectron2, export_torchvision
from mec_eval.checkpoints.layouts import to_canonical
from mec_eval.checkpoints.manifest import fetch_checkpoint
from mec_eval.checkpoints.safe_load import load_checkpoint_file
from mec_eval.models import build_backbone
from mec_eval.utils import UserError, sha256_file

RANDOM_SEED = 0
CONVERT_TARGETS = ("detectron2", "torchvision", "canonical")
_SPEC_HELP = "CKPT is a file path, random:<arch> or manifest:<name>"
_SUFFIXES = {".pt", ".pth", ".tar", ".pkl", ".torch", ".ckpt", ".safetensors", ".bin"}
# File stems that say nothing about the run (every pre-training writes last.pt): prefix the folder.
_GENERIC_STEM = re.compile(r"^(last|checkpoint([_-]?\d+)?|model_best|model_final.*)$")


@dataclass
class Encoder:
    """A loaded backbone and its provenance."""

    backbone: nn.Module
    arch: str
    name: str
    path: str
    sha256: str | None
    layout: str
    method: str | None = None
    epoch: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def feature_dim(self) -> int:
        """Width of the pooled feature the backbone returns."""
        return int(self.backbone.feature_dim)

    def provenance(self) -> dict:
        """The ``"checkpoint"`` block of ``result.json``."""
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "layout": self.layout,
                "method": self.method, "epoch": self.epoch}


@dataclass
class ResolvedCheckpoint:
    """A checkpoint spec read and converted to canonical form, before any module is built."""

    canonical: dict
    name: str
    path: str
    sha256: str | None
    layout: str
    notes: list[str]


def _listing(title: str, items: list[str]) -> str:
    more = f" ... (+{len(items) - 10} more)" if len(items) > 10 else ""
    return f"{len(items)} {title}: {', '.join(items[:10])}{more}"


def load_backbone_weights(model: nn.Module, state_dict: Mapping, source: str, *, arch: str | None = None) -> list[str]:
    """Load ``state_dict`` into ``model`` strictly; returns notes for the user.

    BatchNorm ``num_batches_tracked`` counters absent from older files (torchvision's pre-1.0
    releases) are set to 0: they count updates and are not weights; everything else must match.

    Raises:
        UserError: listing missing keys, unexpected keys and shape mismatches (first 10 of each).
    """
    expected = model.state_dict()
    given = dict(state_dict)
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    mismatched = [f"{k} (file {tuple(given[k].shape)} vs model {tuple(expected[k].shape)})"
                  for k in given if k in expected and tuple(given[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        problems = [_listing(title, items) for title, items in
                    (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
                    if items]
        target = arch or type(model).__name__
        raise UserError(f"checkpoint {source} does not fit the {target} backbone: {'; '.join(problems)}. "
                        "Pick the matching architecture or check that the file holds a ResNet backbone")
    filled = [k for k in expected if k not in given]
    for key in filled:
        given[key] = torch.zeros_like(expected[key])
    model.load_state_dict(given, strict=True)
    if filled:
        return [f"{len(filled)} BatchNorm num_batches_tracked counters were absent from the file and set to 0"]
    return []


def _short_name(path: Path) -> str:
    """A run-folder id from the file name: suffixes dropped, generic stems prefixed by the folder."""
    name = path.name
    while Path(name).suffix in _SUFFIXES:
        name = Path(name).stem
    if _GENERIC_STEM.match(name) and path.parent.name:
        name = f"{path.parent.name}-{name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "checkpoint"


def _random_arch(spec: str, arch: str | None) -> tuple[str, int]:
    """``random:<arch>`` or ``random:<arch>@<seed>`` -> (arch, seed)."""
    spec_arch, _, seed_text = spec[len("random:"):].partition("@")
    if not spec_arch:
        raise UserError(f"'{spec}' names no architecture; {_SPEC_HELP}")
    if arch and arch != spec_arch:
        raise UserError(f"'{spec}' conflicts with the requested architecture '{arch}'")
    if seed_text and not seed_text.isdigit():
        raise UserError(f"'{spec}': the seed after '@' must be a non-negative integer")
    return spec_arch, int(seed_text or RANDOM_SEED)


def _random_name(arch: str, seed: int) -> str:
    return f"random-{arch}" if seed == RANDOM_SEED else f"random-{arch}-s{seed}"


def _random_backbone(arch: str, seed: int) -> nn.Module:
    # fork_rng keeps the caller's global RNG untouched; a fixed seed makes random:<arch> reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(arch)


def _read_file(path: Path, name: str, sha256: str | None, arch: str | None) -> ResolvedCheckpoint:
    obj = load_checkpoint_file(path)
    canonical, layout, notes = to_canonical(obj, str(path), arch=arch)
    return ResolvedCheckpoint(canonical, name, str(path), sha256 or sha256_file(path), layout, notes)


def resolve_checkpoint(spec: str, *, arch: str | None = None) -> ResolvedCheckpoint:
    """Read ``spec`` and convert it to canonical form (layout detected, architecture inferred)."""
    if spec.startswith("random:"):
        spec_arch, seed = _random_arch(spec, arch)
        model = _random_backbone(spec_arch, seed)
        canonical = make_canonical(spec_arch, model.state_dict(), meta={"method": "random"})
        return ResolvedCheckpoint(canonical, _random_name(spec_arch, seed), spec, None, "random",
                                  [f"random initialisation (torch.manual_seed({seed}))"])
    if spec.startswith("manifest:"):
        path, entry, sha256 = fetch_checkpoint(spec[len("manifest:"):])
        resolved = _read_file(path, entry["name"], sha256, arch or entry.get("arch"))
        if resolved.layout != entry["layout"]:
            resolved.notes.append(f"manifest says layout '{entry['layout']}', detected '{resolved.layout}'")
        return resolved
    path = Path(os.path.expanduser(spec))
    if not path.is_file():
        raise UserError(f"checkpoint not found: {spec} ({_SPEC_HELP})")
    return _read_file(path, _short_name(path), None, arch)


def _build(resolved: ResolvedCheckpoint) -> tuple[nn.Module, list[str]]:
    arch = resolved.canonical["arch"]
    model = build_backbone(arch)
    notes = load_backbone_weights(model, resolved.canonical["backbone"], resolved.path, arch=arch)
    return model.eval(), resolved.notes + notes


def load_encoder(spec: str, *, arch: str | None = None) -> Encoder:
    """Load a backbone from a path, ``random:<arch>`` or ``manifest:<name>``.

    Args:
        spec: the checkpoint spec of the CLI's ``--ckpt``.
        arch: force the architecture instead of inferring it from parameter names and shapes.
    """
    if spec.startswith("random:"):
        spec_arch, seed = _random_arch(spec, arch)
        return Encoder(_random_backbone(spec_arch, seed).eval(), spec_arch, _random_name(spec_arch, seed), spec,
                       None, "random", None, None, [f"random initialisation (torch.manual_seed({seed}))"])
    resolved = resolve_checkpoint(spec, arch=arch)
    model, notes = _build(resolved)
    meta = resolved.canonical["meta"]
    return Encoder(model, resolved.canonical["arch"], resolved.name, resolved.path, resolved.sha256,
                   resolved.layout, meta.get("method"), meta.get("epoch"), notes)


def convert_checkpoint(spec: str, to: str, out: str | os.PathLike, *, arch: str | None = None) -> str:
    """Write ``spec`` as a detectron2 ``.pkl``, a torchvision state dict or a canonical file.

    The weights are first loaded strictly into the architecture's backbone, so a file that would
    not load for evaluation is never exported. Returns the detected layout.
    """
    if to not in CONVERT_TARGETS:
        raise UserError(f"unknown conversion target '{to}' (choose from {', '.join(CONVERT_TARGETS)})")
    resolved = resolve_checkpoint(spec, arch=arch)
    model, _ = _build(resolved)
    if to == "canonical":
        save_canonical(resolved.canonical, out)
    elif to == "torchvision":
        export_torchvision(model, out)
    else:
        export_detectron2(model, out)
    return resolved.layout
