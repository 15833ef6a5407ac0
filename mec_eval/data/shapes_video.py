"""Seeded synthetic videos of moving, occluding shapes (the ``shapes-video`` set of the video tasks).

Each video is a static textured background (:func:`mec_eval.data.shapes.render_background`) with
``n_objects`` shapes of distinct kinds that move at a constant velocity plus small noise, rotate and
change scale slowly, and bounce at the borders. Objects are drawn in track order, so a later track
occludes an earlier one. Track 1 bounces beyond the frame, so it leaves and re-enters; the others
bounce inside it and are launched towards each other's paths, so most seeds hold an occlusion.

Keyword options make appearance, not colour, decide which pixel belongs to which object (the classification
``shapes`` set's nuisances, :mod:`mec_eval.data.shapes`): ``palette="shared"`` draws every object (and every
distractor) in one near-identical colour, so shape kind and size, not hue, tell them apart; ``palette_jitter``
is how far (per channel) each object's colour may stray from the shared one (the default 12 still leaks an
identity that random features pick up; 0 paints one colour); ``distractors`` adds moving clutter blobs and lines
drawn behind the objects; ``lighting`` drifts each frame's global brightness and contrast. They draw from their
own generator, so the defaults (today's videos) are unchanged and a hard video has the same trajectories, masks
and boxes as the default video of the same seed. :data:`HARD` is the hard setting.

Annotations are read off the drawn masks: a :class:`TrackFrame` carries the visible mask (after the
objects drawn in front, and the frame border), its box, the visible fraction of the shape and
keypoints on its outline vertices; a frame where the object is not visible at all holds ``None``.
SOT, VOS (helper D) and MOT/MOTS/PoseTrack writers (helper E) all read videos from here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from mec_eval.data.shapes import (
    CLUTTER_KINDS,
    CLUTTER_SIZE,
    KINDS,
    SUPERSAMPLE,
    ObjectSpec,
    compose,
    object_mask,
    outline,
    render_background,
)
from mec_eval.utils import UserError

SIZE_RANGE = (0.24, 0.40)      # initial circumscribed diameter, as a fraction of the shorter frame side
SPEED_RANGE = (1.5, 3.5)       # pixels per frame
VELOCITY_NOISE = 0.25          # std of the per-frame velocity jitter, pixels
SCALE_RATE = 0.012             # at most this relative size change per frame
SCALE_LIMITS = (0.6, 1.6)      # size stays within these multiples of the initial size
SPIN_RANGE = 3.0               # degrees per frame, either way
NOISE_SIGMA = 3.0              # Gaussian pixel noise added to each frame
MAX_KEYPOINTS = 12             # keypoints per object: outline vertices, evenly subsampled
PALETTES = ("distinct", "shared")
SHARED_JITTER = 12             # shared palette: each object's colour is the video's colour +- this per channel
MAX_PALETTE_JITTER = 64
MAX_DISTRACTORS = 16
MAX_LIGHTING = 0.5
LIGHTING_PERIOD = (12.0, 30.0)  # frames per cycle of the brightness / contrast drift
# The hard setting of the video tasks: colour never tells the objects apart (tasks/*-cpu-small.yaml, MOT, demo).
# No lighting drift: on top of the shared palette it pulled pre-trained and random features to the same floor.
HARD = {"palette": "shared", "distractors": 4, "lighting": 0.0}


@dataclass(frozen=True)
class TrackFrame:
    """One object in one frame: visible box (x1, y1, x2, y2 pixels, exclusive right/bottom edge), mask,
    visible fraction of its full area, and keypoints [K, 3] (x, y, 1 visible / 0 hidden)."""

    box: tuple[float, float, float, float]
    mask: np.ndarray
    visibility: float
    keypoints: np.ndarray


@dataclass(frozen=True)
class Track:
    """One object: id (from 1, = its drawing order), shape kind, one entry per frame (None: not visible)."""

    id: int
    kind: str
    frames: list


@dataclass(frozen=True)
class SyntheticVideo:
    """A named video: uint8 [H, W, 3] frames and the tracks of its objects."""

    name: str
    frames: list
    tracks: list

    @property
    def size(self) -> tuple[int, int]:
        return self.frames[0].shape[:2]

    @property
    def annotations(self) -> list[dict]:
        """Per frame (the video item contract): ``ids`` [N], ``boxes`` float [N, 4] x1, y1, x2, y2, ``masks``
        bool [N, H, W], ``visibility`` [N] and ``keypoints`` (N arrays [K, 3]) of the objects visible in it."""
        height, width = self.size
        frames = []
        for t in range(len(self.frames)):
            seen = [(track.id, track.frames[t]) for track in self.tracks if track.frames[t] is not None]
            frames.append({"ids": np.array([i for i, _ in seen], dtype=np.int64),
                           "boxes": np.array([e.box for _, e in seen], dtype=np.float64).reshape(-1, 4),
                           "masks": np.array([e.mask for _, e in seen], dtype=bool).reshape(-1, height, width),
                           "visibility": np.array([e.visibility for _, e in seen], dtype=np.float64),
                           "keypoints": [e.keypoints for _, e in seen]})
        return frames


@dataclass
class _Motion:
    """State of one object while the video is simulated."""

    spec: ObjectSpec
    velocity: np.ndarray
    spin: float
    growth: float
    base_size: float
    margin: float                # how far beyond the frame border the centre may go before bouncing (< 0: inside)


def _check(n_frames: int, size, n_objects: int) -> tuple[int, int]:
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 2:
        raise UserError(f"shapes-video: n_frames must be an integer >= 2 (got {n_frames!r})")
    if isinstance(n_objects, bool) or not isinstance(n_objects, int) or not 1 <= n_objects <= len(KINDS):
        raise UserError(f"shapes-video: n_objects must be an integer in 1..{len(KINDS)} (got {n_objects!r})")
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise UserError(f"shapes-video: size must be (height, width) integers (got {size!r})") from None
    if not (32 <= height <= 1024 and 32 <= width <= 1024):
        raise UserError(f"shapes-video: size must be within 32..1024 pixels per side (got {height}x{width})")
    return height, width


def _launch(rng: np.random.Generator, index: int, kind: str, height: int, width: int,
            colour: tuple[int, int, int]) -> _Motion:
    """Initial pose and velocity: track 1 heads for a border and leaves; the others head for the centre."""
    side = rng.uniform(*SIZE_RANGE) * min(height, width)
    centre = np.array([rng.uniform(side / 2, width - side / 2), rng.uniform(side / 2, height - side / 2)])
    speed = rng.uniform(*SPEED_RANGE)
    if index == 0:
        # Start near a side border, fast, heading for it: it leaves within the video and comes back.
        near = side / 2 + rng.uniform(0.0, 0.15) * width
        left = bool(rng.random() < 0.5)
        centre[0] = near if left else width - near
        direction = np.array([-1.0 if left else 1.0, rng.uniform(-0.3, 0.3)])
        speed = rng.uniform(0.7, 1.0) * SPEED_RANGE[1]
        margin = 0.7 * side
    else:
        # Aim at a point near the frame centre, so that paths cross (occlusions).
        target = np.array([width / 2, height / 2]) + rng.uniform(-0.15, 0.15, size=2) * [width, height]
        direction = target - centre
        if not np.linalg.norm(direction) > 1e-6:
            direction = np.array([1.0, 0.0])
        margin = -0.3 * side
    velocity = speed * direction / np.linalg.norm(direction)
    spec = ObjectSpec(kind, colour, (float(centre[0]), float(centre[1])), float(side), float(rng.uniform(0, 360)))
    return _Motion(spec, velocity, float(rng.uniform(-SPIN_RANGE, SPIN_RANGE)),
                   float(rng.uniform(-SCALE_RATE, SCALE_RATE)), float(side), margin)


def _step(rng: np.random.Generator, motion: _Motion, height: int, width: int) -> None:
    """Advance one frame: jittered constant velocity, slow spin and scale change, bounce at the bounds."""
    spec = motion.spec
    motion.velocity = motion.velocity + rng.normal(0.0, VELOCITY_NOISE, size=2)
    centre = np.asarray(spec.centre) + motion.velocity
    for axis, extent in ((0, width), (1, height)):
        # Bounce when the centre passes a bound, ``margin`` pixels beyond the border (negative: inside).
        low, high = -motion.margin, extent + motion.margin
        if centre[axis] < low or centre[axis] > high:
            motion.velocity[axis] = -motion.velocity[axis]
            centre[axis] = min(max(centre[axis], low), high)
    size = spec.size * (1.0 + motion.growth)
    if not SCALE_LIMITS[0] * motion.base_size <= size <= SCALE_LIMITS[1] * motion.base_size:
        motion.growth = -motion.growth
        size = spec.size
    motion.spec = replace(spec, centre=(float(centre[0]), float(centre[1])), size=float(size),
                          rotation=float((spec.rotation + motion.spin) % 360.0))


def _full_area(spec: ObjectSpec) -> int:
    """Pixel area of the whole shape, wherever it is: drawn centred on a canvas that holds all of it."""
    canvas = math.ceil(spec.size) + 4
    return int(object_mask(replace(spec, centre=(canvas / 2, canvas / 2)), canvas).sum())


def _keypoints(spec: ObjectSpec, front: np.ndarray) -> np.ndarray:
    """[K, 3] outline vertices of the outer polygon; visible when inside the frame and not covered."""
    polygon = outline(spec)[0][0]
    pick = np.unique(np.linspace(0, len(polygon), MAX_KEYPOINTS, endpoint=False).astype(int))
    points = polygon[pick]
    height, width = front.shape
    cols, rows = np.floor(points[:, 0]).astype(int), np.floor(points[:, 1]).astype(int)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    visible = inside.copy()
    visible[inside] = ~front[rows[inside], cols[inside]]
    return np.concatenate([points, visible[:, None].astype(np.float64)], axis=1)


def _annotate(specs: list[ObjectSpec], height: int, width: int) -> list[TrackFrame | None]:
    """Visible masks, boxes, visibilities and keypoints of one frame's objects (drawn in list order)."""
    side = max(height, width)
    masks = [object_mask(spec, side)[:height, :width] for spec in specs]
    entries: list[TrackFrame | None] = []
    for index, spec in enumerate(specs):
        front = np.zeros((height, width), dtype=bool)
        for later in masks[index + 1:]:
            front |= later
        visible = masks[index] & ~front
        if not visible.any():
            entries.append(None)
            continue
        rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
        box = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        visibility = min(1.0, float(visible.sum()) / max(_full_area(spec), 1))
        entries.append(TrackFrame(box, visible, visibility, _keypoints(spec, front)))
    return entries


def _colours(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
    """``n`` saturated colours with hues spread around the wheel (objects stay tellable apart)."""
    hues = (rng.random() + np.arange(n) / n) % 1.0
    hsv = np.stack([hues * 255, rng.uniform(180, 255, n), rng.uniform(170, 255, n)], axis=1).astype(np.uint8)
    rgb = np.asarray(Image.fromarray(hsv[None], mode="HSV").convert("RGB"))[0]
    return [tuple(int(c) for c in colour) for colour in rgb]


def _check_options(palette: str, distractors: int, lighting: float, palette_jitter: int) -> None:
    if palette not in PALETTES:
        raise UserError(f"shapes-video: palette must be one of {', '.join(PALETTES)} (got {palette!r})")
    if isinstance(distractors, bool) or not isinstance(distractors, int) or not 0 <= distractors <= MAX_DISTRACTORS:
        raise UserError(f"shapes-video: distractors must be an integer in 0..{MAX_DISTRACTORS} (got {distractors!r})")
    if isinstance(lighting, bool) or not isinstance(lighting, (int, float)) or not 0 <= lighting <= MAX_LIGHTING:
        raise UserError(f"shapes-video: lighting must be a number in 0..{MAX_LIGHTING} (got {lighting!r})")
    if (isinstance(palette_jitter, bool) or not isinstance(palette_jitter, int)
            or not 0 <= palette_jitter <= MAX_PALETTE_JITTER):
        raise UserError(f"shapes-video: palette_jitter must be an integer in 0..{MAX_PALETTE_JITTER} "
                        f"(got {palette_jitter!r})")


def _shared_colours(rng: np.random.Generator, background: Image.Image, n: int,
                    jitter: int) -> list[tuple[int, int, int]]:
    """``n`` near-identical colours: one video colour (of 8 candidates, the one far from most background
    pixels, so the objects stay visible) plus a per-object jitter of at most ``jitter`` per channel."""
    pixels = np.asarray(background, dtype=np.int16)[::SUPERSAMPLE * 4, ::SUPERSAMPLE * 4].reshape(-1, 3)
    candidates = rng.integers(0, 256, size=(8, 3)).astype(np.int16)
    far = (np.abs(candidates[:, None, :] - pixels[None]).sum(axis=2) >= 120).mean(axis=1)
    base = candidates[int(np.argmax(far))]
    jittered = np.clip(base + rng.integers(-jitter, jitter + 1, size=(n, 3)), 0, 255)
    return [tuple(int(c) for c in colour) for colour in jittered]


def _distractor(rng: np.random.Generator, height: int, width: int, colour: tuple[int, int, int]) -> _Motion:
    """A clutter blob or line (the classification set's distractor kinds) drifting and bouncing inside the frame."""
    kind = CLUTTER_KINDS[int(rng.integers(len(CLUTTER_KINDS)))]
    side = rng.uniform(*CLUTTER_SIZE) * 1.5 * min(height, width)
    centre = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
    angle = rng.uniform(0, 2 * math.pi)
    velocity = rng.uniform(*SPEED_RANGE) * np.array([math.cos(angle), math.sin(angle)])
    spec = ObjectSpec(kind, colour, centre, float(side), float(rng.uniform(0, 360)))
    return _Motion(spec, velocity, float(rng.uniform(-SPIN_RANGE, SPIN_RANGE)), 0.0, float(side), -0.2 * side)


def _lighting(rng: np.random.Generator, amplitude: float, n_frames: int) -> np.ndarray:
    """[T, 2] per-frame (gain, offset) of a smooth global brightness / contrast drift (colour-jitter-like)."""
    periods = rng.uniform(*LIGHTING_PERIOD, size=2)
    phases = rng.uniform(0, 2 * math.pi, size=2)
    t = np.arange(n_frames)[:, None]
    wave = np.sin(2 * math.pi * t / periods + phases)
    return np.concatenate([1.0 + amplitude * wave[:, :1], 64.0 * amplitude * wave[:, 1:]], axis=1)


def make_video(seed: int, n_frames: int = 24, size: tuple[int, int] = (96, 128), n_objects: int = 3, *,
               palette: str = "distinct", distractors: int = 0, lighting: float = 0.0,
               palette_jitter: int = SHARED_JITTER) -> SyntheticVideo:
    """One video; everything depends only on the arguments (the seed feeds one NumPy generator, the options
    a second one, so the defaults give the original videos and the options leave the motion unchanged).

    ``palette`` "distinct" (hues spread around the wheel) or "shared" (one colour for all objects and
    distractors); ``distractors`` moving clutter shapes drawn behind the objects (annotations unchanged);
    ``lighting`` the amplitude (0..0.5) of the per-frame gain drift (offset: 64 x amplitude grey levels);
    ``palette_jitter`` the per-channel spread (0..64 grey levels) of the shared palette's object colours.
    """
    height, width = _check(n_frames, size, n_objects)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"shapes-video: seed must be a non-negative integer (got {seed!r})")
    _check_options(palette, distractors, lighting, palette_jitter)
    rng = np.random.default_rng([seed, height, width, n_objects])
    extra = np.random.default_rng([seed, height, width, n_objects, 1])
    side = max(height, width)
    background = render_background(rng, side * SUPERSAMPLE)
    kinds = [KINDS[int(k)] for k in rng.permutation(len(KINDS))[:n_objects]]
    colours = _colours(rng, n_objects)
    if palette == "shared":
        colours = _shared_colours(extra, background, n_objects + distractors, palette_jitter)
    motions = [_launch(rng, i, kind, height, width, colour)
               for i, (kind, colour) in enumerate(zip(kinds, colours))]
    clutter = [_distractor(extra, height, width, colours[n_objects + i] if palette == "shared"
                           else tuple(int(c) for c in extra.integers(0, 256, size=3))) for i in range(distractors)]
    light = _lighting(extra, float(lighting), n_frames) if lighting else None
    frames, per_frame = [], []
    for t in range(n_frames):
        if t:
            for motion in motions:
                _step(rng, motion, height, width)
            for motion in clutter:
                _step(extra, motion, height, width)
        specs = [motion.spec for motion in motions]
        pixels = np.asarray(compose(background, [m.spec for m in clutter] + specs, side),
                            dtype=np.float32)[:height, :width]
        if light is not None:
            pixels = pixels * light[t, 0] + light[t, 1]
        pixels = pixels + NOISE_SIGMA * rng.standard_normal(pixels.shape, dtype=np.float32)
        frames.append(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        per_frame.append(_annotate(specs, height, width))
    tracks = [Track(i + 1, kinds[i], [entries[i] for entries in per_frame]) for i in range(n_objects)]
    return SyntheticVideo(f"shapes-video-{seed:04d}", frames, tracks)


def make_videos(n: int, seed: int, **kw) -> list[SyntheticVideo]:
    """``n`` videos: video ``i`` is ``make_video(seed + i, **kw)``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"shapes-video: the number of videos must be an integer >= 1 (got {n!r})")
    return [make_video(seed + i, **kw) for i in range(n)]
