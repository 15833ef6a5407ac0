"""The separable CPU backward of ROIAlign against torchvision's own backward (the reference kernel)."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import RoIAlign, roi_align

from mec_eval.models.roi_align_cpu import ROI_CHUNK, RoIAlignCPU, roi_align_fast


def _rois(count: int, images: int, height: int, width: int, scale: float, seed: int) -> torch.Tensor:
    """Boxes in image pixels, some beyond the borders, a few malformed (x2 < x1), a few tiny, a few huge."""
    g = torch.Generator().manual_seed(seed)
    span = torch.tensor([width, height, width, height]) / scale
    corners = torch.rand(count, 4, generator=g) * span * 1.4 - 0.2 * span
    boxes = torch.cat([torch.minimum(corners[:, :2], corners[:, 2:]), torch.maximum(corners[:, :2], corners[:, 2:])], 1)
    boxes[:2, 2:] = boxes[:2, :2] - 3.0                    # malformed: negative extent
    boxes[2:4, 2:] = boxes[2:4, :2] + 0.3                  # far below one cell
    boxes[4] = torch.tensor([-50.0, -50.0, width / scale + 50, height / scale + 50])  # beyond every border
    index = torch.randint(0, images, (count, 1), generator=g).float()
    return torch.cat([index, boxes], dim=1)


@pytest.mark.parametrize("sampling_ratio, aligned", [(0, True), (2, True), (0, False), (1, False)])
@pytest.mark.parametrize("images, channels, height, width", [(2, 5, 9, 13), (1, 3, 4, 3), (3, 2, 17, 6)])
def test_gradient_equals_torchvisions_backward(sampling_ratio, aligned, images, channels, height, width):
    scale = 1 / 16
    features = torch.randn(images, channels, height, width, dtype=torch.float64, requires_grad=True)
    rois = _rois(ROI_CHUNK + 23, images, height, width, scale, seed=height)  # more than one chunk per image
    upstream = torch.randn(len(rois), channels, 7, 5, dtype=torch.float64)
    ref_out = roi_align(features, rois.double(), (7, 5), scale, sampling_ratio, aligned)
    (reference,) = torch.autograd.grad(ref_out, features, upstream)
    ours_out = roi_align_fast(features, rois, (7, 5), scale, sampling_ratio, aligned)
    (ours,) = torch.autograd.grad(ours_out, features, upstream)
    assert torch.equal(ours_out, ref_out)                       # the forward is torchvision's
    assert reference.abs().sum() > 0
    torch.testing.assert_close(ours.double(), reference, rtol=1e-5, atol=1e-5 * float(reference.abs().max()))


def test_module_matches_torchvision_roialign_in_float32_with_per_image_boxes():
    """The drop-in for torchvision.ops.RoIAlign as the C4 head calls it: a list of per-image boxes, sorted by image."""
    features = torch.randn(2, 64, 20, 27, requires_grad=True)
    boxes = [_rois(150, 1, 20, 27, 1 / 16, seed=s)[:, 1:] for s in (1, 2)]
    upstream = torch.randn(300, 64, 14, 14)
    reference_pool = RoIAlign(14, 1 / 16, sampling_ratio=0, aligned=True)
    ours_pool = RoIAlignCPU(14, 1 / 16, sampling_ratio=0, aligned=True)
    (reference,) = torch.autograd.grad(reference_pool(features, boxes), features, upstream)
    pooled = ours_pool(features, boxes)
    (ours,) = torch.autograd.grad(pooled, features, upstream)
    assert torch.equal(pooled, reference_pool(features, boxes))
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4 * float(reference.abs().max()))


def test_autocast_keeps_torchvisions_dtype_rule_and_no_grad_falls_through():
    features = torch.randn(1, 4, 8, 8, requires_grad=True)
    rois = torch.tensor([[0.0, 8.0, 8.0, 90.0, 100.0]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = features.to(torch.bfloat16)
        ours, ref = roi_align_fast(half, rois, (2, 2), 1 / 16, 0, True), roi_align(half, rois, (2, 2), 1 / 16, 0, True)
    assert ours.dtype == ref.dtype == torch.bfloat16 and torch.equal(ours, ref)
    ours.float().sum().backward()
    assert features.grad is not None and features.grad.dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(roi_align_fast(features, rois, (2, 2), 1 / 16, 0, True),
                           roi_align(features, rois, (2, 2), 1 / 16, 0, True))
