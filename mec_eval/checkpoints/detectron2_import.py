"""Import a trained detectron2 R50-C4 detector (``model_final.pth`` / ``.pkl``) as the engine's detector.

A detectron2 ``GeneralizedRCNN`` with the C4 backbone and ``Res5ROIHeadsExtraNorm`` (the MoCo
detection protocol, facebookresearch/moco ``detection/configs/Base-RCNN-C4-BN.yaml``) has the same
parameters as :class:`~mec_eval.models.rcnn_c4.RCNNC4`, under detectron2's names
(``backbone.res4.*``, ``proposal_generator.rpn_head.*``, ``roi_heads.res5.*`` ...).
``mec-eval convert --ckpt model_final.pth --to canonical --out det.pt`` writes:

``{"format": "mec-eval/1", "arch": "resnet50",
   "backbone": the torchvision ResNet-50 (stem + layer1..3 from ``backbone.*``, layer4 = ``roi_heads.res5``),
   "heads": {"rcnn_c4": the full RCNNC4 state dict (engine names)},
   "meta": {"method": "detectron2", "config": {"num_classes": K, "mask_on": bool, "anchor_sizes": [...],
            "aspect_ratios": [...], "iteration": N | None, "source": ...}}}``

so ``build_imported_detector(torch.load(det.pt, weights_only=True))`` (or ``RCNNC4(resnet50, K,
mask_on, RpnSettings(sizes, ratios)).load_state_dict(ckpt["heads"]["rcnn_c4"])``) gives the
detectron2-trained detector. The anchors (which fix the RPN head's shape) come from the
``config.yaml`` beside the checkpoint when there is one (detectron2's ``default_setup`` and
``backend=detectron2`` write it), else detectron2's defaults.

The weights must come from an R50-C4 trained with ``RESNETS.STRIDE_IN_1X1 False`` (the SSL
configs): the MSRA-style ``True`` has the same shapes but strides the 1x1 conv, which the
torchvision blocks cannot express; no file records it, so it is the user's to know. Every key
must match in name and shape, except BN ``num_batches_tracked`` counters (absent under
``FrozenBN``), which are filled with 0 and named in the notes.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import yaml

from mec_eval.checkpoints.canonical import make_canonical, save_canonical
from mec_eval.checkpoints.safe_load import read_checkpoint_file
from mec_eval.models import build_backbone
from mec_eval.models.rcnn_c4 import RCNNC4, RpnSettings, from_detectron2_names
from mec_eval.utils import UserError

HEAD_NAME = "rcnn_c4"
_CLS = "roi_heads.box_predictor.cls_score.weight"
_MARKERS = (_CLS, "proposal_generator.rpn_head.conv.weight")
_COUNTER = "num_batches_tracked"


def detector_state(obj: object) -> dict | None:
    """The ``model`` dict of a detectron2 C4 detector checkpoint (RPN + ROI heads), or None for anything else."""
    model = obj.get("model") if isinstance(obj, Mapping) else None
    if not isinstance(model, Mapping) or not all(k in model for k in _MARKERS):
        return None
    return dict(model)


def _tensors(model: Mapping, source: str) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in model.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            out[key] = torch.from_numpy(np.array(value, copy=True))
        elif isinstance(value, torch.Tensor):
            out[key] = value.detach().cpu()
        else:
            raise UserError(f"{source}: detectron2 entry '{key}' is a {type(value).__name__}, not a numeric array; "
                            f"is this a detectron2 model checkpoint?")
    return out


def _listing(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")


def anchors_beside(path: Path) -> tuple[list, list] | None:
    """(anchor sizes, aspect ratios) from the ``config.yaml`` detectron2 runs write beside their checkpoints, or None.

    The RPN head's shape depends on the number of anchors per location, which the weights alone cannot
    turn back into sizes; ``MODEL.ANCHOR_GENERATOR`` of that file can (one C4 level: ``[[...]]``).
    """
    config = path.parent / "config.yaml"
    if not config.is_file():
        return None
    try:
        anchors = (yaml.safe_load(config.read_text()) or {}).get("MODEL", {}).get("ANCHOR_GENERATOR", {})
        sizes, ratios = anchors["SIZES"][0], anchors["ASPECT_RATIOS"][0]
        return [float(v) for v in sizes], [float(v) for v in ratios]
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, yaml.YAMLError) as err:
        raise UserError(f"{config}: cannot read MODEL.ANCHOR_GENERATOR.SIZES / ASPECT_RATIOS ({err}); fix or "
                        f"remove it (without it the detectron2 defaults are assumed)") from None


def engine_state_dict(model: Mapping, source: str, anchors: tuple[list, list] | None = None
                      ) -> tuple[dict[str, torch.Tensor], int, bool, list[str]]:
    """(RCNNC4 state dict, number of classes, mask_on, notes) of a detectron2 R50-C4 ``model`` dict.

    ``anchors``: (sizes, aspect ratios) of its ``MODEL.ANCHOR_GENERATOR``; None: detectron2's defaults.

    Raises:
        UserError: a key left over, missing or of another shape than the R50-C4 engine's, listed.
    """
    state = from_detectron2_names(_tensors(model, source))
    cls = state.get(_CLS)
    if cls is None or cls.ndim != 2 or cls.shape[0] < 2:
        raise UserError(f"{source}: '{_CLS}' must be a [K + 1, C] matrix; not a detectron2 R50-C4 detector")
    num_classes = int(cls.shape[0]) - 1
    mask_on = any(k.startswith("roi_heads.mask_head.") for k in state)
    detector = RCNNC4(build_backbone("resnet50"), num_classes, mask_on, _rpn(anchors))
    expected = detector.state_dict()
    notes = []
    counters = sorted(k for k in expected if k.endswith(_COUNTER) and k not in state)
    if counters:
        state.update({k: torch.zeros_like(expected[k]) for k in counters})
        notes.append(f"{len(counters)} BatchNorm num_batches_tracked counters absent (FrozenBN?): set to 0")
    missing = sorted(k for k in expected if k not in state)
    extra = sorted(k for k in state if k not in expected)
    shapes = sorted(f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                    if k in state and state[k].shape != v.shape)
    problems = [f"missing {len(missing)}: {_listing(missing)}" if missing else "",
                f"unexpected {len(extra)}: {_listing(extra)}" if extra else "",
                f"wrong shape {len(shapes)}: {_listing(shapes)}" if shapes else ""]
    problems = [p for p in problems if p]
    if problems:
        raise UserError(f"{source} is not a detectron2 R50-C4 detector with Res5ROIHeadsExtraNorm and "
                        f"{'the anchors of config.yaml' if anchors else 'default anchors (put its config.yaml beside it)'}"
                        f" (engine names shown): {'; '.join(problems)}")
    return {k: state[k].to(v.dtype) for k, v in expected.items()}, num_classes, mask_on, notes


def _backbone_of(state: Mapping) -> dict[str, torch.Tensor]:
    """The torchvision ResNet-50 inside the detector: backbone.{stem, layer1..3} and roi_heads.res5 as layer4."""
    trunk = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    res5 = {"layer4." + k[len("roi_heads.res5."):]: v for k, v in state.items()
            if k.startswith("roi_heads.res5.") and not k.startswith("roi_heads.res5.norm.")}
    return {**trunk, **res5}


def _rpn(anchors: tuple[list, list] | None) -> RpnSettings | None:
    return None if anchors is None else RpnSettings(tuple(anchors[0]), tuple(anchors[1]))


def import_detectron2_detector(obj: object, source: str, anchors: tuple[list, list] | None = None
                               ) -> tuple[dict, list[str]] | None:
    """(canonical checkpoint holding the engine's detector, notes) of a detectron2 C4 detector, else None."""
    model = detector_state(obj)
    if model is None:
        return None
    state, num_classes, mask_on, notes = engine_state_dict(model, source, anchors)
    sizes, ratios = anchors or (list(RpnSettings.anchor_sizes), list(RpnSettings.aspect_ratios))
    meta = {"method": "detectron2", "epoch": None,
            "config": {"num_classes": num_classes, "mask_on": mask_on, "source": "detectron2 R50-C4 detector",
                       "anchor_sizes": [float(v) for v in sizes], "aspect_ratios": [float(v) for v in ratios],
                       "iteration": int(obj["iteration"]) if isinstance(obj.get("iteration"), int) else None}}
    return make_canonical("resnet50", _backbone_of(state), heads={HEAD_NAME: state}, meta=meta), notes


def import_detector_file(spec: str) -> tuple[dict, list[str]] | None:
    """:func:`import_detectron2_detector` of the file ``spec`` (read by the safe readers); None when ``spec``
    is no file (``random:``, ``manifest:``) or holds no detectron2 detector."""
    path = Path(os.path.expanduser(spec))
    if not path.is_file():
        return None
    obj, notes = read_checkpoint_file(path)
    if detector_state(obj) is None:
        return None
    imported = import_detectron2_detector(obj, str(path), anchors_beside(path))
    return None if imported is None else (imported[0], notes + imported[1])


def save_detector_canonical(spec: str, out: Path) -> bool:
    """Write the canonical import of ``spec`` to ``out`` atomically when it is a detectron2 C4 detector; True then."""
    imported = import_detector_file(spec)
    if imported is None:
        return False
    try:
        save_canonical(imported[0], out)
    except OSError as err:  # the atomic write left nothing behind
        raise UserError(f"cannot write --out {out}: {err.strerror or err}") from None
    return True


def build_imported_detector(canonical: Mapping) -> RCNNC4:
    """The :class:`RCNNC4` of a canonical file written by the import, weights loaded strictly."""
    head = canonical.get("heads", {}).get(HEAD_NAME) if isinstance(canonical, Mapping) else None
    config = canonical.get("meta", {}).get("config", {}) if head is not None else {}
    if head is None or not isinstance(config.get("num_classes"), int):
        raise UserError(f"this canonical checkpoint holds no imported detector (heads['{HEAD_NAME}'] and "
                        f"meta.config.num_classes); convert a detectron2 model_final.pth with --to canonical")
    anchors = (config["anchor_sizes"], config["aspect_ratios"]) if "anchor_sizes" in config else None
    detector = RCNNC4(build_backbone(canonical["arch"]), config["num_classes"], bool(config.get("mask_on")),
                      _rpn(anchors))
    detector.load_state_dict(head, strict=True)
    return detector


__all__ = ["HEAD_NAME", "anchors_beside", "build_imported_detector", "detector_state", "engine_state_dict",
           "import_detectron2_detector", "import_detector_file", "save_detector_canonical"]
