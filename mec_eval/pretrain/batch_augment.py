"""The two-view recipe (MEC App. C: BYOL augmentations; App. B CIFAR variant) and its tensor operations.

``view_recipes`` is the one place the recipe's numbers live. The operations here work on float
batches [B, 3, H, W] with per-sample parameters, each equal to torchvision's definition (tested
against ``torchvision.transforms.v2.functional`` with fixed parameters): random-resized-crop
(scale, log-uniform ratio 3/4-4/3, 10 attempts, centre-crop fallback), flip, colour jitter with a
random order per sample, grayscale, Gaussian blur, solarize. Three pipelines use them:

- :class:`BatchTwoViews` on in-memory uint8 sets: crop, resize and everything else on whole batches;
- :class:`BatchTwoViews` with ``cropped=True`` for on-disk sets: loader workers decode and crop to
  uint8 at the view size (:class:`~mec_eval.pretrain.augment.TwoCrops`), the training device (GPU
  or CPU) applies flip, colour, grey, blur and solarize to the batch;
- the per-image :class:`~mec_eval.pretrain.augment.TensorView`, as a batch of one.

Each per-sample operation runs only on the samples that drew it (index, apply, write back), so a
batch pays for a hue shift or a blur only where one was drawn; on CPU a batch is processed in
cache-sized chunks. All parameters are drawn up front for the whole batch, so neither changes them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mec_eval.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # the official code uses them for every set
from mec_eval.utils import UserError

BLUR_SIGMA = (0.1, 2.0)  # Gaussian blur sigma range (BYOL; official MEC loader.GaussianBlur)


@dataclass
class ViewRecipe:
    """One view: crop 0.2-1, flip, colour jitter 0.4/0.4/0.2/0.1 (p=0.8), grayscale 0.2, blur, solarize."""
    size: int
    min_scale: float = 0.2
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 1.0
    solarize_p: float = 0.0

    @property
    def blur_kernel(self) -> int:
        """About 10 % of the image side, odd (BYOL: 23 px at 224)."""
        return max(3, int(round(self.size * 0.1)) | 1)


def view_recipes(kind: str, size: int, min_scale: float = 0.2) -> tuple[ViewRecipe, ViewRecipe]:
    """``byol``: asymmetric blur 1.0/0.1 and solarize 0/0.2 (App. C); ``cifar``: no blur, no solarize (App. B)."""
    if kind == "byol":
        return (ViewRecipe(size, min_scale, blur_p=1.0, solarize_p=0.0),
                ViewRecipe(size, min_scale, blur_p=0.1, solarize_p=0.2))
    if kind == "cifar":
        return ViewRecipe(size, min_scale, blur_p=0.0), ViewRecipe(size, min_scale, blur_p=0.0)
    raise UserError(f"unknown data.augment '{kind}' (choose byol or cifar)")


_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, torchvision's rgb_to_grayscale


@functools.lru_cache(maxsize=64)
def _channels(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A [1, 3, 1, 1] constant, made once per dtype and device (a per-view op on 32-96 px views
    costs about as much to launch as to run, so the constants are not rebuilt per call)."""
    return torch.tensor(values, dtype=dtype, device=device).view(1, 3, 1, 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, 1, H, W] luma."""
    w = _channels(_GRAY, x.dtype, x.device)
    return (x * w).sum(dim=1, keepdim=True)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``factor * x + (1 - factor) * other``, clamped, as one fused lerp."""
    return torch.lerp(other, x, factor.view(-1, 1, 1, 1)).clamp_(0, 1)


def adjust_brightness(x, f):
    return (x * f.view(-1, 1, 1, 1)).clamp_(0, 1)  # blend with black


def adjust_contrast(x, f):
    # The mean of the luma is the luma of the channel means: one reduction instead of a grey image.
    channel_means = x.mean(dim=(2, 3), keepdim=True)
    return _blend(x, (channel_means * _channels(_GRAY, x.dtype, x.device)).sum(dim=1, keepdim=True), f)


def adjust_saturation(x, f):
    return _blend(x, grayscale(x), f)


_HUE_OFFSETS = (3.0, 1.0, -1.0)  # n - 2 of the closed-form HSV -> RGB below, for red, green, blue


def _is_zero(d: torch.Tensor) -> torch.Tensor:
    """1.0 where ``d`` (in [0, 1]) is 0, else 0.0, without a comparison: ``1 - ceil(d)``."""
    return d.ceil_().neg_().add_(1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by ``shift`` (fraction of a turn, per sample) through HSV, as torchvision does.

    The hue is torchvision's (``_rgb_to_hsv``: red, then green, then blue wins a tie for the max),
    in sixths of a turn (h6); the way back is the closed form of its sector table,
    ``c = V - V*S * clamp(2 - dist6(h6 + n - 2), 0, 1)`` with n = 5, 3, 1 for red, green, blue,
    ``dist6`` the distance to the nearest multiple of 6 and ``V*S = max - min``. Sectors are selected
    with 0/1 float masks made by arithmetic: ``torch.where``, ``remainder`` and even comparisons
    cost 5-40x an arithmetic pass on CPU.
    """
    r, g, b = x.unbind(1)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc
    # 1 where the channel is the max: maxc - c is in [0, 1] and 0 exactly there (see _is_zero).
    red = _is_zero(maxc - r)
    green = _is_zero(maxc - g).mul_(1 - red)
    blue = 1 - red - green
    # Grey pixels (delta 0) come back as V whatever their hue, so any finite hue will do for them.
    numerator = red * (g - b) + green * (b - r) + blue * (r - g)
    hue6 = (2 * green + 4 * blue).add_(6.0 * shift.view(-1, 1, 1)).addcdiv_(numerator, delta.clamp(min=1e-12))
    u = hue6.unsqueeze(1) + _channels(_HUE_OFFSETS, x.dtype, x.device)
    dist = u.sub_(torch.round(u / 6.0), alpha=6.0).abs_()
    ramp = dist.neg_().add_(2.0).clamp_(0, 1)
    return torch.addcmul(maxc.unsqueeze(1), delta.unsqueeze(1), ramp, value=-1.0)


_BLOCK = 32  # output columns per band-matrix product in the blur


@functools.lru_cache(maxsize=64)
def _band_index(k: int, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For :func:`_band`: the kernel tap of each matrix entry (clamped) and where it is inside the band."""
    offset = torch.arange(n + k - 1, device=device).view(-1, 1) - torch.arange(n, device=device).view(1, -1)
    return offset.clamp(0, k - 1), (offset >= 0) & (offset < k)


def _band(k1d: torch.Tensor, n: int) -> torch.Tensor:
    """[B, n + k - 1, n] matrices whose column j holds sample b's kernel at rows j .. j + k - 1."""
    tap, inside = _band_index(k1d.shape[1], n, k1d.device)
    return k1d[:, tap] * inside


def _correlate_last(y: torch.Tensor, band: torch.Tensor, n: int) -> torch.Tensor:
    """Valid correlation of the last dim of ``y`` [B, C, R, n + k - 1] with sample b's kernel: [B, C, R, n].

    ``band`` is ``_band(kernels, _BLOCK)``. The output is cut into blocks of ``_BLOCK`` columns; each
    block reads ``_BLOCK + k - 1`` inputs and all blocks share the one small band matrix, so the
    work is one batched matmul of ``(_BLOCK + k - 1) / k`` times the direct convolution's FLOPs at
    BLAS speed, on any device.
    """
    b, c, rows, _ = y.shape
    span = band.shape[1]
    blocks = -(-n // _BLOCK)
    y = F.pad(y, (0, blocks * _BLOCK - n))  # every block gets its full span
    windows = y.unfold(-1, span, _BLOCK).reshape(b, c * rows * blocks, span)
    out = torch.bmm(windows, band)
    return out.view(b, c, rows, blocks * _BLOCK)[..., :n]


def _correlate_rows(y: torch.Tensor, band: torch.Tensor, n: int) -> torch.Tensor:
    """As :func:`_correlate_last` along dim -2: [B, C, n + k - 1, W] -> [B, C, n, W].

    Each block of ``_BLOCK`` output rows is the band's transpose times a slab of whole input rows;
    the slabs are an overlapping view of ``y``, so nothing is transposed or gathered by column.
    """
    b, c, _, w = y.shape
    span = band.shape[1]
    blocks = -(-n // _BLOCK)
    y = F.pad(y, (0, 0, 0, blocks * _BLOCK - n)).contiguous()
    rows = y.shape[2]
    slabs = y.as_strided((b, c, blocks, span, w), (c * rows * w, rows * w, _BLOCK * w, w, 1))
    out = torch.matmul(band.transpose(1, 2).view(b, 1, 1, _BLOCK, span), slabs)
    return out.view(b, c, blocks * _BLOCK, w)[:, :, :n]


def gaussian_blur(x: torch.Tensor, kernel: int, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma, reflect padding (torchvision's convention)."""
    _, _, h, w = x.shape
    half = (kernel - 1) * 0.5
    grid = torch.linspace(-half, half, kernel, device=x.device, dtype=x.dtype)
    k1d = torch.exp(-0.5 * (grid.view(1, -1) / sigma.view(-1, 1)) ** 2)
    k1d = k1d / k1d.sum(dim=1, keepdim=True)
    # Far tails of a small sigma are subnormal floats, which make x86 matmul 10x slower; they weigh
    # < 1e-20 of the centre, so zeroing them changes no output at float precision.
    k1d = k1d.masked_fill_(k1d < 1e-20, 0.0)
    pad = kernel // 2
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    band = _band(k1d, _BLOCK)
    y = _correlate_last(y, band, w)  # rows: [B, C, H + 2p, W]
    return _correlate_rows(y, band, h)  # columns: [B, C, H, W]


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


def solarize(x: torch.Tensor) -> torch.Tensor:
    """Invert values at or above 128/255 (torchvision's RandomSolarize(threshold=128) on uint8)."""
    # above = 1.0 where x >= t, else 0.0: floor(x - t) is 0 or -1 for x in [0, 1] (exact: x - t
    # rounds to >= 0 iff x >= t); arithmetic, as comparisons and torch.where are slow on CPU.
    above = (x - 128 / 255).floor_().add_(1.0)
    return torch.addcmul(x, above, x.mul(-2.0).add_(1.0))  # x + (1 - 2x) = 1 - x where above


def normalize(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """ImageNet mean/std normalisation in one pass (x * 1/std - mean/std), into ``out`` if given."""
    scale = _channels(tuple(1 / s for s in IMAGENET_STD), x.dtype, x.device)
    bias = _channels(tuple(-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)), x.dtype, x.device)
    return torch.addcmul(bias, x, scale, out=out)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)  # torchvision's fn_idx order


def jitter_one(x: torch.Tensor, params: dict) -> torch.Tensor:
    """Apply ``v2.ColorJitter.make_params`` output (op order ``fn_idx``, factors) to a batch of one."""
    factors = (params["brightness_factor"], params["contrast_factor"], params["saturation_factor"],
               params["hue_factor"])
    for op_index in params["fn_idx"].tolist():
        if factors[op_index] is not None:
            x = _JITTER_OPS[op_index](x, x.new_tensor([factors[op_index]]))
    return x


def _on_subset(x: torch.Tensor, mask: torch.Tensor, fn) -> torch.Tensor:
    """``x`` with ``fn(samples, index)`` written over the samples where ``mask`` (CPU bool [B]) holds.

    ``x`` must be a tensor this module made (it is updated in place); ``index`` is on the CPU so
    ``fn`` can pick its per-sample parameters without a device round trip.
    """
    index = mask.nonzero().squeeze(1)
    if len(index) == len(x):
        return fn(x, index)
    if len(index) == 0:
        return x
    on_device = index.to(x.device)
    return x.index_copy_(0, on_device, fn(x.index_select(0, on_device), index))


def _draw(n: int, r: ViewRecipe, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-sample parameters of colour jitter (factors, op order, p), grey, blur and solarize, on the CPU.

    Drawn for the whole batch at once, in a fixed order, so they do not depend on how the batch is
    later split into chunks.
    """
    ranges = [(max(0.0, 1 - r.brightness), 1 + r.brightness), (max(0.0, 1 - r.contrast), 1 + r.contrast),
              (max(0.0, 1 - r.saturation), 1 + r.saturation), (-r.hue, r.hue)]
    factors = torch.stack([torch.empty(n).uniform_(lo, hi, generator=gen) for lo, hi in ranges], 1)
    order = torch.argsort(torch.rand(n, 4, generator=gen), dim=1)
    jitter = torch.rand(n, generator=gen) < r.jitter_p
    # chosen[b, slot, op]: sample b runs op in that slot (jitter applied and its permutation says so).
    chosen = jitter.view(n, 1, 1) & (order.view(n, 4, 1) == torch.arange(4).view(1, 1, 4))
    draws = {"factors": factors, "chosen": chosen, "gray": torch.rand(n, generator=gen) < r.gray_p}
    if r.blur_p > 0:
        draws["sigma"] = torch.empty(n).uniform_(*BLUR_SIGMA, generator=gen)
        draws["blur"] = torch.rand(n, generator=gen) < r.blur_p
    if r.solarize_p > 0:
        draws["solarize"] = torch.rand(n, generator=gen) < r.solarize_p
    return draws


def _color_jitter(x: torch.Tensor, d: dict[str, torch.Tensor]) -> torch.Tensor:
    """torchvision ColorJitter with an independent random op order per sample (``d["chosen"]``).

    Slot by slot, each op runs on the samples whose permutation puts it in that slot; every sample
    thus runs each of its four ops once, in its own order.
    """
    for slot in range(4):
        for op_index, op in enumerate(_JITTER_OPS):
            factor = d["factors"][:, op_index]
            x = _on_subset(x, d["chosen"][:, slot, op_index], lambda s, i, op=op, factor=factor: op(s, factor[i].to(s)))
    return x


def _photometric(x: torch.Tensor, r: ViewRecipe, d: dict[str, torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """Colour jitter, grey, blur, solarize and normalisation (into ``out``) of a cropped, flipped float batch."""
    x = _color_jitter(x, d)
    # repeat, not expand: later ops may write part of the batch in place.
    x = _on_subset(x, d["gray"], lambda s, _: grayscale(s).repeat(1, 3, 1, 1))
    if r.blur_p > 0:
        x = _on_subset(x, d["blur"], lambda s, i: gaussian_blur(s, r.blur_kernel, d["sigma"][i].to(s)))
    if r.solarize_p > 0:
        x = _on_subset(x, d["solarize"], lambda s, _: solarize(s))
    return normalize(x, out=out)


# Samples per chunk on CPU: about 1 MB of float pixels (one sample from ~210 px up), so the ~80
# passes of a view stay in cache instead of streaming the whole batch from memory (1.3x at 224 px).
_CPU_CHUNK_ELEMENTS = 1 << 18


def _in_chunks(x: torch.Tensor, r: ViewRecipe, d: dict[str, torch.Tensor], first=None) -> torch.Tensor:
    """``_photometric`` over cache-sized chunks of ``x`` on CPU (the whole batch on an accelerator);
    ``first(chunk, index)`` runs on each chunk before it (uint8 -> float, flip)."""
    n = len(x)
    step = n if x.device.type != "cpu" else max(1, _CPU_CHUNK_ELEMENTS // (3 * r.size * r.size))
    out = torch.empty(n, 3, r.size, r.size, device=x.device)
    for start in range(0, n, step):
        index = slice(start, start + step)
        chunk = x[index] if first is None else first(x[index], index)
        _photometric(chunk, r, {k: v[index] for k, v in d.items()}, out[index])
    return out


def augment_view(images: torch.Tensor, r: ViewRecipe, gen: torch.Generator) -> torch.Tensor:
    """uint8 [B, 3, H, W] (one size) -> normalised float view [B, 3, size, size], crop included."""
    x = images.float().div_(255)
    n, _, h, w = x.shape
    boxes = sample_crop_boxes(n, h, w, (r.min_scale, 1.0), gen).to(x.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    x = resized_crop(x, boxes, r.size, flip).clamp_(0, 1)
    return _in_chunks(x, r, _draw(n, r, gen))


def augment_cropped(crops: torch.Tensor, r: ViewRecipe, gen: torch.Generator) -> torch.Tensor:
    """uint8 crops [B, 3, size, size] (resized in the loader) -> normalised float view: flip, then as above."""
    flip = torch.rand(len(crops), generator=gen) < 0.5

    def to_float_and_flip(chunk: torch.Tensor, index: slice) -> torch.Tensor:
        # Flipped on uint8 (a quarter of the bytes), in a copy: the loader's batch is not ours to write.
        return _on_subset(chunk.clone(), flip[index], lambda s, _: s.flip(-1)).float().div_(255)

    return _in_chunks(crops, r, _draw(len(crops), r, gen), first=to_float_and_flip)


class BatchTwoViews:
    """Callable turning a uint8 batch into the two augmented views, with its own seeded generator.

    ``cropped=False``: the batch is whole images [B, 3, H, W] of one size (in-memory sets);
    ``cropped=True``: it is both views' crops [B, 2, 3, size, size] from :class:`~mec_eval.pretrain.augment.TwoCrops`.
    All draws come from the generator, on the CPU, so the views do not depend on the device.
    """

    def __init__(self, kind: str, size: int, min_scale: float, seed: int, cropped: bool = False):
        self.recipes = view_recipes(kind, size, min_scale)
        self.generator = torch.Generator().manual_seed(seed)
        self.cropped = cropped

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.cropped:
            return [augment_cropped(images[:, i], r, self.generator) for i, r in enumerate(self.recipes)]
        return [augment_view(images, r, self.generator) for r in self.recipes]
