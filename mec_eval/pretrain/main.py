"""``mec-eval pretrain``: build data, network, objective and optimiser; train with auto-resume.

Re-running the same command on the same ``--out`` continues from ``last.pt``; checkpoints are
written atomically after every epoch, so a kill at any moment loses at most the epoch in flight.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader, DistributedSampler

from mec_eval.checkpoints import make_canonical, safe_torch_load, save_canonical
from mec_eval.config import PretrainConfig, to_dict, validate
from mec_eval.dist import (init_from_env, is_distributed, is_main_process, resolve_device, resolve_precision,
                           world_size)
from mec_eval.log import JsonLogger
from mec_eval.models import SiameseNetwork
from mec_eval.objectives import build_objective
from mec_eval.pretrain.engine import Schedule, train_one_epoch
from mec_eval.pretrain.inputs import build_training_inputs
from mec_eval.pretrain.optim import build_optimizer, scaled_lr
from mec_eval.runs import save_config
from mec_eval.utils import UserError

# Keys that may change between a run and its resumption without invalidating it.
_RESUMABLE_CHANGES = {("optim", "epochs"), ("run", "device"), ("run", "log_every"), ("run", "save_every"),
                      ("data", "num_workers"), ("data", "root")}


def build_network(cfg: PretrainConfig, objective) -> SiameseNetwork:
    predictor = objective.default_predictor if cfg.model.predictor is None else cfg.model.predictor
    teacher = objective.default_teacher if cfg.model.teacher is None else cfg.model.teacher
    return SiameseNetwork(cfg.model.arch, cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.proj_layers,
                          predictor, cfg.model.pred_hidden, teacher, objective.stop_gradient_target)


def _config_differences(saved: dict, current: dict) -> list[str]:
    diffs = []
    for section, values in current.items():
        for key, value in values.items():
            old = saved.get(section, {}).get(key)
            if old != value and (section, key) not in _RESUMABLE_CHANGES:
                diffs.append(f"{section}.{key}: {old!r} -> {value!r}")
    return diffs


def _make_loader(dataset, cfg: PretrainConfig, epoch: int) -> DataLoader:
    local_batch = cfg.optim.batch_size // world_size()
    generator = torch.Generator().manual_seed(cfg.run.seed * 100_003 + epoch)
    sampler = None
    if is_distributed():
        sampler = DistributedSampler(dataset, shuffle=True, seed=cfg.run.seed, drop_last=True)
        sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=local_batch, shuffle=sampler is None, sampler=sampler, drop_last=True,
                      num_workers=cfg.data.num_workers, generator=generator, pin_memory=torch.cuda.is_available(),
                      persistent_workers=False)


def _checkpoint(cfg: PretrainConfig, net: SiameseNetwork, optimizer, scaler, epochs_done: int, history: list) -> dict:
    resume = {"optimizer": optimizer.state_dict(), "epochs_done": epochs_done, "history": history,
              "scaler": scaler.state_dict() if scaler is not None else None,
              "teacher_full": net.teacher.state_dict() if net.teacher is not None else None}
    return make_canonical(cfg.model.arch, net.backbone.state_dict(), heads=net.heads_state(),
                          teacher=net.teacher_backbone_state(),
                          meta={"method": cfg.loss.name, "epoch": epochs_done, "config": to_dict(cfg),
                                "resume": resume})


def _load_last(path: Path):
    """``last.pt`` through the safe loader; any failure to read it is one line saying to delete it."""
    try:
        return safe_torch_load(path)
    except Exception as err:  # noqa: BLE001 - UserError included; a damaged file fails anywhere in the parser
        reason = " ".join(str(err).split())[:200]
        raise UserError(f"{path} is truncated or corrupt ({reason}); delete it to restart from scratch "
                        "(the checkpoint_XXXX.pt files beside it hold weights only and are kept)") from None


def _resume(path: Path, cfg: PretrainConfig, net: SiameseNetwork, optimizer, scaler) -> tuple[int, list]:
    ckpt = _load_last(path)
    meta = ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}
    if "resume" not in meta or not isinstance(meta["resume"], dict):
        raise UserError(f"{path} is not a mec-eval pre-training state; use an empty --out folder")
    diffs = _config_differences(meta.get("config", {}), to_dict(cfg))
    if diffs:
        raise UserError(f"{path.parent} holds a run with another config ({'; '.join(diffs)}); "
                        "use a new --out or the same settings to resume")
    state = meta["resume"]
    try:
        net.backbone.load_state_dict(ckpt["backbone"])
        net.projector.load_state_dict(ckpt["heads"]["projector"])
        if net.predictor is not None:
            net.predictor.load_state_dict(ckpt["heads"]["predictor"])
        if net.teacher is not None:
            net.teacher.load_state_dict(state["teacher_full"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        return int(state["epochs_done"]), list(state.get("history", []))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
        raise UserError(f"{path} does not match this network ({reason}); delete it to restart from scratch, "
                        "or use a new --out") from None


@dataclass
class _Setup:
    """Everything built before the out folder is touched."""
    device: torch.device
    amp_dtype: Optional[torch.dtype]
    objective: torch.nn.Module
    dataset: object
    make_views: object
    net: SiameseNetwork
    optimizer: torch.optim.Optimizer
    scaler: Optional[torch.amp.GradScaler]
    peak_lr: float


def _build(cfg: PretrainConfig) -> _Setup:
    """Validate the config and build device, objective, data, network and optimiser (no files written)."""
    validate(cfg)
    device = resolve_device(cfg.run.device)
    amp_dtype = resolve_precision(cfg.run.precision, device)
    torch.manual_seed(cfg.run.seed)
    objective = build_objective(cfg.loss)
    dataset, make_views = build_training_inputs(cfg.data, cfg.run.seed)
    if len(dataset) < cfg.optim.batch_size:
        raise UserError(f"optim.batch_size={cfg.optim.batch_size} exceeds the {len(dataset)} training images "
                        f"of {cfg.data.name}; lower optim.batch_size")
    net = build_network(cfg, objective)
    if is_distributed() and device.type == "cuda":
        # BatchNorm statistics over the global batch, as the official code (SyncBN on the whole
        # model); torch's SyncBatchNorm is GPU-only, so multi-process CPU runs keep per-process BN.
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net = net.to(device)
    if cfg.run.channels_last:
        net = net.to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    peak_lr = scaled_lr(cfg.optim.base_lr, cfg.optim.batch_size)
    optimizer = build_optimizer(params, cfg.optim.name, peak_lr, cfg.optim.momentum, cfg.optim.weight_decay,
                                cfg.optim.lars_trust)
    scaler = torch.amp.GradScaler("cuda") if (device.type == "cuda" and amp_dtype == torch.float16) else None
    return _Setup(device, amp_dtype, objective, dataset, make_views, net, optimizer, scaler, peak_lr)


def _created_by_this_run(out: Path) -> tuple[Path | None, set[str]]:
    """Create ``out``; return (the topmost folder this call created or None, names already inside ``out``)."""
    top = next((p for p in [*reversed(out.parents), out] if not p.exists()), None)
    before = {entry.name for entry in out.iterdir()} if out.is_dir() else set()
    out.mkdir(parents=True, exist_ok=True)
    return top, before


def _clean_up(out: Path, top: Path | None, before: set[str]) -> None:
    """Remove what a run that failed before its first checkpoint wrote; never what was there before it."""
    if not is_main_process():
        return
    if top is not None:
        shutil.rmtree(top, ignore_errors=True)
        return
    for entry in out.iterdir() if out.is_dir() else []:
        if entry.name not in before and entry.is_file():
            entry.unlink(missing_ok=True)


def pretrain(cfg: PretrainConfig, out: str | Path, quiet: bool = False) -> Path:
    """Train (or resume) and return the path of ``last.pt``.

    Everything that can fail on the config, the data or the model is built before ``out`` is
    created; a run that fails before its first checkpoint removes the files it created there.
    """
    init_from_env()  # no-op unless launched by torchrun with several processes
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; pass a folder path")
    setup = _build(cfg)
    top, before = _created_by_this_run(out) if is_main_process() else (None, set())
    if not is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    try:
        return _train(cfg, setup, out, quiet)
    except BaseException:
        if not any(out.glob("checkpoint_*.pt")) and not (out / "last.pt").exists():
            _clean_up(out, top, before)
        raise


def _train(cfg: PretrainConfig, setup: _Setup, out: Path, quiet: bool) -> Path:
    logger = JsonLogger(out / "log.jsonl" if is_main_process() else None, quiet=quiet or not is_main_process())
    net, optimizer, scaler, dataset, device = setup.net, setup.optimizer, setup.scaler, setup.dataset, setup.device
    start_epoch, history = 0, []
    last = out / "last.pt"
    if last.exists():
        start_epoch, history = _resume(last, cfg, net, optimizer, scaler)
        logger.info(f"resuming from {last} after epoch {start_epoch}")
    save_config(out, to_dict(cfg))
    if start_epoch >= cfg.optim.epochs:
        logger.info(f"{out} already finished {start_epoch} epochs; nothing to do")
        return last

    iters = len(dataset) // cfg.optim.batch_size
    if cfg.run.max_steps_per_epoch:
        iters = min(iters, cfg.run.max_steps_per_epoch)
    schedule = Schedule(setup.peak_lr, cfg.optim.warmup_epochs, cfg.optim.epochs, iters, cfg.model.ema_momentum,
                        cfg.run.log_every)
    logger.log(event="start", lr=setup.peak_lr, base_lr=cfg.optim.base_lr, batch=cfg.optim.batch_size,
               iters_per_epoch=iters, device=str(device),
               precision=str(setup.amp_dtype).replace("torch.", "") if setup.amp_dtype else "fp32",
               images=len(dataset), start_epoch=start_epoch)
    model = torch.nn.parallel.DistributedDataParallel(net) if is_distributed() else net
    for epoch in range(start_epoch, cfg.optim.epochs):
        torch.manual_seed(cfg.run.seed * 1_000_003 + epoch)  # augmentations replay identically on resume
        if setup.make_views is not None:
            setup.make_views.reseed(cfg.run.seed * 1_000_003 + epoch)
        stats = train_one_epoch(model, setup.objective, _make_loader(dataset, cfg, epoch), optimizer, scaler, epoch,
                                schedule, device, setup.amp_dtype, cfg.run.channels_last, logger, cfg.loss.name,
                                setup.make_views)
        history.append({"epoch": epoch + 1, **stats, "time": time.time()})
        logger.log(event="epoch", **history[-1])
        if is_main_process():
            ckpt = _checkpoint(cfg, net, optimizer, scaler, epoch + 1, history)
            if (epoch + 1) % max(cfg.run.save_every, 1) == 0 or epoch + 1 == cfg.optim.epochs:
                # Numbered checkpoints are for evaluation: no optimiser state (half the size).
                light = {**ckpt, "meta": {k: v for k, v in ckpt["meta"].items() if k != "resume"}}
                save_canonical(light, out / f"checkpoint_{epoch + 1:04d}.pt")
            save_canonical(ckpt, last)
    return last
