"""MAE / U-MAE / M-MAE pre-training of a ViT on the shared training engine (MAE ``main_pretrain.py``).

One view per image (RandomResizedCrop scale (0.2, 1), bicubic, horizontal flip, ImageNet
normalisation, as MAE), the masked forward of :class:`~mec_eval.models.mae.MaskedAutoencoder`, the
loss terms of :mod:`mec_eval.objectives.mae`, AdamW (``optim.betas`` (0.9, 0.95) in the configs) with
the lr ``base_lr * batch / 256``, warm-up then cosine (the engine's schedule, as MAE ``lr_sched.py``),
and weight decay on every trainable parameter except 1-d ones and biases (MAE calls timm 0.3.2
``add_weight_decay`` without a skip list: norms and biases are not decayed; ``cls_token`` and
``mask_token`` are; the sin-cos ``pos_embed`` tables are frozen). Checkpoints are canonical
``mec-eval/1`` files: ``arch`` the ViT name, ``backbone`` the encoder, ``heads.decoder`` the decoder.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mec_eval.config import PretrainConfig, to_dict, validate
from mec_eval.data import build_dataset
from mec_eval.data.transforms import interpolation_mode, train_transform
from mec_eval.dist import autocast, is_main_process, resolve_device, resolve_precision
from mec_eval.log import JsonLogger
from mec_eval.models import build_backbone
from mec_eval.models.mae import MaskedAutoencoder
from mec_eval.objectives.mae import MAELoss, build_mae_objective
from mec_eval.pretrain.collapse import CollapseMonitor
from mec_eval.pretrain.engine import PretrainStore
from mec_eval.runs import save_config
from mec_eval.training.engine import Hooks, LoopOptions, TrainingEngine, make_plan
from mec_eval.utils import UserError

MAE_NON_FINITE_HINT = "lower optim.base_lr or raise optim.warmup_epochs (or use run.precision=fp32)"


@dataclass
class MAESetup:
    """Everything built before the out folder is touched (as ``pretrain.main._Setup``)."""
    device: torch.device
    amp_dtype: torch.dtype | None
    objective: MAELoss
    dataset: object
    net: MaskedAutoencoder


def build_mae_network(cfg: PretrainConfig) -> MaskedAutoencoder:
    """The ViT named ``model.arch`` with the decoder of the ``mae`` section."""
    backbone = build_backbone(cfg.model.arch)
    if cfg.data.image_size != backbone.spec.img_size:
        raise UserError(f"model.arch={cfg.model.arch} is built for {backbone.spec.img_size} px inputs but "
                        f"data.image_size={cfg.data.image_size}; set data.image_size={backbone.spec.img_size}")
    m = cfg.mae
    return MaskedAutoencoder(backbone, m.mask_ratio, m.decoder_dim, m.decoder_depth, m.decoder_heads)


def build_mae_setup(cfg: PretrainConfig) -> MAESetup:
    """Validate the config; build device, objective, data (MAE's one-view augmentation) and network."""
    validate(cfg)
    device = resolve_device(cfg.run.device)
    amp_dtype = resolve_precision(cfg.run.precision, device)
    torch.manual_seed(cfg.run.seed)
    objective = build_mae_objective(cfg.loss.name, cfg.mae)
    augment = train_transform(cfg.data.image_size, cfg.data.crop_min_scale, interpolation_mode("bicubic"))
    dataset = build_dataset(cfg.data.name, cfg.data.root, "train", augment)
    if len(dataset) < cfg.optim.batch_size:
        raise UserError(f"optim.batch_size={cfg.optim.batch_size} exceeds the {len(dataset)} training images "
                        f"of {cfg.data.name}; lower optim.batch_size")
    return MAESetup(device, amp_dtype, objective, dataset, build_mae_network(cfg).to(device))


def mae_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """[no decay: 1-d parameters and biases, decay: the rest]; frozen parameters left out (timm 0.3.2
    ``add_weight_decay`` as MAE main_pretrain.py uses it)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def mae_step(objective: MAELoss, device: torch.device, amp_dtype) -> Callable:
    """``step(model, batch) -> {term: loss}``: the masked forward under autocast, the loss terms in fp32."""

    def step(model, batch) -> dict:
        images, _ = batch
        with autocast(device, amp_dtype):
            out = model(images)
        return objective(out)

    return step


class _Checkpointed:
    """What :class:`PretrainStore` saves of a masked autoencoder: the encoder, ``heads.decoder``, no teacher."""
    teacher = None

    def __init__(self, net: MaskedAutoencoder):
        self.net, self.backbone = net, net.backbone

    def heads_state(self) -> dict:
        return {"decoder": self.net.decoder.state_dict()}

    def teacher_backbone_state(self) -> None:
        return None


class MAEStore(PretrainStore):
    """``last.pt`` / ``checkpoint_XXXX.pt`` of MAE pre-training (canonical; resume restores the decoder too)."""

    def __init__(self, out: Path, cfg: PretrainConfig, net: MaskedAutoencoder, plan, history: list,
                 logger: JsonLogger):
        super().__init__(out, cfg, _Checkpointed(net), plan, history, logger)

    def _load_weights(self, ckpt: dict, state: dict) -> None:
        try:
            self.net.backbone.load_state_dict(ckpt["backbone"])
            self.net.net.decoder.load_state_dict(ckpt["heads"]["decoder"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
            raise UserError(f"{self.last} does not match this network ({reason}); delete it to restart from "
                            "scratch, or use a new --out") from None


def train_mae(cfg: PretrainConfig, setup: MAESetup, out: Path, quiet: bool) -> Path:
    """Train (or resume from ``out/last.pt``) and return the path of ``last.pt``."""
    logger = JsonLogger(out / "log.jsonl" if is_main_process() else None, quiet=quiet or not is_main_process())
    plan = make_plan(len(setup.dataset), cfg.optim.batch_size, cfg.optim.epochs, drop_last=True,
                     max_iters_per_epoch=cfg.run.max_steps_per_epoch)
    history: list = []
    options = LoopOptions(seed=cfg.run.seed, device=setup.device, amp_dtype=setup.amp_dtype,
                          channels_last=cfg.run.channels_last, save_every=cfg.run.save_state_every,
                          log_every=cfg.run.log_every, sync_bn=False, num_workers=cfg.data.num_workers,
                          quiet=logger.quiet, desc="epoch", non_finite_hint=MAE_NON_FINITE_HINT)

    def epoch_end(epochs_done: int, stats: dict) -> None:
        if history and history[-1]["epoch"] == epochs_done:  # the store appended it when saving
            logger.log(event="epoch", **history[-1])

    hooks = Hooks(on_epoch_end=epoch_end)
    if cfg.run.diagnostics_every:  # H_1 / effective rank of the batch's CLS tokens (the regularisers' input)
        monitor = CollapseMonitor(setup.net.cls_feature, cfg.run.diagnostics_every, logger)

        def measure(iteration: int, _epoch: float) -> None:
            monitor.after(iteration)  # logs its own event=diagnostics line

        hooks = Hooks(before_step=lambda iteration, _epoch: monitor.before(iteration), after_step=measure,
                      on_epoch_end=epoch_end)

    groups = mae_param_groups(setup.net, cfg.optim.weight_decay)
    engine = TrainingEngine(setup.net, groups, mae_step(setup.objective, setup.device, setup.amp_dtype),
                            setup.dataset, cfg.optim, plan, options,
                            MAEStore(out, cfg, setup.net, plan, history, logger), logger, hooks)
    if is_main_process():
        save_config(out, to_dict(cfg))
    logger.info(engine.scale_line())
    logger.log(event="start", **engine.scale, iters_per_epoch=plan.iters_per_epoch, device=str(setup.device),
               precision=str(setup.amp_dtype).replace("torch.", "") if setup.amp_dtype else "fp32",
               images=len(setup.dataset), method=cfg.loss.name, arch=cfg.model.arch)
    engine.fit()
    return out / "last.pt"
