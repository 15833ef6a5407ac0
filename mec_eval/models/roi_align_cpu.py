"""ROIAlign whose CPU backward is a few matrix products instead of torchvision's serial scatter loop.

The forward is torchvision's ``roi_align`` itself (same numbers). Its CPU backward walks every ROI,
channel, bin and sample in one thread: about 11 s of a 100 s R50-C4 training step on a 2-core AVX2
CPU (512 ROIs per image, FREEZE_AT 0 so the gradient reaches res4). The bilinear weights of ROIAlign
are separable, so the gradient of one ROI is ``Wy^T G Wx``: ``Wy`` (PH x H) and ``Wx`` (PW x W) hold
the summed sample weights of each bin row and column (divided by the sample count), ``G`` the
C x PH x PW output gradient. Summed over the ROIs of an image that is one batched product and one
matrix product, which run on every core (BLAS) instead of one. The sample positions, the grid size
``ceil(roi / pooled)`` for ``sampling_ratio=0`` and the border rules are torchvision's
(``roi_align_kernel.cpp``: samples beyond [-1, size] count zero, others are clamped into the map);
``tests/models/test_roi_align_cpu.py`` checks the gradient against torchvision's own backward.
CUDA inputs keep torchvision's kernel.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align

ROI_CHUNK = 64  # ROIs per batched product: bounds the temporary C x PH x W block per ROI


def _axis_weights(start: torch.Tensor, length: torch.Tensor, pooled: int, grid: torch.Tensor, size: int,
                  max_grid: int) -> torch.Tensor:
    """[R, pooled, size]: the bilinear weight of each feature row (or column) in each bin, over its samples.

    ``start`` and ``length`` are the ROI's start and extent on this axis in feature cells, ``grid`` its
    samples per bin on this axis (0: none), all [R]. Each weight already carries the 1 / grid share of
    the bin average; the other axis contributes the rest of torchvision's 1 / (grid_h * grid_w).
    """
    rois = start.shape[0]
    bin_size = length / pooled
    sample = torch.arange(max_grid, dtype=start.dtype, device=start.device)
    bins = torch.arange(pooled, dtype=start.dtype, device=start.device)
    safe_grid = grid.clamp(min=1).to(start.dtype)
    pos = (start[:, None, None] + bins[None, :, None] * bin_size[:, None, None]
           + (sample[None, None, :] + 0.5) * (bin_size / safe_grid)[:, None, None])   # [R, pooled, max_grid]
    used = (sample[None, None, :] < grid[:, None, None]) & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0.0)
    low = pos.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    pos = torch.where(at_edge, low.to(pos.dtype), pos)
    frac = pos - low.to(pos.dtype)
    share = used.to(pos.dtype) / safe_grid[:, None, None]
    weights = torch.zeros(rois, pooled, size, dtype=start.dtype, device=start.device)
    weights.scatter_add_(2, low, (1.0 - frac) * share)
    weights.scatter_add_(2, high, frac * share)
    return weights


def roi_align_backward(grad_output: torch.Tensor, rois: torch.Tensor, input_shape: torch.Size, spatial_scale: float,
                       sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """d loss / d input of ``roi_align(input, rois, ...)`` for ``grad_output`` [R, C, PH, PW] (float32 math)."""
    batch, channels, height, width = input_shape
    grad = grad_output.float()
    pooled_h, pooled_w = grad.shape[-2:]
    rois = rois.to(torch.float32)
    offset = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * spatial_scale - offset, rois[:, 2] * spatial_scale - offset
    roi_w, roi_h = rois[:, 3] * spatial_scale - offset - x1, rois[:, 4] * spatial_scale - offset - y1
    if not aligned:  # torchvision forces malformed ROIs to 1 x 1 only without alignment
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    if sampling_ratio > 0:
        grid_h = torch.full_like(roi_h, sampling_ratio, dtype=torch.long)
        grid_w = torch.full_like(roi_w, sampling_ratio, dtype=torch.long)
    else:  # ceil as torchvision computes it in float: a negative extent gives no samples
        grid_h, grid_w = torch.ceil(roi_h / pooled_h).long(), torch.ceil(roi_w / pooled_w).long()
    max_h = max(int(grid_h.max()) if grid_h.numel() else 1, 1)
    max_w = max(int(grid_w.max()) if grid_w.numel() else 1, 1)
    weights_y = _axis_weights(y1, roi_h, pooled_h, grid_h, height, max_h)    # [R, PH, H]
    weights_x = _axis_weights(x1, roi_w, pooled_w, grid_w, width, max_w)     # [R, PW, W]
    grad_input = torch.zeros(batch, height, channels * width, dtype=torch.float32, device=grad.device)
    image_of = rois[:, 0].long()
    for image in image_of.unique().tolist():
        index = (image_of == image).nonzero().squeeze(1)
        for chunk in index.split(ROI_CHUNK):
            n, first = chunk.numel(), int(chunk[0])
            contiguous = int(chunk[-1]) - first + 1 == n  # the heads pool image by image: a view, no gather
            part = grad.narrow(0, first, n) if contiguous else grad[chunk]
            wy = weights_y.narrow(0, first, n) if contiguous else weights_y[chunk]
            wx = weights_x.narrow(0, first, n) if contiguous else weights_x[chunk]
            # G Wx per ROI, bin rows outermost: [n, PH*C, PW] @ [n, PW, W] -> [n*PH, C*W] (the one copy is of G)
            rows = torch.bmm(part.permute(0, 2, 1, 3).reshape(n, pooled_h * channels, pooled_w), wx)
            # sum over ROIs and bin rows of Wy^T (G Wx): [H, n*PH] @ [n*PH, C*W]
            grad_input[image].addmm_(wy.reshape(n * pooled_h, height).t(), rows.reshape(n * pooled_h, channels * width))
    return grad_input.reshape(batch, height, channels, width).permute(0, 2, 1, 3).contiguous()


class _RoIAlignFastBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features, rois, output_size, spatial_scale, sampling_ratio, aligned):
        ctx.save_for_backward(rois)
        ctx.settings = (features.shape, features.dtype, spatial_scale, sampling_ratio, aligned)
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        shape, dtype, spatial_scale, sampling_ratio, aligned = ctx.settings
        grad = roi_align_backward(grad_output, rois, shape, spatial_scale, sampling_ratio, aligned)
        return grad.to(dtype), None, None, None, None, None


def roi_align_fast(features: torch.Tensor, rois: torch.Tensor, output_size: tuple[int, int], spatial_scale: float,
                   sampling_ratio: int, aligned: bool) -> torch.Tensor:
    """torchvision's ``roi_align`` (``rois`` [R, 5] with the image index first); on CPU with a gradient,
    the separable backward above."""
    if features.device.type != "cpu" or not torch.is_grad_enabled() or not features.requires_grad:
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    dtype = features.dtype
    if dtype not in (torch.float32, torch.float64):  # as torchvision's autocast rule: fp32 math, input dtype out
        features = features.float()
    pooled = _RoIAlignFastBackward.apply(features, rois.to(features.dtype), tuple(output_size), float(spatial_scale),
                                         int(sampling_ratio), bool(aligned))
    return pooled.to(dtype)


class RoIAlignCPU(nn.Module):
    """Drop-in for ``torchvision.ops.RoIAlign`` taking a list of per-image boxes or an [R, 5] tensor."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float, sampling_ratio: int, aligned: bool):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.spatial_scale, self.sampling_ratio, self.aligned = spatial_scale, sampling_ratio, aligned

    def forward(self, features: torch.Tensor, boxes) -> torch.Tensor:
        if not isinstance(boxes, torch.Tensor):
            boxes = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        return roi_align_fast(features, boxes, self.output_size, self.spatial_scale, self.sampling_ratio,
                              self.aligned)

