"""One pre-training epoch: per-iteration schedules, mixed precision, teacher update, loss checks."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from mec_eval.dist import all_reduce_mean, autocast
from mec_eval.log import JsonLogger, progress
from mec_eval.models import SiameseNetwork, cosine_momentum
from mec_eval.pretrain.optim import set_lr, warmup_cosine
from mec_eval.utils import UserError


@dataclass
class Schedule:
    """Everything the loop needs to set per-iteration values."""
    peak_lr: float
    warmup_epochs: float
    epochs: int
    iters_per_epoch: int
    ema_base: float
    log_every: int


def non_finite_error(epoch: int, step: int, loss_name: str) -> UserError:
    return UserError(
        f"the {loss_name} loss became non-finite at epoch {epoch}, iteration {step}; "
        "for MEC raise loss.eps_d2 (the Taylor series needs ||lam Z1 Z2^T|| < 1) or lower loss.order, "
        "otherwise lower optim.base_lr; the last good checkpoint is kept"
    )


def train_one_epoch(model: SiameseNetwork, objective: torch.nn.Module, loader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None, epoch: int, schedule: Schedule, device: torch.device,
                    amp_dtype: torch.dtype | None, channels_last: bool, logger: JsonLogger, loss_name: str,
                    make_views=None) -> dict:
    """Train for one epoch (or ``schedule.iters_per_epoch`` iterations); returns mean loss and timing.

    The loader yields ``(views, labels)``, or ``(uint8 images, labels)`` when ``make_views`` builds
    the views from the batch on the device (batched augmentation).
    """
    model.train()
    total_steps = schedule.epochs * schedule.iters_per_epoch
    loss_sum, seen, start = 0.0, 0, time.perf_counter()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    bar = progress(loader, total=schedule.iters_per_epoch, desc=f"epoch {epoch + 1}/{schedule.epochs}",
                   quiet=logger.quiet)
    for step, (batch, _) in enumerate(bar):
        if step >= schedule.iters_per_epoch:
            break
        views = make_views(batch.to(device, non_blocking=True)) if make_views is not None else batch
        global_step = epoch * schedule.iters_per_epoch + step
        fractional_epoch = global_step / schedule.iters_per_epoch
        lr = warmup_cosine(fractional_epoch, schedule.peak_lr, schedule.warmup_epochs, schedule.epochs)
        set_lr(optimizer, lr)
        objective.on_step(fractional_epoch)
        views = [v.to(device, non_blocking=True).contiguous(memory_format=memory_format) for v in views]
        with autocast(device, amp_dtype):
            online, target = model(views)
        loss = objective(online, target)
        if not torch.isfinite(loss):
            raise non_finite_error(epoch, step, loss_name)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        momentum = cosine_momentum(global_step, total_steps, base=schedule.ema_base)
        getattr(model, "module", model).update_teacher(momentum)  # unwrap DDP
        loss_value = float(all_reduce_mean(loss))
        loss_sum += loss_value
        seen += 1
        if schedule.log_every and (step % schedule.log_every == 0 or step == schedule.iters_per_epoch - 1):
            logger.log(epoch=epoch, step=step, loss=loss_value, lr=lr, ema=momentum,
                       **{k: float(v) for k, v in getattr(objective, "stats", {}).items()})
    if seen == 0:
        raise UserError("the training set yields no full batch; lower optim.batch_size")
    elapsed = time.perf_counter() - start
    mean_loss = loss_sum / seen
    if not math.isfinite(mean_loss):
        raise non_finite_error(epoch, seen, loss_name)
    return {"loss": mean_loss, "seconds": elapsed, "steps": seen,
            "images_per_s": seen * loader.batch_size / max(elapsed, 1e-9)}
