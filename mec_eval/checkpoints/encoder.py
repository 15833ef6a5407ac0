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
from torchvision.models.resnet import ResNet

from mec_eval.checkpoints.canonical import make_canonical, save_canonical
from mec_eval.checkpoints.detectron2_import import save_detector_canonical
from mec_eval.checkpoints.export import export_detectron2, export_torchvision
from mec_eval.checkpoints.layouts import LAYOUTS, convert_to_canonical, explain_arch
from mec_eval.checkpoints.manifest import fetch_checkpoint
from mec_eval.checkpoints.safe_load import (
    CHECKPOINT_SUFFIXES,
    folder_message,
    read_checkpoint_file,
)
from mec_eval.models import build_backbone
from mec_eval.utils import UserError, sha256_file

RANDOM_SEED = 0
CONVERT_TARGETS = ("detectron2", "torchvision", "canonical")
_SPEC_HELP = "CKPT is a file path, random:<arch> or manifest:<name>"
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
    # Where ``arch`` came from: "random spec", "user", "manifest", "checkpoint file" or
    # "detected from weights: <rule>" (see layouts.explain_arch).
    arch_source: str | None = None

    @property
    def feature_dim(self) -> int:
        """Width of the pooled feature the backbone returns."""
        return int(self.backbone.feature_dim)

    def provenance(self) -> dict:
        """The ``"checkpoint"`` block of ``result.json`` (``path`` is absolute for files)."""
        return {"name": self.name, "path": self.path, "sha256": self.sha256, "layout": self.layout,
                "method": self.method, "epoch": self.epoch, "arch": self.arch, "arch_source": self.arch_source}


def require_resnet(encoder: Encoder, task_name: str) -> None:
    """One-line UserError unless ``encoder`` is a ResNet: for tasks built on its stages (R50-C4 detection's
    res4/res5 split, UniTrack's stride-8 layer3 features), which a ViT does not have."""
    if not isinstance(encoder.backbone, ResNet):
        raise UserError(f"task '{task_name}' needs a ResNet backbone (it uses the ResNet stages), but {encoder.name} "
                        f"is a {encoder.arch}; evaluate a ViT with knn, linear-fast, linear, semi, transfer-finetune "
                        "or diagnostics")


@dataclass
class ResolvedCheckpoint:
    """A checkpoint spec read and converted to canonical form, before any module is built."""

    canonical: dict
    name: str
    path: str
    sha256: str | None
    layout: str
    notes: list[str]
    arch_source: str | None = None


def _listing(title: str, items: list[str], shown: int) -> str:
    """``"165 missing (a, b, c, ...)"``: a count and the first few, each cut to 60 characters."""
    head = [item if len(item) <= 60 else item[:57] + "..." for item in items[:shown]]
    return f"{len(items)} {title} ({', '.join(head)}{', ...' if len(items) > shown else ''})"


def _shape(shape: torch.Size) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _fit_problems(expected: Mapping, given: Mapping) -> list[str]:
    """Missing / unexpected / wrong-shape / wrong-dtype keys, summarised as counts plus a few names."""
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    common = [k for k in given if k in expected]
    mismatched = [f"{k} file {_shape(given[k].shape)}, model {_shape(expected[k].shape)}"
                  for k in common if tuple(given[k].shape) != tuple(expected[k].shape)]
    wrong_dtype = [f"{k} {str(given[k].dtype).replace('torch.', '')}" for k in common
                   if expected[k].is_floating_point() and not given[k].is_floating_point()]
    return [_listing(title, items, shown) for title, items, shown in
            (("missing", missing, 3), ("unexpected", unexpected, 3), ("wrong shape", mismatched, 1),
             ("not floating point", wrong_dtype, 2)) if items]


def _guess(state_dict: Mapping, target: str) -> str:
    try:
        guess = explain_arch(state_dict)[0]
    except UserError:  # no registered architecture is close: the generic advice stands
        return ""
    return f"; the weights look like {guess}" if guess != target else ""


def load_backbone_weights(model: nn.Module, state_dict: Mapping, source: str, *, arch: str | None = None) -> list[str]:
    """Load ``state_dict`` into ``model`` strictly; returns notes for the user.

    BatchNorm ``num_batches_tracked`` counters absent from older files (torchvision's pre-1.0
    releases) are set to 0: they count updates and are not weights; everything else must match.

    Raises:
        UserError: one line with the count and the first few of the missing keys, unexpected keys,
            shape and dtype mismatches; or naming a tensor that holds NaN/inf.
    """
    expected = model.state_dict()
    given = dict(state_dict)
    problems = _fit_problems(expected, given)
    if problems:
        target = arch or type(model).__name__
        raise UserError(f"{source} does not fit the {target} backbone: {'; '.join(problems)}"
                        f"{_guess(given, target)}; pick the matching architecture")
    bad = [k for k, v in given.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"checkpoint {source} holds NaN or infinite values in {len(bad)} backbone tensors "
                        f"(first: {bad[0][:60]}); the file is corrupt or its training diverged")
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
    while Path(name).suffix in CHECKPOINT_SUFFIXES:
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


def _read_file(path: Path, name: str, sha256: str | None, arch: str | None,
               arch_origin: str = "user", layout: str | None = None) -> ResolvedCheckpoint:
    path = path.resolve()  # provenance records where the file is, whatever the working directory
    obj, read_notes = read_checkpoint_file(path)
    converted = convert_to_canonical(obj, str(path), arch=arch, layout=layout)
    arch_source = arch_origin if converted.arch_source == "user" else converted.arch_source
    notes = read_notes + converted.notes + ([f"layout '{layout}' forced by the user"] if layout else [])
    return ResolvedCheckpoint(converted.canonical, name, str(path), sha256 or sha256_file(path), converted.layout,
                              notes, arch_source)


def _check_layout(spec: str, layout: str | None) -> None:
    """UserError for a layout name that is not registered (with close matches), or one given for random:."""
    if layout is None:
        return
    if spec.startswith("random:"):
        raise UserError(f"layout '{layout}' was given for '{spec}', which reads no file; drop the layout")
    try:
        LAYOUTS.get(layout)
    except UserError as err:
        raise UserError(f"{err}; pass one of these as the layout of {spec}") from None


def resolve_checkpoint(spec: str, *, arch: str | None = None, layout: str | None = None) -> ResolvedCheckpoint:
    """Read ``spec`` and convert it to canonical form (layout detected unless forced, architecture inferred)."""
    _check_layout(spec, layout)
    if spec.startswith("random:"):
        spec_arch, seed = _random_arch(spec, arch)
        model = _random_backbone(spec_arch, seed)
        canonical = make_canonical(spec_arch, model.state_dict(), meta={"method": "random"})
        return ResolvedCheckpoint(canonical, _random_name(spec_arch, seed), spec, None, "random",
                                  [f"random initialisation (torch.manual_seed({seed}))"], "random spec")
    if spec.startswith("manifest:"):
        path, entry, sha256 = fetch_checkpoint(spec[len("manifest:"):])
        resolved = _read_file(path, entry["name"], sha256, arch or entry.get("arch"),
                              "user" if arch else "manifest", layout)
        if resolved.layout != entry["layout"]:
            resolved.notes.append(f"manifest says layout '{entry['layout']}', read as '{resolved.layout}'")
        return resolved
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        raise UserError(folder_message(path))
    if not path.is_file():
        raise UserError(f"checkpoint not found: {spec} ({_SPEC_HELP})")
    return _read_file(path, _short_name(path), None, arch, layout=layout)


def _build(resolved: ResolvedCheckpoint) -> tuple[nn.Module, list[str]]:
    arch = resolved.canonical["arch"]
    model = build_backbone(arch)
    notes = load_backbone_weights(model, resolved.canonical["backbone"], resolved.path, arch=arch)
    return model.eval(), resolved.notes + notes


def load_encoder(spec: str, *, arch: str | None = None, layout: str | None = None) -> Encoder:
    """Load a backbone from a path, ``random:<arch>`` or ``manifest:<name>``.

    Args:
        spec: the checkpoint spec of the CLI's ``--ckpt``.
        arch: force the architecture instead of inferring it from parameter names and shapes.
        layout: force one of ``LAYOUTS.names()`` instead of detecting it; a layout that does not
            fit the file fails like any mismatch (the missing/unexpected backbone keys are listed).
    """
    _check_layout(spec, layout)
    if spec.startswith("random:"):
        spec_arch, seed = _random_arch(spec, arch)
        return Encoder(_random_backbone(spec_arch, seed).eval(), spec_arch, _random_name(spec_arch, seed), spec,
                       None, "random", None, None, [f"random initialisation (torch.manual_seed({seed}))"],
                       "random spec")
    resolved = resolve_checkpoint(spec, arch=arch, layout=layout)
    model, notes = _build(resolved)
    meta = resolved.canonical["meta"]  # types checked by make_canonical: method str|None, epoch int|None
    return Encoder(model, resolved.canonical["arch"], resolved.name, resolved.path, resolved.sha256,
                   resolved.layout, meta.get("method"), meta.get("epoch"), notes, resolved.arch_source)


def check_output_file(out: Path, force: bool) -> None:
    """UserError unless ``out`` can be written: not a folder, not an existing file (unless ``force``),
    in an existing, writable folder. Runs before anything is read, so a refusal creates nothing."""
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file path such as {out / ('model' + (out.suffix or '.pt'))}")
    if out.exists() or out.is_symlink():
        if not force:
            raise UserError(f"--out {out} already exists; pass --force to overwrite it, or choose another path")
        if not out.is_file():
            raise UserError(f"--out {out} exists and is not a regular file; choose another path")
    parent = out.absolute().parent
    if not parent.is_dir():
        what = "does not exist" if not parent.exists() else "is not a folder"
        raise UserError(f"cannot write --out {out}: its folder {parent} {what}; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write --out {out}: no write permission in {parent}")


def convert_checkpoint(spec: str, to: str, out: str | os.PathLike, *, arch: str | None = None,
                       layout: str | None = None, force: bool = False) -> str:
    """Write ``spec`` as a detectron2 ``.pkl``, a torchvision state dict or a canonical file.

    The weights are first loaded strictly into the architecture's backbone, so a file that would
    not load for evaluation is never exported. The file is written atomically. Returns the detected
    layout.

    Args:
        arch, layout: force the architecture / layout, as in :func:`load_encoder`.
        force: overwrite ``out`` when it exists (without it, an existing ``out`` is a UserError).
    Raises:
        UserError: unknown target, an unreadable ``spec``, or an ``out`` that is a folder, exists
            (without ``force``) or lies in a missing/unwritable folder; nothing is written then.
    """
    if to not in CONVERT_TARGETS:
        raise UserError(f"unknown conversion target '{to}' (choose from {', '.join(CONVERT_TARGETS)})")
    out = Path(out).expanduser()
    check_output_file(out, force)
    if to == "canonical" and layout is None and save_detector_canonical(spec, out):
        return "detectron2 R50-C4 detector"  # heads["rcnn_c4"]: the engine's detector (checkpoints.detectron2_import)
    resolved = resolve_checkpoint(spec, arch=arch, layout=layout)
    model, _ = _build(resolved)
    try:
        if to == "canonical":
            save_canonical(resolved.canonical, out)
        elif to == "torchvision":
            export_torchvision(model, out)
        else:
            export_detectron2(model, out)
    except OSError as err:  # disk full, quota, a folder replaced meanwhile: the atomic write left nothing
        raise UserError(f"cannot write --out {out}: {err.strerror or err}") from None
    return resolved.layout
