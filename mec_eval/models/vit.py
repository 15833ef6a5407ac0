"""Vision Transformer encoders (ViT-Tiny/Small/Base/Large) on timm's ``PatchEmbed`` and ``Block``, as MAE builds them.

The module and parameter names are those of MAE's ``models_mae.py`` encoder and of timm's
``VisionTransformer(num_classes=0)`` (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.*``, ``norm``), so MAE / U-MAE / M-MAE, DINO and timm ViT weights load without renaming.
``forward(images)`` returns the final-normed CLS token ``[B, D]`` (what MAE's ``main_linprobe.py``
probes with ``--cls_token``), so the evaluation tasks use a ViT exactly like a ResNet;
``forward_tokens(images, ids_keep)`` runs only the kept patches (MAE's masked encoder pass).

Position embeddings are MAE's fixed 2-d sin-cos table (``util/pos_embed.py``), kept as a frozen
parameter so the state-dict key matches; inputs whose patch grid differs from the built one get the
table resampled bicubically (timm's ``resample_abs_pos_embed``, the rule DINO / timm use).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models.vision_transformer import Block
from torch import nn


@dataclass(frozen=True)
class ViTSpec:
    """Width, depth, heads (Dosovitskiy et al. 2021 Table 1; Tiny from DeiT), input size and patch size."""
    embed_dim: int
    depth: int
    num_heads: int
    img_size: int = 224
    patch_size: int = 16
    mlp_ratio: float = 4.0


VIT_SIZES = {
    "tiny": (192, 12, 3),     # DeiT-Ti (Touvron et al. 2021, Table 1)
    "small": (384, 12, 6),    # DeiT-S
    "base": (768, 12, 12),    # ViT-B/16 (MAE mae_vit_base_patch16)
    "large": (1024, 24, 16),  # ViT-L/16 (MAE mae_vit_large_patch16)
}


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """[len(positions), dim]: sin then cos of position x 10000^(-2i/dim), i < dim/2 (Vaswani et al. 2017)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even width, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid: tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """[1, (1 +) H*W, dim] fixed 2-d table as MAE's ``get_2d_sincos_pos_embed``: the first half of the
    channels encodes the column, the second half the row; the CLS slot (row 0) is zeros."""
    if dim % 4:
        raise ValueError(f"2-d sin-cos embedding needs a width divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    table = torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=table.dtype), table])
    return table.float()[None]


class ViTEncoder(nn.Module):
    """ViT encoder with a CLS token and fixed sin-cos positions; ``forward`` -> CLS feature ``[B, D]``."""

    def __init__(self, spec: ViTSpec):
        super().__init__()
        self.spec = spec
        self.patch_size = spec.patch_size
        self.feature_dim = spec.embed_dim
        self.patch_embed = PatchEmbed(spec.img_size, spec.patch_size, 3, spec.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.embed_dim))
        # Frozen as in MAE (requires_grad=False): the optimiser never sees it, the state dict keeps it.
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, spec.embed_dim),
                                      requires_grad=False)
        # LayerNorm eps 1e-6 and qkv bias as MAE's mae_vit_*_patch16 and timm's vit_* models.
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList([Block(spec.embed_dim, spec.num_heads, spec.mlp_ratio, qkv_bias=True,
                                           norm_layer=norm) for _ in range(spec.depth)])
        self.norm = norm(spec.embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MAE's ``initialize_weights``: sin-cos positions, xavier-uniform linears and patch projection
        (as a linear layer), N(0, 0.02) CLS token, unit LayerNorms."""
        with torch.no_grad():
            self.pos_embed.copy_(sincos_2d(self.feature_dim, self.patch_embed.grid_size))
        proj = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(proj.view(proj.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        init_transformer(self.blocks)
        init_transformer(self.norm)

    @property
    def num_patches(self) -> int:
        return self.patch_embed.num_patches

    def _positions(self, grid: tuple[int, int]) -> torch.Tensor:
        if tuple(grid) == tuple(self.patch_embed.grid_size):
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, list(grid), list(self.patch_embed.grid_size),
                                      num_prefix_tokens=1)

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(patch tokens + positions ``[B, N, D]``, CLS token + its position ``[B, 1, D]``)."""
        height, width = images.shape[-2:]
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
        tokens = self.patch_embed.proj(images).flatten(2).transpose(1, 2)  # PatchEmbed without its size check
        positions = self._positions((height // p, width // p))
        cls = (self.cls_token + positions[:, :1]).expand(images.shape[0], -1, -1)
        return tokens + positions[:, 1:], cls

    def forward_tokens(self, images: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """All final-normed tokens ``[B, 1 + n, D]`` (CLS first); ``ids_keep`` ``[B, n]`` keeps only those
        patches, in that order (MAE ``forward_encoder``: positions are added before the gather)."""
        tokens, cls = self.embed(images)
        if ids_keep is not None:
            tokens = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_tokens(images)[:, 0]


def init_transformer(module: nn.Module) -> None:
    """MAE ``_init_weights``: xavier-uniform linear weights, zero biases, LayerNorm weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def vit_spec(size: str, img_size: int = 224, patch_size: int = 16) -> ViTSpec:
    """The ``size`` ("tiny", "small", "base", "large") at ``img_size`` px with ``patch_size`` px patches."""
    dim, depth, heads = VIT_SIZES[size]
    return ViTSpec(dim, depth, heads, img_size, patch_size)


def is_vit(module: nn.Module) -> bool:
    return isinstance(module, ViTEncoder)
