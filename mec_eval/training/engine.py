"""The training loop of pre-training and of every trained task (MAE's engine split, DINO's auto-resume).

The caller supplies the model, its parameter groups, ``step(model, batch) -> loss or dict of
losses`` (a dict is summed, each term logged), the dataset and optional hooks; the engine owns the
optimiser and schedule (from the ``optim`` config section), AMP, channels_last, SyncBN and DDP,
the seeded resumable data order, non-finite-loss errors, saves every ``save_every`` iterations, at
each epoch end and on SIGTERM / SIGUSR1, and resume. Only rank 0 writes; every rank resumes.

A kill -9 at any iteration followed by a re-run ends bit-identical to an uninterrupted run on CPU:
the data order, every item's augmentation and the global RNG at each step are functions of
(seed, epoch, index / iteration) only, and the state holds everything else that changes.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mec_eval.dist import all_reduce_mean, barrier, is_distributed, is_main_process, rank, world_size
from mec_eval.log import JsonLogger, progress
from mec_eval.training.distributed import maybe_sync_batchnorm, wrap_ddp
from mec_eval.training.optim import build_optimizer, set_lr_factor
from mec_eval.training.sampling import EpochBatches, SeededItems, derive_seed, smallest_share
from mec_eval.training.schedule import LRSchedule, scaled_lr, schedule_from_config
from mec_eval.training.signals import Preempted, StopFlag
from mec_eval.utils import UserError


@dataclass(frozen=True)
class Plan:
    """How a run is split: processes, batch per process and overall, iterations per epoch and in all."""
    world_size: int
    per_process_batch: int
    effective_batch: int
    iters_per_epoch: int
    total_iters: int

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_iters / self.iters_per_epoch)


def make_plan(n_train: int, batch_size: int, epochs: int, steps: int = 0, *, drop_last: bool = False,
              max_iters_per_epoch: int = 0, world: int | None = None) -> Plan:
    """Epoch-based (``epochs``) or iteration-based (``steps`` > 0) length over ``n_train`` images.

    A batch larger than the split is the whole split. Each process gets ``batch // world`` images;
    a ragged last batch is kept (unless ``drop_last``) when every process still gets two images,
    since BatchNorm cannot train on one.
    """
    world = world or world_size()
    if n_train < 2:
        raise UserError(f"the training split has {n_train} image(s); need at least 2")
    per_process = min(batch_size, n_train) // world
    if per_process < 2:
        raise UserError(f"optim.batch_size={batch_size} over {world} processes leaves {per_process} image(s) per "
                        "process; BatchNorm needs >= 2: raise optim.batch_size or use fewer processes")
    effective = per_process * world
    full, tail = divmod(n_train, effective)
    iters = full + int(bool(tail) and not drop_last and smallest_share(tail, world) >= 2)
    if max_iters_per_epoch:
        iters = min(iters, max_iters_per_epoch)
    return Plan(world, per_process, effective, iters, steps if steps > 0 else epochs * iters)


@dataclass
class LoopOptions:
    """How to run (not what to optimise): seeds, device, precision, saving and logging intervals."""
    seed: int
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = True
    save_every: int = 1000          # iterations between state saves (0: epoch ends only)
    log_every: int = 0              # iterations between JSON log lines (0: none)
    sync_bn: bool = False
    num_workers: int = 0
    quiet: bool = False
    desc: str = "epoch"             # progress-bar label ("epoch 3/100")
    non_finite_hint: str = "lower optim.base_lr or use run.precision=fp32"
    collate_fn: Callable[[list], Any] | None = None  # the DataLoader's (None: torch's default_collate stacks)


class StateStore(Protocol):
    """Where a run's resumable state lives. ``load`` restores the model's weights itself and returns
    the engine's part (or None when there is none); ``save`` writes both atomically."""

    def load(self) -> dict | None: ...

    def save(self, state: dict, epochs_done: int | None) -> None: ...


@dataclass
class Hooks:
    """Optional per-iteration and per-epoch callbacks (``fractional_epoch`` = iteration / iters_per_epoch)."""
    before_step: Callable[[int, float], None] | None = None
    after_step: Callable[[int, float], dict | None] | None = None  # returns extra log fields
    on_epoch_end: Callable[[int, dict], None] | None = None          # (epochs done, stats)


def _to_device(batch: Any, device: torch.device, channels_last: bool) -> Any:
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4 and batch.is_floating_point():
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device, channels_last) for b in batch)
    return batch


@dataclass
class TrainingEngine:
    """Trains ``model`` with ``step`` over ``dataset`` for ``plan``; the lr is ``optim.base_lr`` scaled by
    ``optim.lr_scaling`` for the effective batch, given to every parameter group without its own ``lr``.

    Example::

        engine = TrainingEngine(model, [{"params": head.parameters()}], step, train, cfg.optim,
                                make_plan(len(train), cfg.optim.batch_size, cfg.optim.epochs),
                                LoopOptions(seed=0, device=torch.device("cpu")), StateFile(path, ...))
        engine.fit()
    """
    model: nn.Module
    param_groups: list
    step: Callable[[nn.Module, Any], Any]
    dataset: Dataset
    optim: Any                      # a mec_eval.config.TrainingOptimConfig
    plan: Plan
    options: LoopOptions
    store: StateStore
    logger: JsonLogger = field(default_factory=lambda: JsonLogger(None, quiet=True))
    hooks: Hooks = field(default_factory=Hooks)

    def __post_init__(self):
        self.lr = scaled_lr(self.optim.base_lr, self.plan.effective_batch, self.optim.lr_scaling)
        self.schedule: LRSchedule = schedule_from_config(self.optim, self.plan.iters_per_epoch, self.plan.total_iters)

    @property
    def scale(self) -> dict:
        """What result.json's ``scale`` records: world size, batches, base and actual (scaled peak) lr."""
        return {"world_size": self.plan.world_size, "per_process_batch": self.plan.per_process_batch,
                "effective_batch": self.plan.effective_batch, "base_lr": self.optim.base_lr, "lr": self.lr}

    def scale_line(self) -> str:
        """MAE's start-up line: base lr, effective batch (processes x per process), actual lr."""
        p = self.plan
        return (f"base lr: {self.optim.base_lr:.3e}, effective batch: {p.effective_batch} "
                f"({p.world_size} x {p.per_process_batch}), actual lr: {self.lr:.3e}")

    def _optimizer(self) -> torch.optim.Optimizer:
        o = self.optim
        return build_optimizer(self.param_groups, o.name, self.lr, o.momentum, o.weight_decay, nesterov=o.nesterov,
                               betas=o.betas, trust=o.lars_trust, exclude_1d=o.lars_exclude_1d)

    def fit(self) -> int:
        """Train from the saved state (or from scratch) to ``plan.total_iters``; returns iterations done.

        Raises :class:`Preempted` after saving when SIGTERM / SIGUSR1 arrives.
        """
        opts, device = self.options, self.options.device
        self.model.to(device)
        if opts.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model, bn_note = maybe_sync_batchnorm(self.model, opts.sync_bn, is_distributed(), device)
        if is_distributed() and is_main_process():
            self.logger.info(bn_note)
        optimizer = self._optimizer()
        scaler = torch.amp.GradScaler(device.type) if opts.amp_dtype == torch.float16 else None
        iteration, epoch_loss = self._resume(optimizer, scaler)
        model = wrap_ddp(self.model, device)
        with StopFlag() as flag:
            while iteration < self.plan.total_iters:
                iteration, epoch_loss = self._run_epoch(model, optimizer, scaler, flag, iteration, epoch_loss)
        barrier()  # every process returns after rank 0's last save, so any of them may read it
        return iteration

    def _resume(self, optimizer, scaler) -> tuple[int, list]:
        state = self.store.load()
        if state is None:
            return 0, [0.0, 0]
        try:
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            iteration, epoch_loss = int(state["iteration"]), list(state["epoch_loss"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
            raise UserError(f"the saved training state does not match this run ({reason}); delete it to start "
                            "this run over") from None
        # Saved at an epoch end but killed before the hook ran (kill -9 between the two): replay the finished
        # epoch's record, so the log still holds every epoch once. The hook must ignore an epoch it has seen.
        stats = state.get("epoch_stats")
        if stats is not None and self.hooks.on_epoch_end is not None:
            self.hooks.on_epoch_end(-(-iteration // self.plan.iters_per_epoch), stats)
        return iteration, epoch_loss

    def _save(self, optimizer, scaler, iteration: int, epoch_loss: list, epochs_done: int | None,
              epoch_stats: dict | None = None) -> None:
        """Rank 0 hands the state to the store; ``epoch_stats`` (at an epoch end) travel with it so
        a store that keeps a history saves the finished epoch's record in the same write."""
        if is_main_process():
            state = {"iteration": iteration, "optimizer": optimizer.state_dict(),
                     "scaler": scaler.state_dict() if scaler is not None else None, "epoch_loss": list(epoch_loss)}
            if epoch_stats is not None:
                state["epoch_stats"] = epoch_stats
            self.store.save(state, epochs_done)

    def _loader(self, epoch: int, start: int) -> DataLoader:
        p, opts = self.plan, self.options
        last = min(p.iters_per_epoch, p.total_iters - epoch * p.iters_per_epoch)
        batches = EpochBatches(len(self.dataset), p.effective_batch, last, opts.seed, epoch, start, rank(),
                               p.world_size)
        return DataLoader(SeededItems(self.dataset, opts.seed), batch_sampler=batches, num_workers=opts.num_workers,
                          collate_fn=opts.collate_fn, pin_memory=opts.device.type == "cuda")

    def _run_epoch(self, model, optimizer, scaler, flag: StopFlag, iteration: int, epoch_loss: list):
        p, opts = self.plan, self.options
        epoch, start = divmod(iteration, p.iters_per_epoch)
        loader = self._loader(epoch, start)
        model.train()
        began, steps_here = time.perf_counter(), 0
        for batch in progress(loader, total=len(loader.batch_sampler), desc=f"{opts.desc} {epoch + 1}/{p.epochs}",
                              quiet=opts.quiet):
            loss, stop = self._iteration(model, optimizer, scaler, flag, iteration, batch)
            epoch_loss = [epoch_loss[0] + loss, epoch_loss[1] + 1]
            iteration, steps_here = iteration + 1, steps_here + 1
            epoch_done = iteration % p.iters_per_epoch == 0 or iteration == p.total_iters
            stats = None
            if epoch_done:
                seconds = time.perf_counter() - began
                stats = {"loss": epoch_loss[0] / epoch_loss[1], "seconds": seconds, "steps": epoch_loss[1],
                         "images_per_s": steps_here * p.effective_batch / max(seconds, 1e-9),
                         "lr": optimizer.param_groups[0]["lr"], "iteration": iteration}
            if epoch_done or stop or (opts.save_every and iteration % opts.save_every == 0):
                self._save(optimizer, scaler, iteration, [0.0, 0] if epoch_done else epoch_loss,
                           epoch + 1 if epoch_done else None, stats)
            # Logged only once saved: a process killed in between (kill -9, submitit's requeue exit)
            # must not leave an epoch in the log that the resumed run trains again.
            if stats is not None and self.hooks.on_epoch_end is not None:
                self.hooks.on_epoch_end(epoch + 1, stats)
            if epoch_done:
                epoch_loss = [0.0, 0]
            if stop:
                who = f"received {flag.received}" if flag.received else "another process received a stop signal"
                raise Preempted(f"{who}: saved at iteration {iteration}; re-run the same command to resume")
        return iteration, epoch_loss

    def _iteration(self, model, optimizer, scaler, flag: StopFlag, iteration: int, batch) -> tuple[float, bool]:
        """One optimiser step; returns the loss averaged over processes and whether any process must stop."""
        opts = self.options
        fractional_epoch = iteration / self.plan.iters_per_epoch
        set_lr_factor(optimizer, self.schedule.factor(iteration))
        torch.manual_seed(derive_seed(opts.seed, "step", iteration, rank()))  # any draw inside the step replays
        if self.hooks.before_step is not None:
            self.hooks.before_step(iteration, fractional_epoch)
        out = self.step(model, _to_device(batch, opts.device, opts.channels_last))
        terms = out if isinstance(out, dict) else {}
        loss = sum(terms.values()) if terms else out
        stop_flag = torch.tensor(float(flag.received is not None), device=loss.device)
        # One collective per iteration: every process agrees on the loss (a non-finite loss stops all
        # of them, not one while the others wait), on each term, and on whether a stop signal arrived.
        reduced = all_reduce_mean(torch.stack([loss.detach().float(), *(t.detach().float() for t in terms.values()),
                                               stop_flag])).tolist()
        if not math.isfinite(reduced[0]):
            raise UserError(f"the training loss became non-finite at epoch {int(fractional_epoch)}, iteration "
                            f"{iteration}; {opts.non_finite_hint}")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        extra = self.hooks.after_step(iteration, fractional_epoch) if self.hooks.after_step is not None else None
        self._log(iteration, reduced[0], dict(zip(terms, reduced[1:-1])), optimizer, extra or {})
        return reduced[0], reduced[-1] > 0

    def _log(self, iteration: int, loss: float, terms: dict, optimizer, extra: dict) -> None:
        every, per_epoch = self.options.log_every, self.plan.iters_per_epoch
        epoch, position = divmod(iteration, per_epoch)
        if not every or not is_main_process() or not (position % every == 0 or position == per_epoch - 1):
            return
        self.logger.log(event="iteration", iteration=iteration, epoch=epoch, step=position, loss=loss,
                        lr=optimizer.param_groups[0]["lr"], **terms, **extra)
