"""Checkpoints: load any known layout into the canonical ``mec-eval/1`` form, export to detectron2/torchvision.

Typical use::

    from mec_eval.checkpoints import load_encoder
    enc = load_encoder("moco_v2_800ep_pretrain.pth.tar")   # or "random:resnet50", "manifest:mocov2-r50-800ep"
    enc.backbone(images)                                    # (N, enc.feature_dim)
    enc.provenance()                                        # -> result.json "checkpoint"
"""
from __future__ import annotations

import importlib

# Names are imported on first use (PEP 562): ``mec-eval list checkpoints`` reads the manifest
# without loading torch, which the other modules need.
_EXPORTS = {
    "FORMAT": "canonical",
    "make_canonical": "canonical",
    "save_canonical": "canonical",
    "is_canonical": "canonical",
    "CONVERT_TARGETS": "encoder",
    "Encoder": "encoder",
    "convert_checkpoint": "encoder",
    "load_backbone_weights": "encoder",
    "load_encoder": "encoder",
    "require_resnet": "encoder",
    "resolve_checkpoint": "encoder",
    "detectron2_to_torchvision": "export",
    "export_detectron2": "export",
    "export_torchvision": "export",
    "LAYOUTS": "layouts",
    "infer_arch": "layouts",
    "to_canonical": "layouts",
    "fetch_checkpoint": "manifest",
    "list_manifest": "manifest",
    "load_checkpoint_file": "safe_load",
    "read_checkpoint_file": "safe_load",
    "safe_pickle_load": "safe_load",
    "safe_torch_load": "safe_load",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mec_eval.checkpoints' has no attribute '{name}'")
    return getattr(importlib.import_module(f"mec_eval.checkpoints.{_EXPORTS[name]}"), name)


__all__ = sorted(_EXPORTS)
