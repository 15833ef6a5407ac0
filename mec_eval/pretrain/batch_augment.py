"""Batched two-view augmentation on tensors, for in-memory datasets of fixed-size images.

The recipes of :mod:`mec_eval.pretrain.augment` (MEC App. C: BYOL augmentations), applied to a
whole uint8 batch at once with per-sample random parameters. On 32 px images torchvision's
per-image PIL pipeline costs ~1.8 ms per view on this class of CPU, more than the network step;
here each operation runs once per batch. Every operation uses torchvision's definitions
(tested against ``torchvision.transforms.v2.functional`` with fixed parameters):
random-resized-crop (scale, log-uniform ratio 3/4-4/3, 10 attempts, centre-crop fallback),
flip, colour jitter with a random order per sample, grayscale, Gaussian blur, solarize.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mec_eval.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mec_eval.pretrain.augment import ViewRecipe, view_recipes

_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, torchvision's rgb_to_grayscale


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 1, H, W] luma."""
    w = x.new_tensor(_GRAY).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor.view(-1, 1, 1, 1) * x + (1 - factor.view(-1, 1, 1, 1)) * other).clamp_(0, 1)


def adjust_brightness(x, f):
    return _blend(x, torch.zeros_like(x), f)


def adjust_contrast(x, f):
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean.expand_as(x), f)


def adjust_saturation(x, f):
    return _blend(x, grayscale(x).expand_as(x), f)


# For each HSV sector i = floor(6h), which of (v, q, p, t) is the red, green and blue output.
_SECTOR_SOURCES = torch.tensor([[0, 1, 2, 2, 3, 0], [3, 0, 0, 1, 2, 2], [2, 2, 3, 0, 0, 1]])


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (fraction of a turn, per sample) through HSV, as torchvision does."""
    r, g, b = (x[:, c].contiguous() for c in range(3))
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    sat = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta == 0, torch.zeros_like(hue), hue)
    hue = torch.remainder(torch.remainder(hue / 6.0, 1.0) + shift.view(-1, 1, 1), 1.0)
    sector = torch.floor(hue * 6.0)
    frac = hue * 6.0 - sector
    v = maxc
    candidates = torch.stack([v, v * (1 - sat * frac), v * (1 - sat), v * (1 - sat * (1 - frac))])  # v, q, p, t
    sector = sector.long().clamp_(0, 5)
    sources = _SECTOR_SOURCES.to(x.device)[:, sector]  # [3, B, H, W]
    return torch.gather(candidates, 0, sources).transpose(0, 1)


def gaussian_blur(x: torch.Tensor, kernel: int, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma, reflect padding (torchvision's convention)."""
    b, c, h, w = x.shape
    half = (kernel - 1) * 0.5
    grid = torch.linspace(-half, half, kernel, device=x.device, dtype=x.dtype)
    k1d = torch.exp(-0.5 * (grid.view(1, -1) / sigma.view(-1, 1)) ** 2)
    k1d = k1d / k1d.sum(dim=1, keepdim=True)
    weights = k1d.repeat_interleave(c, dim=0)  # [b*c, k]
    pad = kernel // 2
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, weights.view(b * c, 1, 1, kernel), groups=b * c)
    y = F.conv2d(y, weights.view(b * c, 1, kernel, 1), groups=b * c)
    return y.view(b, c, h, w)


def sample_crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], gen: torch.Generator,
                      ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """[n, 4] boxes (top, left, h, w) drawn as ``RandomResizedCrop.get_params`` does, vectorised."""
    area = height * width
    attempts = 10
    target = area * torch.empty(n, attempts).uniform_(scale[0], scale[1], generator=gen)
    log_ratio = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(valid.any(1), valid.float().argmax(1), torch.full((n,), -1))
    rows = torch.arange(n)
    h_sel, w_sel = h[rows, first.clamp(min=0)], w[rows, first.clamp(min=0)]
    # Fallback (no valid attempt): the largest centre crop within the ratio bounds.
    in_ratio = width / height
    fb_w = width if in_ratio <= ratio[1] else round(height * ratio[1])
    fb_h = height if in_ratio >= ratio[0] else round(width / ratio[0])
    fb_w = min(fb_w, width) if in_ratio >= ratio[0] else width
    fb_h = min(fb_h, height) if in_ratio <= ratio[1] else height
    none = first < 0
    h_sel = torch.where(none, torch.tensor(float(fb_h)), h_sel)
    w_sel = torch.where(none, torch.tensor(float(fb_w)), w_sel)
    top = torch.floor(torch.rand(n, generator=gen) * (height - h_sel + 1))
    left = torch.floor(torch.rand(n, generator=gen) * (width - w_sel + 1))
    top = torch.where(none, torch.floor((height - h_sel) / 2), top)
    left = torch.where(none, torch.floor((width - w_sel) / 2), left)
    return torch.stack([top, left, h_sel, w_sel], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor) -> torch.Tensor:
    """Crop each box, resize to ``size`` (bilinear) and mirror where ``flip``; one grid_sample call."""
    b, _, h, w = x.shape
    top, left, bh, bw = boxes.to(x.dtype).unbind(1)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    sign = torch.where(flip, -1.0, 1.0).to(x.dtype)
    theta[:, 0, 0] = bw / w * sign
    theta[:, 0, 2] = (2 * left + bw) / w - 1
    theta[:, 1, 1] = bh / h
    theta[:, 1, 2] = (2 * top + bh) / h - 1
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    # Clamp sample points to the crop's outer pixel centres: resizing a crop replicates the crop's
    # own border (torch interpolate semantics), it never reads pixels outside the crop.
    lo = torch.stack([(2 * left + 1) / w - 1, (2 * top + 1) / h - 1], dim=1).view(b, 1, 1, 2)
    hi = torch.stack([(2 * (left + bw) - 1) / w - 1, (2 * (top + bh) - 1) / h - 1], dim=1).view(b, 1, 1, 2)
    grid = torch.maximum(torch.minimum(grid, hi), lo)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _color_jitter(x: torch.Tensor, r: ViewRecipe, gen: torch.Generator) -> torch.Tensor:
    """torchvision ColorJitter with an independent random op order per sample, applied with p.

    In each of the four slots every sample runs the op its permutation puts there; the other ops
    run with their identity factor (1, or a zero hue shift), which leaves the sample unchanged.
    """
    n = len(x)
    ranges = [(max(0.0, 1 - r.brightness), 1 + r.brightness), (max(0.0, 1 - r.contrast), 1 + r.contrast),
              (max(0.0, 1 - r.saturation), 1 + r.saturation), (-r.hue, r.hue)]
    factors = [torch.empty(n).uniform_(lo, hi, generator=gen) for lo, hi in ranges]
    identity = [1.0, 1.0, 1.0, 0.0]
    ops = [adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue]
    order = torch.argsort(torch.rand(n, 4, generator=gen), dim=1)
    apply = torch.rand(n, generator=gen) < r.jitter_p
    for slot in range(4):
        for op_index, op in enumerate(ops):
            chosen = apply & (order[:, slot] == op_index)
            if chosen.any():
                factor = torch.where(chosen, factors[op_index], torch.full((n,), identity[op_index]))
                x = op(x, factor.to(x))
    return x


def augment_view(images: torch.Tensor, r: ViewRecipe, gen: torch.Generator) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> normalised float view [B, 3, size, size]."""
    x = images.float().div_(255)
    n, _, h, w = x.shape
    boxes = sample_crop_boxes(n, h, w, (r.min_scale, 1.0), gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    x = resized_crop(x, boxes, r.size, flip).clamp_(0, 1)
    x = _color_jitter(x, r, gen)
    gray = (torch.rand(n, generator=gen) < r.gray_p).to(x.device).view(-1, 1, 1, 1)
    x = torch.where(gray, grayscale(x).expand_as(x), x)
    if r.blur_p > 0:
        sigma = torch.empty(n).uniform_(0.1, 2.0, generator=gen).to(x)
        blur = (torch.rand(n, generator=gen) < r.blur_p).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(blur, gaussian_blur(x, r.blur_kernel, sigma), x)
    if r.solarize_p > 0:
        sol = (torch.rand(n, generator=gen) < r.solarize_p).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(sol & (x >= 128 / 255), 1 - x, x)
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class BatchTwoViews:
    """Callable turning a uint8 batch into the two augmented views, with its own seeded generator."""

    def __init__(self, kind: str, size: int, min_scale: float, seed: int):
        self.recipes = view_recipes(kind, size, min_scale)
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [augment_view(images, recipe, self.generator) for recipe in self.recipes]
