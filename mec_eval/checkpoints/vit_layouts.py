"""ViT checkpoint layouts: MAE / U-MAE / M-MAE, DINO (ViT) and timm, mapped to the canonical encoder names.

The canonical ViT backbone uses MAE's encoder names, which are timm's ``VisionTransformer`` names
(``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``; see
:mod:`mec_eval.models.vit`), so every converter only selects and drops keys. Our own files need no
converter (the ``mec-eval`` layout). Loading stays strict (:func:`~mec_eval.checkpoints.encoder.
load_backbone_weights`): a missing, left-over or mis-shaped key is an error listing them.
"""
from __future__ import annotations

from collections.abc import Mapping

from mec_eval.checkpoints.canonical import clean_state_dict, select_prefix
from mec_eval.checkpoints.layouts import (
    Parts,
    _int_or_none,
    _is_tensor_map,
    _layout,
    _leftover_note,
    _plain_config,
    _sd_at,
)

VIT_KEYS = ("cls_token", "pos_embed", "patch_embed.proj.weight")


def is_vit_state_dict(state_dict: Mapping | None, prefix: str = "") -> bool:
    """Whether ``state_dict`` holds a ViT encoder (CLS token, position table, patch projection) under ``prefix``."""
    return state_dict is not None and all(prefix + key in state_dict for key in VIT_KEYS)


def _split_classifiers(state_dict: Mapping) -> tuple[dict, dict, list[str]]:
    """(encoder, {head name: tensors}, notes): classifier heads (``head.*``, U-MAE/M-MAE's online ``fc.*``) split off."""
    heads = {name: select_prefix(state_dict, prefix) for name, prefix in
             (("classifier", "head."), ("online_classifier", "fc."))}
    heads = {name: tensors for name, tensors in heads.items() if tensors}
    encoder = {k: v for k, v in state_dict.items() if not k.startswith(("head.", "fc."))}
    notes = [f"classifier {name} ({len(tensors)} tensors) kept as a head, not part of the backbone"
             for name, tensors in heads.items()]
    return encoder, heads, notes


# The --reg flag of U-MAE (zhangq327/U-MAE main_pretrain.py) and M-MAE (yifanzhang-pro/M-MAE): the method it trains.
_REG_METHOD = {"none": "mae", "spectral": "umae", "TCR": "mmae"}


@_layout("mae", "facebookresearch/mae main_pretrain.py (also U-MAE, M-MAE, DeiT): {'model': ViT encoder "
         "(+ decoder_*, mask_token), 'epoch', 'args'}", detect=lambda obj: is_vit_state_dict(_sd_at(obj, "model")))
def _convert_mae(obj: Mapping) -> Parts:
    sd = _sd_at(obj, "model")
    decoder = [k for k in sd if k.startswith("decoder_") or k == "mask_token"]
    encoder, heads, notes = _split_classifiers({k: v for k, v in sd.items() if k not in decoder})
    if decoder:
        notes.insert(0, f"dropped the {len(decoder)} decoder tensors (decoder_*, mask_token): the MAE decoder only "
                        "reconstructs pixels in pre-training; MAE's main_linprobe.py / main_finetune.py build the "
                        "encoder alone and never load them")
    config = _plain_config(obj.get("args"))
    reg = config.get("reg")
    method = _REG_METHOD.get(reg, "mae") if config else None
    if config:
        notes.append(f"method {method} from the file's args (reg={reg!r})")
    config["source_arch"] = config.get("model") if isinstance(config.get("model"), str) else None
    meta = {"method": method, "epoch": _int_or_none(obj.get("epoch")), "config": config}
    return Parts(encoder, heads, None, meta, notes)


def _detect_dino_vit(obj: object) -> bool:
    teacher, student = _sd_at(obj, "teacher"), _sd_at(obj, "student")
    return student is not None and is_vit_state_dict(teacher, "backbone.")


@_layout("dino-vit", "facebookresearch/dino main_dino.py ViT checkpoint: teacher/student with (module.)backbone.* "
         "ViT and head.*", detect=_detect_dino_vit)
def _convert_dino_vit(obj: Mapping) -> Parts:
    teacher = _sd_at(obj, "teacher")
    head = select_prefix(teacher, "head.")
    notes = [("DINO: the TEACHER backbone is evaluated (as DINO's eval_linear/eval_knn use --checkpoint_key "
              "teacher); the student is not kept"),
             *_leftover_note(teacher, ("backbone.", "head."), "not part of the DINO teacher")]
    meta = {"method": "dino", "epoch": _int_or_none(obj.get("epoch")), "config": _plain_config(obj.get("args"))}
    return Parts(select_prefix(teacher, "backbone."), {"head": head} if head else {}, None, meta, notes)


# timm train.py checkpoints: EMA weights first, as timm's load_state_dict(use_ema=True). "model" belongs to "mae".
_TIMM_VIT_KEYS = ("state_dict_ema", "model_ema", "state_dict")


def _timm_vit_source(obj: object) -> str | None:
    """Where a timm ViT state dict sits: "" (the file is the state dict) or the wrapper key; None if not timm."""
    if _is_tensor_map(obj) and is_vit_state_dict(clean_state_dict(obj)):
        return ""
    for key in _TIMM_VIT_KEYS:
        if is_vit_state_dict(_sd_at(obj, key)):
            return key
    return None


@_layout("timm-vit", "timm VisionTransformer weights (vit_*_patch16_224 state dicts, train.py state_dict/"
         "state_dict_ema) and flat ViT files such as DINO's backbone-only releases",
         detect=lambda obj: _timm_vit_source(obj) is not None)
def _convert_timm_vit(obj: Mapping) -> Parts:
    key = _timm_vit_source(obj)
    encoder, heads, notes = _split_classifiers(clean_state_dict(obj) if key == "" else _sd_at(obj, key))
    if key:
        notes.insert(0, f"weights from '{key}' (timm's load_checkpoint default prefers EMA weights)")
    config = _plain_config(obj.get("args")) if key else {}
    return Parts(encoder, heads, None, {"method": None, "epoch": None, "config": config}, notes)
