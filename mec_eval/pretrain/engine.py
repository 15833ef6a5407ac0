"""Pre-training on the shared training engine: the Siamese step, its per-iteration hooks, and the
canonical ``last.pt`` / ``checkpoint_XXXX.pt`` files that hold its resumable state."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from mec_eval.checkpoints import make_canonical, safe_torch_load, save_canonical
from mec_eval.config import PretrainConfig, to_dict
from mec_eval.dist import autocast, rank
from mec_eval.log import JsonLogger
from mec_eval.models import SiameseNetwork, cosine_momentum
from mec_eval.pretrain.collapse import CollapseMonitor
from mec_eval.training.engine import Hooks, Plan
from mec_eval.training.sampling import derive_seed
from mec_eval.utils import UserError

NON_FINITE_HINT = ("for MEC raise loss.eps_d2 (the Taylor series needs ||lam Z1 Z2^T|| < 1) or lower loss.order, "
                   "otherwise lower optim.base_lr; the last good checkpoint is kept")

# Keys that may change between a run and its resumption without invalidating it.
RESUMABLE_CHANGES = {("optim", "epochs"), ("run", "device"), ("run", "log_every"), ("run", "save_every"),
                     ("run", "save_state_every"), ("data", "num_workers"), ("data", "root"),
                     ("run", "diagnostics_every")}


def siamese_step(objective: torch.nn.Module, device: torch.device, amp_dtype, channels_last: bool,
                 make_views=None) -> Callable:
    """``step(model, batch) -> loss``: the two views (built on the device from a uint8 batch when
    ``make_views``), the forward pass and the loss.

    Only the network runs under autocast; the objective (log-det Taylor series for MEC) runs in fp32.
    """
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def step(model, batch) -> torch.Tensor:
        images, _ = batch
        views = make_views(images) if make_views is not None else images
        views = [v.contiguous(memory_format=memory_format) for v in views]
        with autocast(device, amp_dtype):
            online, target = model(views)
        return objective(online, target)

    return step


def siamese_hooks(cfg: PretrainConfig, net: SiameseNetwork, objective, make_views, plan: Plan, history: list,
                  logger: JsonLogger) -> Hooks:
    """λ warm-up before each step, the EMA teacher after it (MEC App. C), and the per-epoch record."""
    total = plan.total_iters
    monitor = CollapseMonitor(net.projector, cfg.run.diagnostics_every, logger) if cfg.run.diagnostics_every else None

    def before(iteration: int, fractional_epoch: float) -> None:
        objective.on_step(fractional_epoch)
        if monitor is not None:
            monitor.before(iteration)
        if make_views is not None:  # batched augmentation: draws depend on (seed, iteration, rank) only
            make_views.reseed(derive_seed(cfg.run.seed, "views", iteration, rank()))

    def after(iteration: int, fractional_epoch: float) -> dict:
        momentum = cosine_momentum(iteration, total, base=cfg.model.ema_momentum)
        net.update_teacher(momentum)
        if monitor is not None:
            monitor.after(iteration)
        return {"ema": momentum, **{k: float(v) for k, v in getattr(objective, "stats", {}).items()}}

    def epoch_end(epochs_done: int, stats: dict) -> None:
        # PretrainStore.save appended the record (it is saved in last.pt); rank 0 logs it once saved.
        if history and history[-1]["epoch"] == epochs_done:
            logger.log(event="epoch", **history[-1])

    return Hooks(before_step=before, after_step=after, on_epoch_end=epoch_end)


def _config_differences(saved: dict, current: dict, defaults: dict | None = None) -> list[str]:
    """The settings that differ between a saved run and this one (``section.key: old -> new``).

    A setting the saved config lacks (added to mec-eval after that run began) counts as its default
    in ``defaults``: the run was made with what the setting now means by default.
    """
    diffs, defaults = [], defaults or {}
    for section, values in current.items():
        for key, value in values.items():
            saved_section = saved.get(section, {})
            missing = key not in saved_section
            old = defaults.get(section, {}).get(key) if missing else saved_section[key]
            if old != value and (section, key) not in RESUMABLE_CHANGES:
                diffs.append(f"{section}.{key}: {'(not saved)' if missing else repr(old)} -> {value!r}")
    return diffs


def load_last(path: Path):
    """``last.pt`` through the safe loader; any failure to read it is one line saying to delete it."""
    try:
        return safe_torch_load(path)
    except Exception as err:  # noqa: BLE001 - UserError included; a damaged file fails anywhere in the parser
        reason = " ".join(str(err).split())[:200]
        raise UserError(f"{path} is truncated or corrupt ({reason}); delete it to restart from scratch "
                        "(the checkpoint_XXXX.pt files beside it hold weights only and are kept)") from None


class PretrainStore:
    """The engine's state store for pre-training: ``last.pt`` (canonical ``mec-eval/1`` + ``meta.resume``),
    written every ``run.save_state_every`` iterations and each epoch; ``checkpoint_XXXX.pt`` (weights
    only) every ``run.save_every`` epochs and after the last."""

    def __init__(self, out: Path, cfg: PretrainConfig, net: SiameseNetwork, plan: Plan, history: list,
                 logger: JsonLogger):
        self.out, self.cfg, self.net, self.plan, self.history, self.logger = out, cfg, net, plan, history, logger
        self.last = out / "last.pt"

    def save(self, state: dict, epochs_done: int | None) -> None:
        cfg, net = self.cfg, self.net
        stats = state.pop("epoch_stats", None)
        if epochs_done and stats is not None:
            self.history.append({"epoch": epochs_done, **{k: stats[k] for k in ("loss", "seconds", "steps",
                                                                                 "images_per_s")},
                                 "time": time.time()})
        resume = {**state, "history": list(self.history),
                  "teacher_full": net.teacher.state_dict() if net.teacher is not None else None}
        ckpt = make_canonical(cfg.model.arch, net.backbone.state_dict(), heads=net.heads_state(),
                              teacher=net.teacher_backbone_state(),
                              meta={"method": cfg.loss.name, "epoch": state["iteration"] // self.plan.iters_per_epoch,
                                    "iteration": state["iteration"], "config": to_dict(cfg), "resume": resume})
        if epochs_done and (epochs_done % max(cfg.run.save_every, 1) == 0 or epochs_done == cfg.optim.epochs):
            # Numbered checkpoints are for evaluation: no optimiser state (half the size).
            light = {**ckpt, "meta": {k: v for k, v in ckpt["meta"].items() if k != "resume"}}
            save_canonical(light, self.out / f"checkpoint_{epochs_done:04d}.pt")
        save_canonical(ckpt, self.last)

    def load(self) -> dict | None:
        if not self.last.exists():
            return None
        ckpt = load_last(self.last)
        meta = ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}
        if "resume" not in meta or not isinstance(meta["resume"], dict) or "iteration" not in meta["resume"]:
            raise UserError(f"{self.last} is not a mec-eval pre-training state of this version; "
                            "use an empty --out folder")
        diffs = _config_differences(meta.get("config", {}), to_dict(self.cfg), to_dict(PretrainConfig()))
        if diffs:
            raise UserError(f"{self.out} holds a run with another config ({'; '.join(diffs)}); "
                            "use a new --out or the same settings to resume")
        state = meta["resume"]
        self._load_weights(ckpt, state)
        self.history[:] = list(state.get("history", []))
        iteration = int(state["iteration"])
        if iteration >= self.plan.total_iters:
            self.logger.info(f"{self.out} already finished {self.plan.epochs} epochs; nothing to do")
        else:
            self.logger.info(f"resuming from {self.last} at iteration {iteration} "
                             f"(epoch {iteration // self.plan.iters_per_epoch + 1})")
        return state

    def _load_weights(self, ckpt: dict, state: dict) -> None:
        net = self.net
        try:
            net.backbone.load_state_dict(ckpt["backbone"])
            net.projector.load_state_dict(ckpt["heads"]["projector"])
            if net.predictor is not None:
                net.predictor.load_state_dict(ckpt["heads"]["predictor"])
            if net.teacher is not None:
                net.teacher.load_state_dict(state["teacher_full"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
            raise UserError(f"{self.last} does not match this network ({reason}); delete it to restart from "
                            "scratch, or use a new --out") from None
