"""Seeded synthetic scenes of coloured geometric shapes on textured backgrounds.

The classification set labels each image with the kind of its one main shape. Everything else is a
nuisance that the usual self-supervised augmentations (crops, colour jitter, grayscale, flips)
teach a representation to ignore: the shape's colour (drawn independently of the label), its
position, scale and rotation, a textured background in random colours, and small distractor blobs
and lines. Raw pixels and random convolutional features therefore do poorly, while the shape kind
stays plain to the eye, which leaves room for pre-training to show a gain.

A scene is a background image plus a list of :class:`ObjectSpec`; :func:`compose` draws any such
list, and :func:`object_mask` draws one object's mask, so detection, segmentation and tracking data
can reuse the same objects (move the specs between frames, read boxes off the masks).
Scenes are drawn at ``SUPERSAMPLE`` times the output size and box-filtered down (antialiasing).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from mec_eval.utils import UserError

KINDS = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow", "heart", "hourglass")
CLUTTER_KINDS = ("blob", "line")
SUPERSAMPLE = 3
MAIN_SIZE = (0.35, 0.75)  # circumscribed diameter of the main shape, as a fraction of the image side
CLUTTER_SIZE = (0.10, 0.25)
SPLIT_CODES = {"train": 0, "test": 1}
DEFAULT_SIZES = {"train": 5000, "test": 2000}


@dataclass(frozen=True)
class ObjectSpec:
    """One drawn object, in output-image pixel coordinates.

    ``size`` is the diameter of the circle that circumscribes the shape, ``rotation`` is in degrees
    (counter-clockwise on screen), ``colour`` is RGB 0..255.
    """

    kind: str
    colour: tuple[int, int, int]
    centre: tuple[float, float]
    size: float
    rotation: float


def _circle(radius: float = 1.0, centre: tuple[float, float] = (0.0, 0.0), n: int = 64) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    return np.stack([centre[0] + radius * np.cos(t), centre[1] + radius * np.sin(t)], axis=1)


def _regular(n: int, phase: float = -math.pi / 2) -> np.ndarray:
    t = phase + np.arange(n) * 2.0 * math.pi / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    t = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    return np.stack([radii * np.cos(t), radii * np.sin(t)], axis=1)


def _heart(n: int = 96) -> np.ndarray:
    # The classic parametric heart curve; y is flipped because image rows grow downwards.
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x, -y - 2.5], axis=1)


def _shape_table() -> dict[str, list[tuple[np.ndarray, bool]]]:
    """Each kind as polygons in unit coordinates; the flag says filled (True) or cut out (False)."""
    arm, neck = 0.32, 0.1
    raw = {
        "circle": [(_circle(), True)],
        "square": [(_regular(4, math.pi / 4), True)],
        "triangle": [(_regular(3), True)],
        "star": [(_star(), True)],
        "cross": [(np.array([(-arm, -1), (arm, -1), (arm, -arm), (1, -arm), (1, arm), (arm, arm),
                             (arm, 1), (-arm, 1), (-arm, arm), (-1, arm), (-1, -arm), (-arm, -arm)]), True)],
        "ring": [(_circle(), True), (_circle(0.55), False)],
        "crescent": [(_circle(), True), (_circle(0.82, (0.42, -0.12)), False)],
        "arrow": [(np.array([(-1, -0.2), (0.15, -0.2), (0.15, -0.6), (1, 0), (0.15, 0.6), (0.15, 0.2),
                             (-1, 0.2)]), True)],
        "heart": [(_heart(), True)],
        "hourglass": [(np.array([(-0.65, -1), (0.65, -1), (neck, 0), (0.65, 1), (-0.65, 1), (-neck, 0)]), True)],
        "blob": [(_circle() * np.array([1.0, 0.55]), True)],
        "line": [(np.array([(-1, -0.09), (1, -0.09), (1, 0.09), (-1, 0.09)]), True)],
    }
    table = {}
    for kind, polygons in raw.items():
        # Normalise so the filled part just fits the unit circle: `size` then means the same for every kind.
        reach = max(np.linalg.norm(p, axis=1).max() for p, filled in polygons if filled)
        table[kind] = [(np.asarray(p, dtype=np.float64) / reach, filled) for p, filled in polygons]
    return table


SHAPES = _shape_table()


def outline(spec: ObjectSpec, scale: float = 1.0) -> list[tuple[np.ndarray, bool]]:
    """The object's polygons in pixel coordinates (times ``scale``), with their filled/cut-out flags."""
    angle = math.radians(spec.rotation)
    # Counter-clockwise on screen, where y points down.
    rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    centre = np.asarray(spec.centre) * scale
    radius = spec.size / 2.0 * scale
    return [(centre + radius * (poly @ rot.T), filled) for poly, filled in SHAPES[spec.kind]]


def _draw_mask(spec: ObjectSpec, canvas: int, scale: float) -> Image.Image:
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    for poly, filled in outline(spec, scale):
        draw.polygon([tuple(p) for p in poly.tolist()], fill=255 if filled else 0)
    return mask


def object_mask(spec: ObjectSpec, image_size: int) -> np.ndarray:
    """Boolean (image_size, image_size) mask of one object, ignoring anything drawn over it."""
    big = _draw_mask(spec, image_size * SUPERSAMPLE, SUPERSAMPLE)
    return np.asarray(big.reduce(SUPERSAMPLE)) >= 128


@lru_cache(maxsize=8)
def _grid(side: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    return x, y


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(0, 256, size=3))


def render_background(rng: np.random.Generator, side: int) -> Image.Image:
    """A side x side RGB texture: smooth blotches, stripes, checkerboard or a gradient.

    Two random colours are mixed by a random pattern, so that neither a colour nor a texture
    identifies the class.
    """
    x, y = _grid(side)
    angle = rng.uniform(0.0, math.pi)
    u = x * math.cos(angle) + y * math.sin(angle)
    pattern = rng.integers(4)
    if pattern == 0:  # smooth blotches: a coarse random grid upsampled bicubically
        cells = int(rng.integers(3, 7))
        coarse = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
        mix = coarse.resize((side, side), Image.BICUBIC)
    else:
        if pattern == 1:  # stripes, soft or hard
            wave = np.sin(2.0 * math.pi * (u * rng.uniform(2.0, 7.0) + rng.random()))
            weight = 0.5 + 0.5 * np.tanh(wave * rng.uniform(1.0, 8.0))
        elif pattern == 2:  # checkerboard
            v = y * math.cos(angle) - x * math.sin(angle)
            freq = rng.uniform(2.0, 6.0)
            weight = (np.floor(u * freq) + np.floor(v * freq)) % 2
        else:  # linear gradient
            weight = (u - u.min()) / (u.max() - u.min())
        mix = Image.fromarray((weight * 255).astype(np.uint8))
    first, second = (Image.new("RGB", (side, side), _random_colour(rng)) for _ in range(2))
    return Image.composite(second, first, mix)


def add_pixel_noise(rng: np.random.Generator, image: Image.Image, max_sigma: float = 12.0) -> Image.Image:
    """Gaussian sensor noise of a random strength, added at the output resolution."""
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + rng.uniform(0.0, max_sigma) * rng.standard_normal(pixels.shape, dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def compose(background: Image.Image, objects: list[ObjectSpec], image_size: int) -> Image.Image:
    """Draw ``objects`` in order over a supersampled ``background`` and box-filter to ``image_size``."""
    canvas = background.copy()
    scale = background.width / image_size
    for spec in objects:
        canvas.paste(spec.colour, mask=_draw_mask(spec, background.width, scale))
    return canvas.reduce(int(round(scale)))


def _distinct_colour(rng: np.random.Generator, background: Image.Image, main: ObjectSpec,
                     image_size: int) -> tuple[int, int, int]:
    """A random colour that stands out from (nearly) every background pixel under the main shape.

    Eight candidates are drawn at once; the first with fewer than 10 % of those pixels close to it
    wins (else the best one), so that a checkerboard cell or a stripe never swallows the shape.
    """
    step = background.width // image_size
    under = np.asarray(_draw_mask(main, image_size, 1.0)) > 0
    pixels = np.asarray(background, dtype=np.int16)[step // 2::step, step // 2::step][under]
    candidates = rng.integers(0, 256, size=(8, 3)).astype(np.int16)
    close = (np.abs(candidates[:, None, :] - pixels[None, :, :]).sum(axis=2) < 120).mean(axis=1)
    good = np.flatnonzero(close < 0.1)
    pick = good[0] if good.size else int(np.argmin(close))
    return tuple(int(c) for c in candidates[pick])


def sample_object(rng: np.random.Generator, kind: str, image_size: int,
                  size_range: tuple[float, float]) -> ObjectSpec:
    """A random pose for ``kind``, fully inside the image; the colour is left black for the caller."""
    size = rng.uniform(*size_range) * image_size
    centre = tuple(float(c) for c in rng.uniform(size / 2, image_size - size / 2, size=2))
    return ObjectSpec(kind, (0, 0, 0), centre, float(size), float(rng.uniform(0.0, 360.0)))


def render_scene(rng: np.random.Generator, image_size: int = 32, kind: str | None = None,
                 max_clutter: int = 4) -> tuple[Image.Image, list[ObjectSpec]]:
    """One random scene: textured background, up to ``max_clutter`` distractors, one main shape.

    Returns the RGB image and the objects in drawing order; the main shape is drawn last
    (``objects[-1]``), so distractors never hide it.
    """
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    side = image_size * SUPERSAMPLE
    background = render_background(rng, side)
    objects = []
    for _ in range(int(rng.integers(0, max_clutter + 1))):
        spec = sample_object(rng, CLUTTER_KINDS[int(rng.integers(2))], image_size, CLUTTER_SIZE)
        objects.append(replace(spec, colour=_random_colour(rng)))
    main = sample_object(rng, kind, image_size, MAIN_SIZE)
    objects.append(replace(main, colour=_distinct_colour(rng, background, main, image_size)))
    return add_pixel_noise(rng, compose(background, objects, image_size)), objects


class ShapesDataset(Dataset):
    """Classification form: image ``i`` shows a main shape of kind ``KINDS[i % 10]``.

    Image ``i`` of a split depends only on ``(seed, split, i)``: it is rendered on first access
    with its own generator and cached (``cache=False`` to save memory at large ``image_size``).
    Items are ``(PIL RGB image, label)`` with ``transform`` applied to the image.
    """

    def __init__(self, split: str = "train", n: int | None = None, image_size: int = 32, seed: int = 0,
                 transform=None, cache: bool = True):
        if split not in SPLIT_CODES:
            raise UserError(f"shapes: unknown split '{split}' (choose train or test)")
        self.split, self.image_size, self.seed, self.transform = split, image_size, seed, transform
        self.n = DEFAULT_SIZES[split] if n is None else n
        self.classes = list(KINDS)
        self.targets = [i % len(KINDS) for i in range(self.n)]
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int) -> tuple[Image.Image, list[ObjectSpec]]:
        """Render image ``index`` afresh, together with its objects."""
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        return render_scene(rng, self.image_size, KINDS[self.targets[index]])

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(f"shapes index {index} out of range for {self.n} images")
        if self._cache is not None and index in self._cache:
            image = Image.fromarray(self._cache[index])
        else:
            image = self.scene(index)[0]
            if self._cache is not None:
                self._cache[index] = np.asarray(image)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]
