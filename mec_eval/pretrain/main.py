"""``mec-eval pretrain``: build data, network, objective; train on the shared engine with auto-resume.

Re-running the same command on the same ``--out`` continues from ``last.pt``, which is written
atomically every ``run.save_state_every`` iterations, after every epoch and on SIGTERM / SIGUSR1;
a kill at any moment loses at most the iterations since the last save, and the resumed run ends
bit-identical to an uninterrupted one on CPU.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from mec_eval.config import MAE_LOSSES, PretrainConfig, to_dict, validate
from mec_eval.dist import init_from_env, is_main_process, resolve_device, resolve_precision
from mec_eval.log import JsonLogger
from mec_eval.models import SiameseNetwork
from mec_eval.objectives import build_objective
from mec_eval.pretrain.engine import NON_FINITE_HINT, PretrainStore, siamese_hooks, siamese_step
from mec_eval.pretrain.inputs import build_training_inputs
from mec_eval.pretrain.mae_engine import build_mae_setup, train_mae
from mec_eval.runs import save_config
from mec_eval.training.engine import LoopOptions, TrainingEngine, make_plan
from mec_eval.utils import UserError


def build_network(cfg: PretrainConfig, objective) -> SiameseNetwork:
    predictor = objective.default_predictor if cfg.model.predictor is None else cfg.model.predictor
    teacher = objective.default_teacher if cfg.model.teacher is None else cfg.model.teacher
    return SiameseNetwork(cfg.model.arch, cfg.model.proj_hidden, cfg.model.proj_dim, cfg.model.proj_layers,
                          predictor, cfg.model.pred_hidden, teacher, objective.stop_gradient_target)


@dataclass
class _Setup:
    """Everything built before the out folder is touched."""
    device: torch.device
    amp_dtype: torch.dtype | None
    objective: torch.nn.Module
    dataset: object
    make_views: object
    net: SiameseNetwork


def _build(cfg: PretrainConfig) -> _Setup:
    """Validate the config and build device, objective, data and network (no files written)."""
    validate(cfg)
    device = resolve_device(cfg.run.device)
    amp_dtype = resolve_precision(cfg.run.precision, device)
    torch.manual_seed(cfg.run.seed)
    objective = build_objective(cfg.loss)
    dataset, make_views = build_training_inputs(cfg.data, cfg.run.seed)
    if len(dataset) < cfg.optim.batch_size:
        raise UserError(f"optim.batch_size={cfg.optim.batch_size} exceeds the {len(dataset)} training images "
                        f"of {cfg.data.name}; lower optim.batch_size")
    net = build_network(cfg, objective).to(device)
    return _Setup(device, amp_dtype, objective, dataset, make_views, net)


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
    init_from_env(cfg.run.device)  # no-op unless launched by torchrun (or submitit) with several processes
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; pass a folder path")
    mae = cfg.loss.name in MAE_LOSSES  # single-branch ViT objectives: pretrain/mae_engine.py
    setup = build_mae_setup(cfg) if mae else _build(cfg)
    top, before = _created_by_this_run(out) if is_main_process() else (None, set())
    if not is_main_process():
        out.mkdir(parents=True, exist_ok=True)
    try:
        return (train_mae if mae else _train)(cfg, setup, out, quiet)
    except BaseException:
        if not any(out.glob("checkpoint_*.pt")) and not (out / "last.pt").exists():
            _clean_up(out, top, before)
        raise


def _train(cfg: PretrainConfig, setup: _Setup, out: Path, quiet: bool) -> Path:
    logger = JsonLogger(out / "log.jsonl" if is_main_process() else None, quiet=quiet or not is_main_process())
    plan = make_plan(len(setup.dataset), cfg.optim.batch_size, cfg.optim.epochs, drop_last=True,
                     max_iters_per_epoch=cfg.run.max_steps_per_epoch)
    history: list = []
    options = LoopOptions(seed=cfg.run.seed, device=setup.device, amp_dtype=setup.amp_dtype,
                          channels_last=cfg.run.channels_last, save_every=cfg.run.save_state_every,
                          log_every=cfg.run.log_every, sync_bn=cfg.run.sync_bn, num_workers=cfg.data.num_workers,
                          quiet=logger.quiet, desc="epoch", non_finite_hint=NON_FINITE_HINT)
    step = siamese_step(setup.objective, setup.device, setup.amp_dtype, cfg.run.channels_last, setup.make_views)
    hooks = siamese_hooks(cfg, setup.net, setup.objective, setup.make_views, plan, history, logger)
    params = [p for p in setup.net.parameters() if p.requires_grad]
    engine = TrainingEngine(setup.net, params, step, setup.dataset, cfg.optim, plan, options,
                            PretrainStore(out, cfg, setup.net, plan, history, logger), logger, hooks)
    if is_main_process():
        save_config(out, to_dict(cfg))
    logger.info(engine.scale_line())
    logger.log(event="start", **engine.scale, iters_per_epoch=plan.iters_per_epoch, device=str(setup.device),
               precision=str(setup.amp_dtype).replace("torch.", "") if setup.amp_dtype else "fp32",
               images=len(setup.dataset))
    engine.fit()
    return out / "last.pt"
