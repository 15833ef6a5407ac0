"""Recognise the layout of a loaded checkpoint and convert it to the canonical ``mec-eval/1`` dict.

Each layout is a detector (is this object in my layout?) plus a converter (give me the backbone,
heads, teacher and meta). Detectors are written to be mutually exclusive; :func:`to_canonical`
checks that exactly one matches, so a checkpoint is never silently read the wrong way. The key
names come from the official code of each project (cited per layout).
"""
from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from mec_eval.checkpoints.canonical import (
    FORMAT,
    clean_state_dict,
    is_canonical,
    make_canonical,
    select_prefix,
    strip_fc,
)
from mec_eval.checkpoints.export import detectron2_to_torchvision
from mec_eval.models import BACKBONES, build_backbone
from mec_eval.registry import Registry
from mec_eval.utils import UserError


@dataclass
class Parts:
    """What a converter extracts; ``backbone`` has torchvision names (``fc`` may still be present)."""

    backbone: dict
    heads: dict = field(default_factory=dict)
    teacher: dict | None = None
    meta: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    arch: str | None = None  # set when the file states it authoritatively (canonical files)


@dataclass(frozen=True)
class Layout:
    """A checkpoint layout: ``detect(obj) -> bool`` and ``convert(obj) -> Parts``."""

    name: str
    detect: Callable[[object], bool]
    convert: Callable[[object], Parts]


LAYOUTS: Registry = Registry("checkpoint layout")


def _layout(name: str, help: str, detect: Callable[[object], bool]) -> Callable:
    def register(convert: Callable[[object], Parts]) -> Callable[[object], Parts]:
        LAYOUTS.register(name, help=help)(Layout(name, detect, convert))
        return convert

    return register


# ----------------------------------------------------------------------------- helpers
def _is_tensor_map(value: object) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _sd_at(obj: object, key: str) -> dict | None:
    """``obj[key]`` with wrapper prefixes removed, when it is a state dict; else None."""
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return clean_state_dict(value) if _is_tensor_map(value) else None


def _has_prefix(state_dict: Mapping | None, prefix: str) -> bool:
    return state_dict is not None and any(k.startswith(prefix) for k in state_dict)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _source_arch(obj: Mapping) -> str | None:
    """The ``arch`` string training scripts store (torchvision/timm model name), kept as a hint."""
    arch = obj.get("arch")
    return arch if isinstance(arch, str) else None


def _plain_config(obj: object) -> dict:
    """The plain-valued entries of an argparse namespace or dict (for meta.config)."""
    items = vars(obj) if isinstance(obj, argparse.Namespace) else obj if isinstance(obj, Mapping) else {}
    plain = (str, int, float, bool, type(None))
    return {
        str(k): (list(v) if isinstance(v, (list, tuple)) else v)
        for k, v in items.items()
        if isinstance(v, plain) or (isinstance(v, (list, tuple)) and all(isinstance(x, plain) for x in v))
    }


def _leftover_note(state_dict: Mapping, used_prefixes: tuple[str, ...], why: str) -> list[str]:
    left = [k for k in state_dict if not k.startswith(used_prefixes)]
    if not left:
        return []
    roots = sorted({k.split(".")[0] for k in left})
    return [f"ignored {len(left)} tensors under {', '.join(r + '.*' for r in roots)} ({why})"]


def _split_encoder(state_dict: Mapping, prefix: str) -> tuple[dict, dict]:
    """(backbone without fc, projector = the ``fc.*`` MLP) of an encoder stored under ``prefix``."""
    encoder = select_prefix(state_dict, prefix)
    backbone, _ = strip_fc(encoder)
    return backbone, select_prefix(encoder, "fc.")


# ----------------------------------------------------------------------------- layouts
@_layout("mec-eval", "our canonical mec-eval/1 files (pre-training output, `mec-eval convert --to canonical`)",
         detect=is_canonical)
def _convert_canonical(obj: Mapping) -> Parts:
    return Parts(backbone=dict(obj["backbone"]), heads=dict(obj.get("heads") or {}),
                 teacher=obj.get("teacher"), meta=dict(obj.get("meta") or {}), arch=obj["arch"])


def _detect_mec_official(obj: object) -> bool:
    sd = _sd_at(obj, "state_dict")
    return sd is not None and "encoder.conv1.weight" in sd and _has_prefix(sd, "teacher.")


@_layout("mec-official", "xinliu20/MEC main_pretrain.py: state_dict with module.encoder/predictor/teacher",
         detect=_detect_mec_official)
def _convert_mec_official(obj: Mapping) -> Parts:
    sd = _sd_at(obj, "state_dict")
    backbone, projector = _split_encoder(sd, "encoder.")
    teacher, teacher_projector = _split_encoder(sd, "teacher.")
    heads = {"projector": projector, "predictor": select_prefix(sd, "predictor."),
             "teacher_projector": teacher_projector}
    notes = [
        "backbone = the student encoder (module.encoder.* minus fc), as the official linear probe loads it",
        "EMA teacher backbone kept as 'teacher'; projector, predictor and teacher projector kept as heads",
        *_leftover_note(sd, ("encoder.", "teacher.", "predictor."), "not part of the MEC model"),
    ]
    meta = {"method": "mec", "epoch": _int_or_none(obj.get("epoch")),
            "config": {"source_arch": _source_arch(obj)}}
    return Parts(backbone, {k: v for k, v in heads.items() if v}, teacher, meta, notes)


def _detect_simsiam(obj: object) -> bool:
    sd = _sd_at(obj, "state_dict")
    return sd is not None and "encoder.conv1.weight" in sd and not _has_prefix(sd, "teacher.")


@_layout("simsiam", "facebookresearch/simsiam main_simsiam.py: state_dict with module.encoder/predictor, no teacher",
         detect=_detect_simsiam)
def _convert_simsiam(obj: Mapping) -> Parts:
    sd = _sd_at(obj, "state_dict")
    backbone, projector = _split_encoder(sd, "encoder.")
    heads = {"projector": projector, "predictor": select_prefix(sd, "predictor.")}
    notes = ["backbone = module.encoder.* minus fc (the projector), as SimSiam's main_lincls.py loads it",
             *_leftover_note(sd, ("encoder.", "predictor."), "not part of the SimSiam model")]
    meta = {"method": "simsiam", "epoch": _int_or_none(obj.get("epoch")),
            "config": {"source_arch": _source_arch(obj)}}
    return Parts(backbone, {k: v for k, v in heads.items() if v}, None, meta, notes)


@_layout("moco", "facebookresearch/moco main_moco.py (v1/v2): state_dict with module.encoder_q / encoder_k",
         detect=lambda obj: _has_prefix(_sd_at(obj, "state_dict"), "encoder_q."))
def _convert_moco(obj: Mapping) -> Parts:
    sd = _sd_at(obj, "state_dict")
    backbone, projector = _split_encoder(sd, "encoder_q.")
    notes = ["backbone = the query encoder (module.encoder_q.* minus fc), as MoCo's main_lincls.py loads it",
             *_leftover_note(sd, ("encoder_q.",), "momentum key encoder encoder_k and the negatives queue")]
    meta = {"method": "moco", "epoch": _int_or_none(obj.get("epoch")),
            "config": {"source_arch": _source_arch(obj)}}
    return Parts(backbone, {"projector": projector} if projector else {}, None, meta, notes)


@_layout("solo-learn", "vturrisi/solo-learn Lightning .ckpt: state_dict with backbone.* (+ projector, momentum_*)",
         detect=lambda obj: "backbone.conv1.weight" in (_sd_at(obj, "state_dict") or {}))
def _convert_solo_learn(obj: Mapping) -> Parts:
    sd = _sd_at(obj, "state_dict")
    backbone = strip_fc(select_prefix(sd, "backbone."))[0]
    projector = select_prefix(sd, "projector.")
    notes = ["backbone = backbone.* (the online network), as solo-learn's main_linear.py loads it",
             *_leftover_note(sd, ("backbone.", "projector."), "momentum networks, predictor, online classifier")]
    meta = {"method": None, "epoch": None,
            "config": {"lightning_epoch": _int_or_none(obj.get("epoch"))}}
    return Parts(backbone, {"projector": projector} if projector else {}, None, meta, notes)


# timm's load_state_dict(use_ema=True) order: EMA weights first, then the raw ones.
_TIMM_KEYS = ("state_dict_ema", "model_ema", "state_dict", "model")


def _timm_key(obj: object) -> str | None:
    for key in _TIMM_KEYS:
        sd = _sd_at(obj, key)
        if sd is not None:
            return key if "conv1.weight" in sd else None
    return None


@_layout("timm", "timm train.py checkpoints (state_dict/state_dict_ema) and other {'state_dict'|'model': "
         "torchvision names} wrappers, e.g. MoCo/SimSiam/MEC linear-probe outputs",
         detect=lambda obj: _timm_key(obj) is not None)
def _convert_timm(obj: Mapping) -> Parts:
    key = _timm_key(obj)
    backbone, dropped = strip_fc(_sd_at(obj, key))
    notes = [f"weights from '{key}' (timm's load_checkpoint default prefers EMA weights)"]
    if dropped:
        notes.append(f"dropped the classifier ({', '.join(dropped)})")
    config = _plain_config(obj.get("args"))
    config["source_arch"] = _source_arch(obj)
    return Parts(backbone, {}, None, {"method": None, "epoch": None, "config": config}, notes)


@_layout("barlow-twins", "facebookresearch/barlowtwins main.py full checkpoint: model with module.backbone/projector/bn",
         detect=lambda obj: "backbone.conv1.weight" in (_sd_at(obj, "model") or {}))
def _convert_barlow_twins(obj: Mapping) -> Parts:
    sd = _sd_at(obj, "model")
    heads = {"projector": select_prefix(sd, "projector."), "bn": select_prefix(sd, "bn.")}
    notes = ["backbone = module.backbone.* (the released resnet50.pth holds the same tensors)",
             *_leftover_note(sd, ("backbone.", "projector.", "bn."), "not part of the Barlow Twins model")]
    meta = {"method": "barlow_twins", "epoch": _int_or_none(obj.get("epoch")), "config": {}}
    return Parts(strip_fc(select_prefix(sd, "backbone."))[0], {k: v for k, v in heads.items() if v},
                 None, meta, notes)


def _detect_dino(obj: object) -> bool:
    teacher, student = _sd_at(obj, "teacher"), _sd_at(obj, "student")
    return teacher is not None and student is not None and "backbone.conv1.weight" in teacher


@_layout("dino", "facebookresearch/dino main_dino.py checkpoint: teacher/student with (module.)backbone.*",
         detect=_detect_dino)
def _convert_dino(obj: Mapping) -> Parts:
    teacher = _sd_at(obj, "teacher")
    head = select_prefix(teacher, "head.")
    notes = ["DINO: the TEACHER backbone is evaluated (as DINO's eval_linear/eval_knn use "
             "--checkpoint_key teacher); the student is not kept",
             *_leftover_note(teacher, ("backbone.", "head."), "not part of the DINO teacher")]
    config = _plain_config(obj.get("args"))
    meta = {"method": "dino", "epoch": _int_or_none(obj.get("epoch")), "config": config}
    return Parts(strip_fc(select_prefix(teacher, "backbone."))[0], {"head": head} if head else {},
                 None, meta, notes)


def _vissl_model(obj: object) -> Mapping | None:
    if not isinstance(obj, Mapping):
        return None
    try:
        model = obj["classy_state_dict"]["base_model"]["model"]
    except (KeyError, TypeError, IndexError):
        return None
    return model if isinstance(model, Mapping) and _is_tensor_map(model.get("trunk")) else None


@_layout("vissl", "facebookresearch/vissl: classy_state_dict.base_model.model.trunk with _feature_blocks.*",
         detect=lambda obj: _vissl_model(obj) is not None)
def _convert_vissl(obj: Mapping) -> Parts:
    model = _vissl_model(obj)
    trunk = clean_state_dict(model["trunk"])
    if all(k.startswith("base_model.") for k in trunk):  # feature-extractor checkpoints
        trunk = select_prefix(trunk, "base_model.")
    backbone = select_prefix(trunk, "_feature_blocks.")
    heads = {"heads": dict(model["heads"])} if _is_tensor_map(model.get("heads")) else {}
    notes = ["backbone = trunk._feature_blocks.* (VISSL's convert_vissl_to_torchvision.py mapping)",
             *_leftover_note(trunk, ("_feature_blocks.",), "not a ResNet trunk block")]
    phase = _int_or_none(obj.get("train_phase_idx"))
    meta = {"method": None, "epoch": None if phase is None else phase + 1, "config": {}}
    return Parts(backbone, heads, None, meta, notes)


@_layout("torchvision", "a plain torchvision ResNet state dict (torchvision, Barlow Twins resnet50.pth, "
         "DINO backbone-only, flat timm weights); fc present or absent",
         detect=lambda obj: _is_tensor_map(obj) and "conv1.weight" in clean_state_dict(obj))
def _convert_torchvision(obj: Mapping) -> Parts:
    backbone, dropped = strip_fc(clean_state_dict(obj))
    notes = [f"dropped the classifier ({', '.join(dropped)})"] if dropped else []
    return Parts(backbone, {}, None, {"method": None, "epoch": None, "config": {}}, notes)


_D2_PREFIXES = ("backbone.bottom_up.", "backbone.")  # FPN and C4 detectors trained in detectron2


def _d2_model(obj: object) -> dict | None:
    model = obj.get("model") if isinstance(obj, Mapping) else None
    if not isinstance(model, Mapping) or not model:
        return None
    if not all(isinstance(v, (np.ndarray, torch.Tensor)) for v in model.values()):
        return None
    for prefix in ("", *_D2_PREFIXES):
        if f"{prefix}stem.conv1.weight" in model:
            trunk = select_prefix(model, prefix) if prefix else dict(model)
            # R50-C4 keeps res5 in the ROI head; take it from there when the trunk stops at res4.
            if not any(k.startswith("res5.") for k in trunk):
                trunk.update({k[len("roi_heads."):]: v for k, v in model.items() if k.startswith("roi_heads.res5.")})
            return {k: v for k, v in trunk.items() if k.startswith(("stem.", "res"))}
    return None


@_layout("detectron2", "detectron2 .pkl ({'model': numpy arrays} with stem./res2..res5 names, e.g. MoCo's "
         "converter or `mec-eval convert --to detectron2`)", detect=lambda obj: _d2_model(obj) is not None)
def _convert_detectron2(obj: Mapping) -> Parts:
    backbone = detectron2_to_torchvision(_d2_model(obj))
    author = obj.get("__author__")
    notes = [f"detectron2 names mapped back to torchvision (file author: {author if isinstance(author, str) else 'unknown'})"]
    return Parts(backbone, {}, None, {"method": None, "epoch": None, "config": {}}, notes)


# ----------------------------------------------------------------------------- arch inference
@functools.lru_cache(maxsize=None)
def _arch_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_backbone(arch)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def infer_arch(backbone_state_dict: Mapping) -> str:
    """The registered backbone whose parameter names and shapes match the state dict.

    Compares (name, shape) pairs with every registered architecture (``num_batches_tracked`` and
    ``fc`` ignored): Bottleneck ``conv3`` keys and a 2048-d ``layer4`` make a ResNet-50, a 7x7 vs
    3x3 ``conv1`` separates ``resnet18`` from ``cifar_resnet18``, widths 32..256 ``resnet_tiny``.
    A near match (>= half the pairs) is returned so the strict loader can list the differences.
    """
    return explain_arch(backbone_state_dict)[0]


def explain_arch(backbone_state_dict: Mapping) -> tuple[str, str]:
    """:func:`infer_arch` plus the rule that decided, for provenance and logs.

    Returns:
        (arch, e.g. "detected from weights: all 62 parameter shapes match cifar_resnet18 (conv1 3x3)").
    """
    found = {k: tuple(v.shape) for k, v in backbone_state_dict.items()
             if hasattr(v, "shape") and not k.endswith("num_batches_tracked") and not k.startswith("fc.")}
    scores = {}
    for arch in BACKBONES.names():
        ref = _arch_shapes(arch)
        same = sum(1 for k, shape in found.items() if ref.get(k) == shape)
        scores[arch] = (same / max(len(set(found) | set(ref)), 1), same, len(set(found) | set(ref)))
    ranked = sorted(scores.items(), key=lambda item: -item[1][0])
    best, (score, same, total) = ranked[0]
    runner_up = ranked[1][1][0] if len(ranked) > 1 else 0.0
    stem = found.get("conv1.weight")
    kernel = f"conv1 {stem[-2]}x{stem[-1]}" if stem is not None and len(stem) == 4 else "no 4-d conv1"
    if score == 1.0:
        return best, f"detected from weights: all {total} parameter names and shapes match {best} ({kernel})"
    if score >= 0.5 and runner_up < score:
        return best, (f"detected from weights: nearest match {best}, {same} of {total} parameter names and shapes "
                      f"({kernel})")
    raise UserError(
        f"cannot infer the architecture from {len(found)} backbone tensors (conv1.weight shape {stem}; "
        f"best match {best} at {score:.0%}); pass the architecture explicitly "
        f"(known: {', '.join(BACKBONES.names())})"
    )


# ----------------------------------------------------------------------------- entry point
def _describe(obj: object) -> str:
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}, not a dict"
    top = [str(k) for k in list(obj)[:12]]
    sample: list[str] = []
    stack, seen = [obj], set()
    while stack and not sample:  # breadth-first: the first nested mapping of tensors/arrays
        node = stack.pop(0)
        if id(node) in seen:  # pickles can build a dict that contains itself
            continue
        seen.add(id(node))
        values = list(node.values())
        if values and all(isinstance(v, (torch.Tensor, np.ndarray)) for v in values):
            sample = [str(k) for k in list(node)[:8]]
        stack.extend(v for v in values if isinstance(v, Mapping))
    return f"top-level keys {top}; state-dict keys (sample) {sample or 'none found'}"


def detect_layout(obj: object, source: str) -> str:
    """Name of the one layout whose detector accepts ``obj``; UserError if none (or several)."""
    matches = [name for name in LAYOUTS.names() if LAYOUTS.get(name).detect(obj)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UserError(f"{source} matches several checkpoint layouts ({', '.join(matches)}); "
                        "pass the layout explicitly")
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        raise UserError(f"{source} is tagged {FORMAT} but malformed: {_canonical_fault(obj)}; "
                        "re-save it with mec_eval.checkpoints.make_canonical/save_canonical")
    raise UserError(
        f"unrecognised checkpoint layout in {source}: {_describe(obj)}. "
        f"Supported layouts: {', '.join(LAYOUTS.names())}"
    )


def _canonical_fault(obj: Mapping) -> str:
    """What keeps a ``mec-eval/1``-tagged dict from being canonical (see :func:`is_canonical`)."""
    expected = (("arch", str, "a string"), ("backbone", Mapping, "a state dict"), ("heads", Mapping, "a dict"),
                ("meta", Mapping, "a dict"))
    for key, kind, what in expected:
        value = obj.get(key, {} if key in ("heads", "meta") else None)
        if not isinstance(value, kind):
            return f"'{key}' is {'missing' if key not in obj else 'of type ' + type(value).__name__}, not {what}"
    return f"'teacher' is of type {type(obj.get('teacher')).__name__}, not a state dict or None"


@dataclass
class Converted:
    """What :func:`convert_to_canonical` returns."""

    canonical: dict
    layout: str
    notes: list[str]
    arch_source: str  # "user", "checkpoint file" or "detected from weights: <rule>"


def _tensor_map_fault(state_dict: object) -> str | None:
    if not isinstance(state_dict, Mapping):
        return f"the backbone is a {type(state_dict).__name__}, not a state dict"
    for key, value in state_dict.items():
        if not isinstance(key, str):
            return f"the backbone has a non-string key {_short(repr(key))}"
        if not isinstance(value, torch.Tensor):
            return f"backbone entry {_short(key)} is a {type(value).__name__}, not a tensor"
    return None


def _forced_hint(obj: object, name: str) -> str:
    """For a forced layout that fails: what the file holds and the layouts that would detect it."""
    if LAYOUTS.get(name).detect(obj):
        return ""
    fits = [other for other in LAYOUTS.names() if LAYOUTS.get(other).detect(obj)]
    return (f"; the file does not look like the forced layout '{name}' ({_describe(obj)}); "
            f"{'it matches ' + ', '.join(fits) if fits else 'no layout detects it'}, pick the matching layout")


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def convert_to_canonical(obj: object, source: str, *, arch: str | None = None,
                         layout: str | None = None) -> Converted:
    """Convert a loaded checkpoint object to canonical form, saying where the architecture came from.

    Args:
        obj: what :func:`~mec_eval.checkpoints.safe_load.load_checkpoint_file` returned.
        source: file name for messages.
        arch: force the architecture instead of inferring it from shapes.
        layout: force a layout instead of detecting it.
    Raises:
        UserError: no (or several) layouts match, or the file is malformed for its layout
            (non-tensor weights, wrongly typed meta such as a string epoch).
    """
    name = layout or detect_layout(obj, source)
    hint = _forced_hint(obj, name) if layout else ""
    try:
        parts = LAYOUTS.get(name).convert(obj)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, RecursionError) as err:  # untrusted
        raise UserError(f"{source}: malformed '{name}' checkpoint ({type(err).__name__}: {_short(str(err), 150)})"
                        f"{hint}") from None
    fault = _tensor_map_fault(parts.backbone)
    if fault:
        raise UserError(f"{source}: malformed '{name}' checkpoint: {fault}{hint}")
    backbone, dropped = strip_fc(parts.backbone)
    if not backbone:
        raise UserError(f"{source}: layout '{name}' found no backbone tensors{hint}")
    notes = list(parts.notes)
    if dropped:  # converters strip fc themselves; this catches a canonical file that kept it
        notes.append(f"dropped {len(dropped)} fc.* tensors (the backbone ends at the pooled feature)")
    if arch:
        chosen, arch_source = arch, "user"
    elif parts.arch:
        chosen, arch_source = parts.arch, "checkpoint file"
    else:
        try:
            chosen, arch_source = explain_arch(backbone)
        except UserError as err:
            raise UserError(f"{source}: {err}") from None
        notes.append(f"architecture {chosen} {arch_source}")
    if chosen not in BACKBONES:
        raise UserError(f"{source}: unknown backbone architecture '{_short(chosen)}' (from {arch_source}; "
                        f"known: {', '.join(BACKBONES.names())})")
    try:
        canonical = make_canonical(chosen, backbone, parts.heads, parts.teacher, parts.meta)
    except (TypeError, ValueError, RecursionError) as err:  # RecursionError: a meta that contains itself
        raise UserError(f"{source}: malformed '{name}' checkpoint: {err}; re-save it with valid values") from None
    return Converted(canonical, name, notes, arch_source)


def to_canonical(obj: object, source: str, *, arch: str | None = None,
                 layout: str | None = None) -> tuple[dict, str, list[str]]:
    """(canonical dict, layout name, notes for the user); see :func:`convert_to_canonical`."""
    converted = convert_to_canonical(obj, source, arch=arch, layout=layout)
    return converted.canonical, converted.layout, converted.notes


# ViT layouts (MAE / U-MAE / M-MAE, DINO ViT, timm ViT) register themselves on import; they use the helpers above.
from mec_eval.checkpoints import vit_layouts  # noqa: F401
