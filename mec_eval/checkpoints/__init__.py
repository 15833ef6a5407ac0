"""Checkpoints: load any known layout into the canonical ``mec-eval/1`` form, export to detectron2/torchvision.

Typical use::

    from mec_eval.checkpoints import load_encoder
    enc = load_encoder("moco_v2_800ep_pretrain.pth.tar")   # or "random:resnet50", "manifest:mocov2-r50-800ep"
    enc.backbone(images)                                    # (N, enc.feature_dim)
    enc.provenance()                                        # -> result.json "checkpoint"
"""
from mec_eval.checkpoints.canonical import FORMAT, is_canonical, make_canonical, save_canonical
from mec_eval.checkpoints.encoder import (
    CONVERT_TARGETS,
    Encoder,
    convert_checkpoint,
    load_backbone_weights,
    load_encoder,
    resolve_checkpoint,
)
from mec_eval.checkpoints.export import detectron2_to_torchvision, export_detectron2, export_torchvision
from mec_eval.checkpoints.layouts import LAYOUTS, infer_arch, to_canonical
from mec_eval.checkpoints.manifest import fetch_checkpoint, list_manifest
from mec_eval.checkpoints.safe_load import load_checkpoint_file, safe_pickle_load, safe_torch_load

__all__ = [
    "FORMAT",
    "make_canonical",
    "save_canonical",
    "is_canonical",
    "safe_torch_load",
    "safe_pickle_load",
    "load_checkpoint_file",
    "to_canonical",
    "infer_arch",
    "LAYOUTS",
    "load_backbone_weights",
    "export_detectron2",
    "export_torchvision",
    "detectron2_to_torchvision",
    "Encoder",
    "load_encoder",
    "resolve_checkpoint",
    "convert_checkpoint",
    "CONVERT_TARGETS",
    "list_manifest",
    "fetch_checkpoint",
]
