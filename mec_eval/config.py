"""Typed configuration: dataclass schemas, YAML instances, ``a.b=v`` command-line overrides.

The dataclasses are the truth. A YAML file or an override that names a key the schema lacks is a
:class:`~mec_eval.utils.UserError` listing the close matches, and values are checked against the
field types. The fully resolved config is what gets saved in every run folder.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

import yaml

from mec_eval.utils import UserError, resource_dir

C = TypeVar("C")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


# ----------------------------------------------------------------------------- pre-training schema
@dataclass
class DataConfig:
    name: str = "shapes"            # dataset registry name (mec-eval list datasets)
    root: Optional[str] = None      # dataset folder for on-disk sets
    image_size: int = 32            # crop size fed to the network
    augment: str = "byol"           # "byol" (MEC App. C, with blur/solarize) or "cifar" (App. B, no blur)
    crop_min_scale: float = 0.2     # RandomResizedCrop lower bound (App. C)
    augment_backend: str = "auto"   # "per-sample" (torchvision, in loader workers), "batch" (tensor ops on
                                    # the training device, fixed-size in-memory sets); auto: batch for embedded sets
    num_workers: int = 0            # DataLoader workers; 0 keeps CPU cores for the model


@dataclass
class ModelConfig:
    arch: str = "resnet_tiny"
    proj_hidden: int = 2048
    proj_dim: int = 2048
    proj_layers: int = 3            # App. C: 3-layer projector (App. B CIFAR: 2)
    predictor: Optional[bool] = None  # None: the objective's default (asymmetric for MEC)
    pred_hidden: int = 512
    teacher: Optional[bool] = None    # None: the objective's default (EMA teacher for MEC/BYOL)
    ema_momentum: float = 0.996     # base EMA momentum, cosine-increased to 1 (App. C)


@dataclass
class LossConfig:
    name: str = "mec"
    eps_d2: float = 0.06            # distortion eps_d^2 (App. C, Table 5c)
    order: int = 4                  # Taylor order (Table 5e)
    side: str = "auto"              # "batch", "feature" or "auto" (Eq. 4)
    lam_warmup_epochs: float = 10.0  # lam_inv warm-up 8/lam -> 1/lam (official main_pretrain.py)
    temperature: float = 0.1        # SimCLR
    barlow_lambda: float = 0.0051   # Barlow Twins off-diagonal weight
    vicreg_sim: float = 25.0
    vicreg_var: float = 25.0
    vicreg_cov: float = 1.0


@dataclass
class OptimConfig:
    name: str = "sgd"               # "sgd" or "lars"
    epochs: int = 100
    batch_size: int = 256           # global batch
    base_lr: float = 0.5            # lr = base_lr * batch_size / 256 (App. C)
    weight_decay: float = 1e-5
    momentum: float = 0.9
    warmup_epochs: float = 10.0
    lars_trust: float = 0.001


@dataclass
class RunConfig:
    seed: int = 0
    device: str = "auto"            # "auto", "cpu", "cuda", "cuda:1"
    precision: str = "auto"         # "auto" (bf16 on CPU, fp16 AMP on CUDA), "fp32", "bf16", "fp16"
    channels_last: bool = True
    log_every: int = 10             # iterations between JSON log lines
    max_steps_per_epoch: int = 0    # 0 = full epochs; >0 truncates (smoke tests, quick demo)
    save_every: int = 1             # keep checkpoint_XXXX.pt every N epochs (last.pt is written every epoch)


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


# ----------------------------------------------------------------------------- evaluation sections
@dataclass
class EvalDataConfig:
    name: str = "imagenet"          # dataset registry name; "all" runs the 11 transfer sets (transfer tasks)
    root: Optional[str] = None
    image_size: int = 0             # 0: the dataset's native size (224 ImageNet, 32 embedded sets)
    resize_ratio: float = 0.0       # test resize = image_size * ratio before the centre crop; 0: 256/224 from
                                    # 128 px up (ImageNet protocol), 1 below (embedded 32 px sets)
    interpolation: str = "bilinear"  # "bilinear" or "bicubic" (ssl-transfer resizes bicubic)
    batch_size: int = 256           # inference batch (feature extraction, evaluation)
    num_workers: int = 0
    subset_file: Optional[str] = None  # ImageNet semi-supervised split (SimCLR 1percent.txt / 10percent.txt)
    percent: float = 0.0            # class-balanced seeded percent subset of train for sets without split files


@dataclass
class EvalRunConfig:
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"         # autocast for the frozen backbone; metrics are computed in fp32


@dataclass
class EvalOptimConfig:
    """Optimisation of the trained evaluation protocols (linear probe, semi-supervised, fine-tuning)."""
    name: str = "sgd"               # "sgd" or "lars" (LARC-style trust ratio on every parameter)
    epochs: int = 100
    steps: int = 0                  # >0: train for this many iterations instead of epochs (ssl-transfer)
    batch_size: int = 256
    base_lr: float = 0.1            # learning rate of the backbone (or of the head when the backbone is frozen)
    lr_scaling: str = "linear"      # "linear": lr = base_lr * batch_size / 256; "none": lr = base_lr
    head_lr: Optional[float] = None  # absolute head learning rate when it differs from the backbone's
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    lars_trust: float = 0.001
    warmup_epochs: float = 0.0
    schedule: str = "cosine"        # "cosine" per iteration, "cosine-epoch" stepped per epoch, "constant"


# ----------------------------------------------------------------------------- generic machinery
def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass (what gets saved and hashed)."""
    return dataclasses.asdict(cfg)


def config_hash(cfg: Any, length: int = 10) -> str:
    """Stable short hash of a config (sorted-key JSON), used to name run folders."""
    payload = json.dumps(to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, kind: Any, key: str) -> Any:
    """Check (and lightly convert) ``value`` against the annotation ``kind``."""
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads "1e-12" (no dot) as a string
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        return list(value)
    if kind in (int, float, str, bool) and not (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        raise UserError(f"config key '{key}' expects {kind.__name__}, got {value!r}")
    return value


def _unknown_key(key: str, known: list[str], prefix: str) -> UserError:
    full = f"{prefix}{key}"
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
    where = prefix.rstrip(".") or "top level"
    return UserError(f"unknown config key '{full}'{hint} (keys of {where}: {', '.join(known)})")


def from_dict(cls: type[C], data: dict | None, prefix: str = "") -> C:
    """Build dataclass ``cls`` from a nested dict; unknown keys are a UserError."""
    data = data or {}
    if not isinstance(data, dict):
        raise UserError(f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {data!r}")
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in types_:
            raise _unknown_key(key, list(types_), prefix)
        kind = types_[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = from_dict(kind, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, kind, prefix + key)
    return cls(**kwargs)


def parse_overrides(overrides: list[str]) -> dict:
    """``["optim.epochs=5", "data.name=digits"]`` -> nested dict; values parsed as YAML scalars."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' is not of the form key=value (e.g. optim.epochs=5)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UserError(f"override '{item}' has an empty key part")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override '{item}' conflicts with another override of '{part}'")
        node[parts[-1]] = value
    return nested


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise UserError(f"config file {path} is not valid YAML: {err}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping at the top level")
    return data


def find_named_yaml(folder: str, name_or_path: str) -> Path:
    """A YAML given as a path, or by name from a project folder (``configs``, ``tasks``)."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise UserError(f"config file not found: {candidate}")
        return candidate
    directory = resource_dir(folder)
    path = directory / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        close = difflib.get_close_matches(name_or_path, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"no {folder[:-1]} named '{name_or_path}'{hint} (known: {', '.join(known)})")
    return path


def load_pretrain_config(name_or_path: str, overrides: list[str] | None = None) -> PretrainConfig:
    """Resolve a built-in config name (``configs/NAME.yaml``) or a YAML path, then apply overrides."""
    data = read_yaml(find_named_yaml("configs", name_or_path))
    data = merge(data, parse_overrides(overrides or []))
    return from_dict(PretrainConfig, data)
