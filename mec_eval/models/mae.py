"""Masked autoencoder around a :class:`~mec_eval.models.vit.ViTEncoder` (He et al., CVPR 2022; ``models_mae.py``).

Per-sample random masking by argsort of uniform noise (ratio 0.75), the encoder on the visible 25 %
of the patches plus the CLS token, and a light Transformer decoder that sees the encoded visible
tokens and a shared learned mask token at every masked position (fixed sin-cos positions) and
predicts each patch's pixels. The loss lives in :mod:`mec_eval.objectives.mae`.

Decoder sizes: MAE uses 8 blocks of width 512 (16 heads) for ViT-B/L/H (``mae_vit_*_dec512d8b``);
its Table 1(a, b) shows fine-tuning accuracy nearly flat in decoder depth (1 block: 84.8 vs 8: 84.9)
and width (256: 84.8 vs 512: 84.9), while linear probing wants depth. Neither MAE, U-MAE nor M-MAE
publishes a ViT-Tiny decoder, so the CPU configs pick a small one and say so (configs/digits-mae.yaml).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from mec_eval.models.vit import ViTEncoder, init_transformer, sincos_2d


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, 3, H, W] -> [B, (H/p)(W/p), p*p*3], patches row-major, pixels (row, column, channel) as MAE."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {patch}")
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, (h // patch) * (w // patch), patch * patch * c)


@dataclass
class Masking:
    """One draw of MAE masking: kept patch ids ``[B, n_keep]``, binary mask ``[B, N]`` (1 = removed),
    and ``ids_restore`` ``[B, N]`` that undoes the shuffle."""
    ids_keep: torch.Tensor
    mask: torch.Tensor
    ids_restore: torch.Tensor


def random_masking(batch: int, num_patches: int, ratio: float, device: torch.device | str = "cpu") -> Masking:
    """Per-sample random shuffle (MAE ``random_masking``): keep the ``int(N (1 - ratio))`` patches with the
    smallest uniform noise; each sample draws its own noise from torch's global RNG."""
    if not 0 <= ratio < 1:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    keep = int(num_patches * (1 - ratio))
    noise = torch.rand(batch, num_patches, device=device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :keep] = 0
    return Masking(ids_shuffle[:, :keep], torch.gather(mask, 1, ids_restore), ids_restore)


@dataclass
class MAEOutput:
    """What one masked forward pass gives the loss: predictions ``[B, N, p*p*3]``, targets (the patchified
    input), the mask ``[B, N]`` and the encoder's CLS token ``[B, D]`` of the visible patches."""
    pred: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    cls: torch.Tensor


class MAEDecoder(nn.Module):
    """Linear embed, mask token, fixed sin-cos positions, ``depth`` timm Blocks, LayerNorm, pixel head.

    Parameter names are MAE's ``decoder_*`` / ``mask_token``, so ``state_dict`` holds exactly the keys
    a MAE pre-training checkpoint stores besides the encoder.
    """

    def __init__(self, encoder_dim: int, num_patches: int, grid: tuple[int, int], patch: int, dim: int = 512,
                 depth: int = 8, num_heads: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.decoder_embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim), requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                             for _ in range(depth)])
        self.decoder_norm = norm(dim)
        self.decoder_pred = nn.Linear(dim, patch * patch * 3)
        with torch.no_grad():
            self.decoder_pos_embed.copy_(sincos_2d(dim, grid))
        nn.init.normal_(self.mask_token, std=0.02)
        init_transformer(self)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Encoded ``[B, 1 + n_keep, D]`` (CLS first) -> pixel predictions ``[B, N, p*p*3]`` (CLS dropped)."""
        x = self.decoder_embed(latent)
        b, n_total = ids_restore.shape
        masked = self.mask_token.expand(b, n_total - (x.shape[1] - 1), -1)
        patches = torch.cat([x[:, 1:], masked], dim=1)
        patches = torch.gather(patches, 1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))  # unshuffle
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


class MaskedAutoencoder(nn.Module):
    """``backbone`` (the ViT encoder kept by pre-training checkpoints) + :class:`MAEDecoder`."""

    def __init__(self, backbone: ViTEncoder, mask_ratio: float = 0.75, decoder_dim: int = 512,
                 decoder_depth: int = 8, decoder_heads: int = 16):
        super().__init__()
        self.backbone, self.mask_ratio = backbone, mask_ratio
        self.decoder = MAEDecoder(backbone.feature_dim, backbone.num_patches, tuple(backbone.patch_embed.grid_size),
                                  backbone.patch_size, decoder_dim, decoder_depth, decoder_heads)
        self.cls_feature = nn.Identity()  # no weights: a hook point for the CLS token the regularisers see

    def forward(self, images: torch.Tensor) -> MAEOutput:
        b = images.shape[0]
        grid = images.shape[-2] // self.backbone.patch_size, images.shape[-1] // self.backbone.patch_size
        if grid[0] * grid[1] != self.backbone.num_patches:
            raise ValueError(f"MAE pre-training needs {self.backbone.spec.img_size} px inputs "
                             f"(the decoder's position table), got {images.shape[-2]}x{images.shape[-1]}")
        masking = random_masking(b, self.backbone.num_patches, self.mask_ratio, images.device)
        latent = self.backbone.forward_tokens(images, masking.ids_keep)
        pred = self.decoder(latent, masking.ids_restore)
        return MAEOutput(pred, patchify(images, self.backbone.patch_size), masking.mask,
                         self.cls_feature(latent[:, 0]))
