"""Export a backbone to detectron2's ``.pkl`` and to a plain torchvision state dict.

The detectron2 names follow MoCo's ``detection/convert-pretrain-to-detectron2.py`` (also used by
SimSiam, solo-learn and the MEC paper's detection protocol): keys without ``layer`` get ``stem.``,
``layerN`` -> ``res{N+1}``, ``bnK`` -> ``convK.norm``, ``downsample.0`` -> ``shortcut``,
``downsample.1`` -> ``shortcut.norm``. detectron2 reads the file with ``matching_heuristics`` on,
which lets its checkpointer align these names to the R50-C4 / FPN modules.
"""
from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from mec_eval.checkpoints.canonical import strip_fc
from mec_eval.utils import atomic_torch_save, atomic_write_bytes

# Protocol 4 pickles numpy arrays through numpy's ``_reconstruct`` (readable by every numpy and by
# detectron2's ``pickle.load(f, encoding="latin1")``) without protocol 5's out-of-band buffers.
PICKLE_PROTOCOL = 4


def torchvision_to_detectron2_name(key: str) -> str:
    """Rename one torchvision ResNet key the way MoCo's detectron2 converter does."""
    if "layer" not in key:
        key = "stem." + key
    for stage in (1, 2, 3, 4):
        key = key.replace(f"layer{stage}", f"res{stage + 1}")
    for index in (1, 2, 3):
        key = key.replace(f"bn{index}", f"conv{index}.norm")
    key = key.replace("downsample.0", "shortcut")
    return key.replace("downsample.1", "shortcut.norm")


_RES = re.compile(r"^res(\d)\.")
_NORM = re.compile(r"conv(\d)\.norm\.")


def detectron2_to_torchvision_name(key: str) -> str:
    """Inverse of :func:`torchvision_to_detectron2_name`."""
    if key.startswith("stem."):
        key = key[len("stem."):]
    key = _RES.sub(lambda m: f"layer{int(m.group(1)) - 1}.", key)
    # shortcut.norm must be handled before the bare shortcut it contains.
    key = key.replace("shortcut.norm.", "downsample.1.").replace("shortcut.", "downsample.0.")
    return _NORM.sub(lambda m: f"bn{m.group(1)}.", key)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.float()
    # .contiguous().numpy(), not np.ascontiguousarray, which turns 0-d counters into shape (1,).
    return tensor.contiguous().numpy()


def _state_dict_of(backbone: nn.Module | Mapping) -> dict[str, torch.Tensor]:
    state = backbone.state_dict() if isinstance(backbone, nn.Module) else dict(backbone)
    state, _ = strip_fc(state)
    if not state:
        raise ValueError("backbone state dict is empty")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"backbone entries are not tensors: {bad[:5]}")
    return state


def export_detectron2(backbone_state_dict: nn.Module | Mapping, path: str | os.PathLike,
                      author: str = "mec-eval") -> dict[str, str]:
    """Write a detectron2 weights file ``{"model": {name: ndarray}, "__author__", "matching_heuristics"}``.

    Args:
        backbone_state_dict: torchvision-named backbone weights (``fc.*`` is dropped), or the module.
        path: output ``.pkl``, written atomically.
    Returns:
        The renaming applied, torchvision name -> detectron2 name.
    """
    state = _state_dict_of(backbone_state_dict)
    renamed = {key: torchvision_to_detectron2_name(key) for key in state}
    if len(set(renamed.values())) != len(renamed):
        raise ValueError("detectron2 renaming produced duplicate names; is this a torchvision ResNet?")
    model = {renamed[key]: _to_numpy(value) for key, value in state.items()}
    payload = {"model": model, "__author__": author, "matching_heuristics": True}
    atomic_write_bytes(path, pickle.dumps(payload, protocol=PICKLE_PROTOCOL))
    return renamed


def detectron2_to_torchvision(model_dict: Mapping) -> dict[str, torch.Tensor]:
    """Map a detectron2 ``model`` dict (numpy arrays or tensors) back to torchvision tensors."""
    out = {}
    for key, value in model_dict.items():
        tensor = torch.from_numpy(np.array(value, copy=True)) if isinstance(value, np.ndarray) else value
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"detectron2 entry '{key}' is a {type(value).__name__}, not an array")
        out[detectron2_to_torchvision_name(key)] = tensor
    return out


def export_torchvision(backbone: nn.Module | Mapping, path: str | os.PathLike) -> None:
    """Write a plain torchvision state dict (no ``fc``), like the Barlow Twins/DINO backbone releases.

    Load it into a torchvision ResNet whose ``fc`` is ``nn.Identity()``, or check that ``fc.weight``
    and ``fc.bias`` are the only missing keys, as Barlow Twins' ``evaluate.py`` asserts.
    """
    state = {k: v.detach().cpu().contiguous().clone() for k, v in _state_dict_of(backbone).items()}
    atomic_torch_save(state, path)
