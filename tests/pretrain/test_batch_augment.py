"""Batched augmentations against torchvision's per-image functional ops with fixed parameters."""
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from mec_eval.pretrain import batch_augment as B


@pytest.fixture
def images():
    return torch.rand(4, 3, 20, 24, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("ours,ref,factor", [
    (B.adjust_brightness, TF.adjust_brightness, 1.3), (B.adjust_contrast, TF.adjust_contrast, 0.7),
    (B.adjust_saturation, TF.adjust_saturation, 1.2), (B.adjust_hue, TF.adjust_hue, -0.08),
])
def test_colour_ops_equal_torchvision(images, ours, ref, factor):
    got = ours(images.clone(), torch.full((len(images),), factor))
    torch.testing.assert_close(got, ref(images, factor), atol=2e-6, rtol=0)


def test_per_sample_factors_are_independent(images):
    factors = torch.tensor([0.6, 1.0, 1.4, 0.9])
    got = B.adjust_contrast(images.clone(), factors)
    for i, f in enumerate(factors.tolist()):
        torch.testing.assert_close(got[i], TF.adjust_contrast(images[i], f), atol=2e-6, rtol=0)


@pytest.mark.parametrize("kernel", [5, 11])
def test_blur_equals_torchvision(images, kernel):
    sigmas = torch.tensor([0.3, 0.9, 1.5, 2.0])
    got = B.gaussian_blur(images, kernel, sigmas)
    for i, s in enumerate(sigmas.tolist()):
        torch.testing.assert_close(got[i], TF.gaussian_blur(images[i], [kernel, kernel], [s, s]), atol=1e-5, rtol=0)


def test_hue_equals_torchvision_on_ties_greys_and_large_shifts():
    # Pixels with tied maxima (r = g, g = b, r = b), greys and black pick torchvision's sector.
    x = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.7, 0.7], [0.6, 0.3, 0.6], [0.4, 0.4, 0.4], [0.0, 0.0, 0.0],
                      [1.0, 0.0, 0.0], [0.1, 0.2, 0.9], [0.3, 0.9, 0.2]]).t().reshape(1, 3, 2, 4)
    for shift in (-0.5, -0.1, 0.03, 0.25, 0.5):
        got = B.adjust_hue(x.clone(), torch.tensor([shift]))
        torch.testing.assert_close(got[0], TF.adjust_hue(x[0], shift), atol=2e-6, rtol=0)


def test_solarize_and_normalize_equal_torchvision():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16)
    solarized = B.solarize(x.float() / 255)
    torch.testing.assert_close(solarized * 255, TF.solarize(x, 128).float(), atol=1e-4, rtol=0)
    from mec_eval.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    torch.testing.assert_close(B.normalize(solarized), TF.normalize(solarized, IMAGENET_MEAN, IMAGENET_STD),
                               atol=1e-6, rtol=0)


def test_resized_crop_equals_torchvision_and_flip(images):
    boxes = torch.tensor([[2.0, 3.0, 12.0, 16.0], [0.0, 0.0, 20.0, 24.0], [5.0, 1.0, 10.0, 10.0], [1.0, 4.0, 16.0, 12.0]])
    flip = torch.tensor([False, True, False, True])
    got = B.resized_crop(images, boxes, 16, flip)
    for i, (top, left, h, w) in enumerate(boxes.int().tolist()):
        ref = TF.resized_crop(images[i], top, left, h, w, [16, 16], antialias=False)
        if flip[i]:
            ref = TF.horizontal_flip(ref)
        torch.testing.assert_close(got[i], ref, atol=1e-5, rtol=0)


def test_crop_boxes_respect_scale_and_ratio():
    boxes = B.sample_crop_boxes(4000, 32, 32, (0.2, 1.0), torch.Generator().manual_seed(1))
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
    area = h * w / 1024
    assert area.min() >= 0.15 and area.max() <= 1.0  # rounding widens 0.2 slightly
    assert ((w / h) >= 0.6).all() and ((w / h) <= 1.6).all()
    assert 0.5 < area.mean() < 0.7  # uniform scale in [0.2, 1] has mean 0.6


def test_views_are_seeded_and_normalised():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a = B.BatchTwoViews("byol", 32, 0.2, seed=3)(images)
    b = B.BatchTwoViews("byol", 32, 0.2, seed=3)(images)
    c = B.BatchTwoViews("byol", 32, 0.2, seed=4)(images)
    assert len(a) == 2 and a[0].shape == (8, 3, 32, 32)
    torch.testing.assert_close(a[0], b[0])
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])


def test_one_recipe_drives_both_pipelines_and_typos_fail():
    from mec_eval.pretrain.augment import build_two_view_transform, view_recipes
    from mec_eval.utils import UserError

    first, second = view_recipes("byol", 224)
    assert (first.blur_p, second.blur_p, first.solarize_p, second.solarize_p, first.blur_kernel) == (1.0, 0.1, 0.0, 0.2, 23)
    per_image = build_two_view_transform("cifar", 32)
    assert per_image.first.recipe.blur_p == 0 and per_image.second.recipe.solarize_p == 0
    for build in (lambda: B.BatchTwoViews("byl", 32, 0.2, seed=0), lambda: build_two_view_transform("byl", 32)):
        with pytest.raises(UserError, match="data.augment"):
            build()
