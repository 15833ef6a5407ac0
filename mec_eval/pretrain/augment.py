"""Per-image two-view pipelines of the recipe in :mod:`mec_eval.pretrain.batch_augment` (MEC App. C).

:func:`view_transform` is the torchvision v2 definition of a view; :class:`TensorView` draws the
same parameters and computes the view on a uint8 tensor with the batched operations (a batch of
one), which is what the loader runs; :class:`TwoCrops` is the worker half of the batched path.
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional import pil_to_tensor

from mec_eval.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mec_eval.pretrain import batch_augment as B
from mec_eval.pretrain.batch_augment import BLUR_SIGMA, ViewRecipe, view_recipes


def view_transform(r: ViewRecipe) -> v2.Compose:
    """The recipe as a torchvision v2 pipeline (PIL image -> normalised tensor).

    The reference definition of one view: :class:`TensorView` draws exactly its parameters and
    applies the same operations in float (tests and ``benchmarks/bench_data_path.py`` compare the two).
    """
    steps = [
        v2.ToImage(),
        v2.RandomResizedCrop(r.size, scale=(r.min_scale, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(r.brightness, r.contrast, r.saturation, r.hue)], p=r.jitter_p),
        v2.RandomGrayscale(p=r.gray_p),
    ]
    if r.blur_p > 0:
        steps.append(v2.RandomApply([v2.GaussianBlur(r.blur_kernel, sigma=BLUR_SIGMA)], p=r.blur_p))
    if r.solarize_p > 0:
        steps.append(v2.RandomSolarize(threshold=128, p=r.solarize_p))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


def as_uint8_tensor(image) -> torch.Tensor:
    """A decoded uint8 [3, H, W] tensor as is; a PIL image (CIFAR, embedded sets) converted to one."""
    return image if isinstance(image, torch.Tensor) else pil_to_tensor(image.convert("RGB"))


class TensorView:
    """One view of a recipe on a uint8 tensor image, with the parameters :func:`view_transform` draws.

    Every draw is the v2 transform's own (``make_params``, the ``torch.rand(1) < p`` gates), in the
    same order, from torch's global RNG, so a seeded item gets the same crop, flip, jitter order and
    factors, grey, sigma and solarize decision as the v2 pipeline. The work differs: the crop box is
    resized on the uint8 image (only the crop is read), then the colour operations, blur, solarize
    and normalisation run on one float copy of the view, without the v2 pipeline's uint8 round trip
    (and truncation) after every colour operation.
    """

    def __init__(self, r: ViewRecipe):
        self.recipe = r
        self.crop = v2.RandomResizedCrop(r.size, scale=(r.min_scale, 1.0), antialias=True)
        self.jitter = v2.ColorJitter(r.brightness, r.contrast, r.saturation, r.hue)

    def crop_uint8(self, image: torch.Tensor) -> torch.Tensor:
        """Draw the RandomResizedCrop box and resize only that box: uint8 [3, size, size]."""
        box = self.crop.make_params([image])
        return F.resized_crop(image, **box, size=[self.recipe.size] * 2, antialias=True)

    def finish(self, crop: torch.Tensor) -> torch.Tensor:
        """Flip, colour jitter, grey, blur, solarize, normalise a uint8 crop (draws in v2's order)."""
        r = self.recipe
        if torch.rand(1) < 0.5:
            crop = crop.flip(-1)  # on uint8: a quarter of the bytes of the float view
        x = crop.unsqueeze(0).float().div_(255)
        if torch.rand(1) < r.jitter_p:
            x = B.jitter_one(x, self.jitter.make_params([]))
        if torch.rand(1) < r.gray_p:
            x = B.grayscale(x).expand_as(x)
        if r.blur_p > 0 and torch.rand(1) < r.blur_p:
            sigma = torch.empty(1).uniform_(*BLUR_SIGMA)
            x = B.gaussian_blur(x, r.blur_kernel, sigma)
        if r.solarize_p > 0 and torch.rand(1) < r.solarize_p:
            x = B.solarize(x)
        return B.normalize(x)[0]

    def __call__(self, image) -> torch.Tensor:
        return self.finish(self.crop_uint8(as_uint8_tensor(image)))


class TwoViews:
    """Callable returning ``[view1(img), view2(img)]`` for a PIL image or a uint8 tensor."""

    def __init__(self, first, second):
        self.first, self.second = first, second

    def __call__(self, image):
        image = as_uint8_tensor(image)
        return [self.first(image), self.second(image)]


class TwoCrops:
    """The loader-worker half of the batched path: both views' crops as one uint8 [2, 3, size, size] tensor.

    The crop boxes are drawn as :class:`TensorView` draws them; flip, colour, blur and solarize are
    left to :class:`~mec_eval.pretrain.batch_augment.BatchTwoViews` (``cropped=True``) on the training device.
    """

    def __init__(self, kind: str, image_size: int, min_scale: float = 0.2):
        self.views = [TensorView(r) for r in view_recipes(kind, image_size, min_scale)]

    def __call__(self, image) -> torch.Tensor:
        image = as_uint8_tensor(image)
        return torch.stack([view.crop_uint8(image) for view in self.views])


def build_two_view_transform(kind: str, image_size: int, min_scale: float = 0.2) -> TwoViews:
    return TwoViews(*(TensorView(r) for r in view_recipes(kind, image_size, min_scale)))
