"""Typed configuration: dataclass schemas, YAML instances, ``a.b=v`` command-line overrides.

The dataclasses are the truth. A YAML file or an override that names a key the schema lacks is a
:class:`~mec_eval.utils.UserError` listing the close matches, and values are checked against the
field types and against each field's declared range (:func:`checked`): :func:`from_dict` validates
every config it builds, so no path gets an unchecked one. The fully resolved config is what gets
saved in every run folder.

Declaring a range: ``batch_size: int = checked(256, ge=2)``; ``name: str = checked("sgd",
choices=("sgd", "lars"))``; ``lrs: list = checked(factory=lambda: [0.1], items=Rule(gt=0), min_items=1)``.
Checks that span several fields go in a ``check_config(self, prefix)`` method raising ``UserError``.
Non-finite floats (NaN, inf) are rejected everywhere.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

import yaml

from mec_eval.utils import UserError, resource_dir

C = TypeVar("C")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_RULE = "mec_eval.rule"
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d{1,3})?"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MAX_SEED = 2**31 - 1


# ----------------------------------------------------------------------------- validation rules
def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass(frozen=True)
class Rule:
    """What a field accepts: a numeric range, a set of choices, a regex, list items; ``also`` are extra valid values."""
    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    also: tuple = ()
    choices: tuple = ()
    pattern: Optional[str] = None
    pattern_help: str = ""
    items: Optional["Rule"] = None
    min_items: int = 0

    def describe(self) -> str:
        """The allowed values in words: ``> 0``, ``in [0, 1)``, ``one of sgd, lars``."""
        if self.choices:
            text = f"one of {', '.join(map(str, self.choices))}"
        elif self.pattern:
            text = self.pattern_help or f"matching {self.pattern}"
        else:
            ge, gt, le, lt = (None if x is None else _num(x) for x in (self.ge, self.gt, self.le, self.lt))
            low = f"[{ge}" if ge is not None else f"({gt}" if gt is not None else None
            high = f"{le}]" if le is not None else f"{lt})" if lt is not None else None
            if low and high:
                text = f"in {low}, {high}"
            elif low:
                text = f">= {ge}" if ge is not None else f"> {gt}"
            elif high:
                text = f"<= {le}" if le is not None else f"< {lt}"
            else:
                text = "a number"
        return " or ".join([*(repr(a) if isinstance(a, str) else _num(a) for a in self.also), text])

    def _in_range(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        return not ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                    or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt))

    def problem(self, value: Any) -> Optional[str]:
        """None when ``value`` is allowed, else what is wrong (``"must be > 0, got -1"``)."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if self.items is not None or self.min_items:
            return self._list_problem(value)
        if value in self.also and not isinstance(value, bool):
            return None
        if self.choices:
            if value in self.choices:
                return None
            close = difflib.get_close_matches(str(value)[:100], [str(c) for c in self.choices], n=2, cutoff=0.5)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            return f"must be {self.describe()}, got {_shown(value)}{hint}"
        if self.pattern:
            ok = isinstance(value, str) and re.fullmatch(self.pattern, value)
            return None if ok else f"must be {self.describe()}, got {_shown(value)}"
        return None if self._in_range(value) else f"must be {self.describe()}, got {_shown(value)}"

    def _list_problem(self, value: Any) -> Optional[str]:
        if not isinstance(value, (list, tuple)):
            return f"must be a list, got {_shown(value)}"
        if len(value) < self.min_items:
            return f"must list at least {self.min_items} value(s), got {_shown(value)}"
        for index, item in enumerate(value):
            problem = self.items.problem(item) if self.items is not None else None
            if problem:
                return f"item {index} {problem}"
        return None


def checked(default: Any = MISSING, *, factory: Any = MISSING, **rule: Any) -> Any:
    """A dataclass field with a validation :class:`Rule` (``checked(256, ge=2)``)."""
    return field(default=default, default_factory=factory, metadata={_RULE: Rule(**rule)})


def device_field(default: str = "auto") -> Any:
    return checked(default, pattern=DEVICE_PATTERN, pattern_help="auto, cpu, cuda, cuda:N or mps")


def precision_field(default: str = "auto") -> Any:
    return checked(default, choices=PRECISIONS)


def seed_field(default: int = 0) -> Any:
    return checked(default, ge=0, le=MAX_SEED)


def validate(cfg: C, prefix: str = "") -> C:
    """Check every field of the config dataclass ``cfg`` (recursively) against its rule; returns ``cfg``.

    The first bad value is a one-line :class:`UserError` naming the key, the value and what is allowed.
    """
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, key + ".")
            continue
        rule = f.metadata.get(_RULE)
        if isinstance(value, float) and not math.isfinite(value):
            problem = f"must be a finite number, got {value!r}"
        else:
            problem = rule.problem(value) if rule is not None and value is not None else None
        if problem:
            raise UserError(f"config key '{key}' {problem}")
    check = getattr(cfg, "check_config", None)
    if callable(check):
        check(prefix)
    return cfg


# ----------------------------------------------------------------------------- pre-training schema
@dataclass
class DataConfig:
    name: str = "shapes"            # dataset registry name (mec-eval list datasets)
    root: Optional[str] = None      # dataset folder for on-disk sets
    image_size: int = checked(32, ge=8, le=4096)  # crop size fed to the network
    augment: str = checked("byol", choices=("byol", "cifar"))  # "byol" (MEC App. C, with blur/solarize) or
                                    # "cifar" (App. B, no blur)
    crop_min_scale: float = checked(0.2, gt=0, le=1)  # RandomResizedCrop lower bound (App. C)
    augment_backend: str = checked("auto", choices=("auto", "per-sample", "batch"))
                                    # "per-sample" (both views in loader workers), "batch" (workers decode and
                                    # crop, the training device does the rest); auto: batch (pretrain/inputs.py)
    num_workers: int = checked(0, ge=0, le=512)  # DataLoader workers; 0 keeps CPU cores for the model


@dataclass
class ModelConfig:
    arch: str = "resnet_tiny"
    proj_hidden: int = checked(2048, ge=1)
    proj_dim: int = checked(2048, ge=1)
    proj_layers: int = checked(3, ge=1, le=16)  # App. C: 3-layer projector (App. B CIFAR: 2)
    predictor: Optional[bool] = None  # None: the objective's default (asymmetric for MEC)
    pred_hidden: int = checked(512, ge=1)
    teacher: Optional[bool] = None    # None: the objective's default (EMA teacher for MEC/BYOL)
    ema_momentum: float = checked(0.996, ge=0, le=1)  # base EMA momentum, cosine-increased to 1 (App. C)


@dataclass
class LossConfig:
    name: str = "mec"
    eps_d2: float = checked(0.06, gt=0)  # distortion eps_d^2 (App. C, Table 5c)
    order: int = checked(4, ge=1, le=64)  # Taylor order (Table 5e)
    side: str = checked("auto", choices=("auto", "batch", "feature"))  # Eq. 4
    lam_warmup_epochs: float = checked(10.0, ge=0)  # lam_inv warm-up 8/lam -> 1/lam (official main_pretrain.py)
    temperature: float = checked(0.1, gt=0)  # SimCLR
    barlow_lambda: float = checked(0.0051, ge=0)  # Barlow Twins off-diagonal weight
    vicreg_sim: float = checked(25.0, ge=0)
    vicreg_var: float = checked(25.0, ge=0)
    vicreg_cov: float = checked(1.0, ge=0)
    regularizer: str = checked("none", choices=("none", "mec"))  # "mec": + weight * MEC loss (MEC Figure 5)
    regularizer_weight: float = checked(1.0, ge=0)  # Figure 5 states no weight; 1 = MEC's own scale


MAE_LOSSES = ("mae", "umae", "mmae")  # single-branch masked-autoencoder objectives (ViT backbones only)


def is_vit_arch(arch: str) -> bool:
    """Whether ``arch`` names a ViT (``vit_*`` in the backbone registry); known without importing torch."""
    return arch.startswith("vit_")


@dataclass
class MAEConfig:
    """Masked-autoencoder pre-training (``loss.name=mae|umae|mmae``; MAE main_pretrain.py / models_mae.py)."""
    mask_ratio: float = checked(0.75, ge=0, lt=1)  # --mask_ratio 0.75 (MAE, U-MAE, M-MAE pretrain.sh)
    norm_pix_loss: bool = True      # --norm_pix_loss (per-patch normalised pixel targets)
    decoder_dim: int = checked(512, ge=4)  # mae_vit_*_dec512d8b: 512 wide (a multiple of 4 and of decoder_heads)
    decoder_depth: int = checked(8, ge=1, le=64)  # 8 blocks
    decoder_heads: int = checked(16, ge=1)  # 16 heads
    umae_weight: float = checked(0.01, ge=0)  # U-MAE: lambda 1e-4 on (cos / tau)^2, tau 0.1 = 0.01 on cos^2
    mmae_lambda: float = checked(0.01, ge=0)  # M-MAE --lamb 1e-2
    mmae_mu: float = checked(1.0, gt=0)  # M-MAE --uniformity_lamda: 1 (ViT-B), 3 (ViT-L)

    def check_config(self, prefix: str) -> None:
        if self.decoder_dim % self.decoder_heads or self.decoder_dim % 4:
            raise UserError(f"config key '{prefix}decoder_dim' ({self.decoder_dim}) must be a multiple of 4 and of "
                            f"'{prefix}decoder_heads' ({self.decoder_heads})")


SCHEDULES = ("cosine", "cosine-epoch", "constant", "multistep")
OPTIMIZERS = ("sgd", "lars", "adamw")


@dataclass
class TrainingOptimConfig:
    """What the one training engine (:mod:`mec_eval.training`) reads: optimiser, lr scaling, schedule.

    Pre-training (:class:`OptimConfig`) and the trained evaluation tasks (:class:`EvalOptimConfig`)
    share these fields and differ only in their defaults.
    """
    name: str = checked("sgd", choices=OPTIMIZERS)  # "lars": trust ratio (You et al.); "adamw": M-MAE, detection
    epochs: int = checked(100, ge=1)
    batch_size: int = checked(256, ge=2)  # global (effective) batch over all processes
    base_lr: float = checked(0.1, gt=0)
    lr_scaling: str = checked("linear", choices=("linear", "none"))  # "linear": lr = base_lr * batch / 256 (MAE)
    momentum: float = checked(0.9, ge=0, lt=1)  # SGD / LARS
    nesterov: bool = False          # SGD only
    betas: list = checked(factory=lambda: [0.9, 0.999], items=Rule(ge=0, lt=1), min_items=2)  # AdamW only
    weight_decay: float = checked(0.0, ge=0)
    lars_trust: float = checked(0.001, gt=0)
    lars_exclude_1d: bool = False   # LARS: no weight decay / trust ratio on biases and BatchNorm (SSL pre-training)
    warmup_epochs: float = checked(0.0, ge=0)  # linear warm-up from 0 (per iteration), then the schedule
    schedule: str = checked("cosine", choices=SCHEDULES)
                                    # "cosine" per iteration, "cosine-epoch" stepped per epoch (torch
                                    # CosineAnnealingLR), "constant", "multistep" (x gamma at each milestone)
    milestones: list = checked(factory=list, items=Rule(ge=1))  # multistep: iterations (detectron2 SOLVER.STEPS)
    gamma: float = checked(0.1, gt=0, le=1)  # multistep factor (detectron2 SOLVER.GAMMA)

    def check_config(self, prefix: str) -> None:
        if len(self.betas) != 2:
            raise UserError(f"config key '{prefix}betas' must list two values like [0.9, 0.999], got {self.betas!r}")
        if list(self.milestones) != sorted(set(self.milestones)):
            raise UserError(f"config key '{prefix}milestones' must be increasing iterations, got {self.milestones!r}")
        if self.schedule == "multistep" and not self.milestones:
            raise UserError(f"config key '{prefix}schedule' is multistep: set {prefix}milestones "
                            "(iterations, e.g. [18000, 22000])")


@dataclass
class OptimConfig(TrainingOptimConfig):
    """Pre-training optimisation (MEC App. C: SGD, lr 0.5 * batch / 256, wd 1e-5, 10 warm-up epochs, cosine)."""
    base_lr: float = checked(0.5, gt=0)
    weight_decay: float = checked(1e-5, ge=0)
    lars_exclude_1d: bool = True
    warmup_epochs: float = checked(10.0, ge=0)


@dataclass
class RunConfig:
    seed: int = seed_field()
    device: str = device_field()    # "auto", "cpu", "cuda", "cuda:1", "mps"
    precision: str = precision_field()  # "auto" (bf16 on CPU, fp16 AMP on CUDA), "fp32", "bf16", "fp16"
    channels_last: bool = True
    log_every: int = checked(10, ge=0)  # iterations between JSON log lines (0: none)
    max_steps_per_epoch: int = checked(0, ge=0)  # 0 = full epochs; >0 truncates (smoke tests, quick demo)
    save_every: int = checked(1, ge=1)  # keep checkpoint_XXXX.pt every N epochs (last.pt is written every epoch)
    save_state_every: int = checked(1000, ge=0)  # also write last.pt every N iterations (0: epoch ends only);
                                    # SIGTERM / SIGUSR1 always save before stopping
    sync_bn: bool = True            # SyncBatchNorm over all GPUs (official MEC main_pretrain.py); GPU-only in torch
    diagnostics_every: int = checked(0, ge=0)  # log H1 / effective rank of the batch projections every K iterations


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)  # read only by loss.name=mae|umae|mmae

    def check_config(self, prefix: str) -> None:
        mae, vit = self.loss.name in MAE_LOSSES, is_vit_arch(self.model.arch)
        if mae and not vit:
            raise UserError(f"loss.name={self.loss.name} trains a ViT; set model.arch to vit_tiny_p4, vit_small_p4, "
                            f"vit_tiny, vit_small, vit_base or vit_large (got {self.model.arch})")
        if vit and not mae:
            raise UserError(f"model.arch={self.model.arch} is a ViT, which mec-eval pre-trains with loss.name=mae, "
                            f"umae or mmae only (got {self.loss.name}); use a ResNet for the Siamese losses")
        if mae and self.loss.regularizer != "none":
            raise UserError(f"loss.regularizer={self.loss.regularizer} applies to the Siamese losses; loss.name="
                            f"{self.loss.name} has its own regulariser (mae.umae_weight / mae.mmae_lambda)")


# ----------------------------------------------------------------------------- evaluation sections
@dataclass
class EvalDataConfig:
    name: str = "imagenet"          # dataset registry name; "all" runs the 11 transfer sets (transfer tasks)
    root: Optional[str] = None
    image_size: int = checked(0, ge=0, le=4096)  # 0: the dataset's native size (224 ImageNet, 32 embedded sets)
    resize_ratio: float = checked(0.0, ge=1, le=8, also=(0,))
                                    # test resize = image_size * ratio before the centre crop; 0: 256/224 from
                                    # 128 px up (ImageNet protocol), 1 below (embedded 32 px sets)
    interpolation: str = checked("bilinear", choices=("bilinear", "bicubic"))  # ssl-transfer resizes bicubic
    batch_size: int = checked(256, ge=1)  # inference batch (feature extraction, evaluation)
    num_workers: int = checked(0, ge=0, le=512)
    decoded_cache_mb: int = checked(0, ge=0, le=1 << 20)
                                    # MiB of decoded uint8 images the trained tasks keep per process so epochs
                                    # after the first skip JPEG decoding (mec_eval.data.image_cache); 0: off.
                                    # Off by default: it is resident memory a SLURM mem_gb must cover, once
                                    # per DDP process and per local-parallel run (a set needs H*W*3 bytes
                                    # per image: Flowers-102 train ~1 GB, Food-101 train ~45 GB)
    subset_file: Optional[str] = None  # ImageNet semi-supervised split (SimCLR 1percent.txt / 10percent.txt)
    percent: float = checked(0.0, ge=0, le=100)  # class-balanced seeded percent subset of train for sets
                                    # without split files


@dataclass
class EvalRunConfig:
    seed: int = seed_field()
    device: str = device_field()
    precision: str = precision_field()  # autocast for the frozen backbone; metrics are computed in fp32


@dataclass
class EvalOptimConfig(TrainingOptimConfig):
    """Optimisation of the trained evaluation protocols (linear probe, semi-supervised, fine-tuning)."""
    epochs: int = checked(100, ge=0)
    steps: int = checked(0, ge=0)   # >0: train for this many iterations instead of epochs (ssl-transfer)
    head_lr: Optional[float] = checked(None, gt=0)  # absolute head learning rate when it differs from the backbone's
    save_every: int = checked(1000, ge=0)  # iterations between saves of state.pt (0: epoch ends only);
                                    # SIGTERM / SIGUSR1 always save before stopping
    log_every: int = checked(0, ge=0)  # iterations between JSON log lines (0: one line per epoch)
    sync_bn: bool = False           # SyncBatchNorm across processes (GPU-only); main_lincls.py does not use it

    def check_config(self, prefix: str) -> None:
        super().check_config(prefix)
        if self.epochs < 1 and self.steps < 1:
            raise UserError(f"config keys '{prefix}epochs' and '{prefix}steps' are both 0; "
                            f"set {prefix}epochs >= 1 (or {prefix}steps >= 1)")


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
    if kind is list or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key '{key}' expects a list like [1, 2], got {_shown(value)}")
        return list(value)
    if kind in (int, float, str, bool) and not (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        raise UserError(f"config key '{key}' expects {kind.__name__}, got {_shown(value)}")
    return value


def _unknown_key(key: Any, known: list[str], prefix: str) -> UserError:
    key = str(key)
    full = f"{prefix}{key}"
    close = difflib.get_close_matches(key[:100], known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
    where = prefix.rstrip(".") or "top level"
    return UserError(f"unknown config key {_shown(full)}{hint} (keys of {where}: {', '.join(known)})")


def _build(cls: type[C], data: dict | None, prefix: str) -> C:
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {_shown(data)}")
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in types_:
            raise _unknown_key(key, list(types_), prefix)
        kind = types_[key]
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _build(kind, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, kind, prefix + key)
    required = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if required:
        raise UserError(f"config key(s) {', '.join(prefix + r for r in required)} must be set (no default)")
    return cls(**kwargs)


def from_dict(cls: type[C], data: dict | None, prefix: str = "") -> C:
    """Build dataclass ``cls`` from a nested dict and :func:`validate` it; unknown keys and bad values are UserErrors."""
    return validate(_build(cls, data, prefix), prefix)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping naming one key twice (safe_load keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_shown(key)}", key_node.start_mark)
            seen.add(key) if isinstance(key, typing.Hashable) else None
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where."""
    problem = getattr(err, "problem", None) or str(err)
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    if "python/" in problem:
        problem += "; Python tags are not allowed in config files"
    return " ".join(f"{problem}{where}".split())


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def parse_overrides(overrides: list[str]) -> dict:
    """``["optim.epochs=5", "data.name=digits"]`` -> nested dict; values parsed as YAML scalars."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {_shown(item)} is not of the form key=value (e.g. optim.epochs=5)")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UserError(f"override {_shown(item)} has an empty key part")
        try:
            value = _load_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise UserError(f"override {_shown(item)}: the value is not valid YAML ({_yaml_problem(err)})") from None
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {_shown(item)} conflicts with another override of '{part}'")
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
    """A YAML config file as a dict; missing, unreadable, empty, non-UTF-8 or non-mapping files are UserErrors."""
    path = Path(path)
    if _kind(path) == "dir":
        raise UserError(f"{path} is a folder, not a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; save the config as UTF-8 YAML") from None
    except OSError as err:
        raise UserError(f"cannot read config file {path}: {err.strerror or err}") from None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as err:
        raise UserError(f"config file {path} is not valid YAML: {_yaml_problem(err)}") from None
    if data is None:
        raise UserError(f"{path} is empty; write at least one key (e.g. 'optim: {{epochs: 10}}') "
                        "or use a built-in config name")
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping (key: value lines) at the top level, "
                        f"not a {type(data).__name__}")
    return data


def _kind(path: Path) -> Optional[str]:
    """"dir", "file", "other" or None (missing, or a name the OS refuses such as one too long)."""
    try:
        return "dir" if path.is_dir() else "file" if path.is_file() else "other" if path.exists() else None
    except OSError:
        return None


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def find_named_yaml(folder: str, name_or_path: str) -> Path:
    """A YAML given as a path, or by name from a project folder (``configs``, ``tasks``)."""
    candidate = Path(name_or_path)
    kind = _kind(candidate)
    if kind == "dir":
        raise UserError(f"{candidate} is a folder, not a YAML file")
    if candidate.suffix in (".yaml", ".yml") or kind is not None:
        if kind != "file":
            raise UserError(f"config file not found: {_shown(str(candidate), 200)}")
        return candidate
    directory = resource_dir(folder)
    known = sorted(p.stem for p in directory.glob("*.yaml"))
    if _PLAIN_NAME.fullmatch(name_or_path) and (directory / f"{name_or_path}.yaml").is_file():
        return directory / f"{name_or_path}.yaml"
    close = difflib.get_close_matches(name_or_path[:100], known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    kind = folder[:-1] if folder.endswith("s") else folder  # "configs" -> "config"; "slurm" stays
    raise UserError(f"no {kind} named {_shown(name_or_path)}{hint} (known: {', '.join(known)})")


def load_pretrain_config(name_or_path: str, overrides: list[str] | None = None) -> PretrainConfig:
    """Resolve a built-in config name (``configs/NAME.yaml``) or a YAML path, then apply overrides (validated)."""
    data = read_yaml(find_named_yaml("configs", name_or_path))
    data = merge(data, parse_overrides(overrides or []))
    return from_dict(PretrainConfig, data)
