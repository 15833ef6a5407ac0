"""Typed, torch-free configs of the UniTrack SOT and VOS tasks (values: tasks/sot.yaml, tasks/vos.yaml).

``model.layer`` 0 stands for both UniTrack feature layers: ``expand()`` turns it into one run with
``model.layer=3`` and one with ``model.layer=4`` (MEC Table 4 reports [layer3 / layer4] per cell).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mec_eval.config import EvalRunConfig, Rule, checked
from mec_eval.utils import UserError


# shapes-video nuisance ranges of mec_eval.data.shapes_video (PALETTES, MAX_DISTRACTORS), repeated here because
# that module imports torch and config errors answer without it; the MOT-family configs read them from here too.
SHAPES_PALETTES = ("distinct", "shared")
SHAPES_MAX_DISTRACTORS = 16
SHAPES_PALETTE_JITTER, SHAPES_MAX_PALETTE_JITTER = 12, 64


@dataclass
class ShapesVideoParams:
    """The synthetic ``shapes-video`` set: make_videos(videos, seed, n_frames, (height, width), objects, palette=,
    distractors=, lighting=, palette_jitter=); the defaults are the easy set, shapes_video.HARD the hard one."""
    videos: int = checked(4, ge=1, le=1000)
    frames: int = checked(24, ge=3, le=1000)
    height: int = checked(96, ge=32, le=1024)
    width: int = checked(128, ge=32, le=1024)
    objects: int = checked(3, ge=1, le=10)
    seed: int = checked(0, ge=0, le=2 ** 31 - 1)
    palette: str = checked("distinct", choices=SHAPES_PALETTES)  # shared: one colour for every object
    distractors: int = checked(0, ge=0, le=SHAPES_MAX_DISTRACTORS)  # moving clutter blobs / lines behind the objects
    lighting: float = checked(0.0, ge=0, le=0.5)         # amplitude of the per-frame brightness / contrast drift
    # shared palette: per-channel colour spread; 0: one colour
    palette_jitter: int = checked(SHAPES_PALETTE_JITTER, ge=0, le=SHAPES_MAX_PALETTE_JITTER)

    def arguments(self) -> dict:
        return {"n_videos": self.videos, "seed": self.seed, "n_frames": self.frames,
                "size": [self.height, self.width], "n_objects": self.objects, "palette": self.palette,
                "distractors": self.distractors, "lighting": float(self.lighting),
                "palette_jitter": self.palette_jitter}


@dataclass
class VideoDataConfig:
    name: str = "otb2015"           # otb2015 (sot) / davis2017 (vos) read from root, or shapes-video (written)
    root: str | None = None
    split: str = checked("val", choices=("train", "val"))  # DAVIS ImageSets/2017 list
    sequences: list = checked(factory=list, items=Rule(pattern=r"[^/\\]{1,200}", pattern_help="a folder name"))
                                    # subset of sequence names; empty: all
    shapes: ShapesVideoParams = field(default_factory=ShapesVideoParams)


@dataclass
class VideoModelConfig:
    layer: int = checked(0, choices=(0, 3, 4))  # 0: both (expanded into two runs)


@dataclass
class SOTParams:
    padding: float = checked(3.5, ge=0, le=20)           # search window = target x (1 + padding)
    search_size: int = checked(520, ge=16, le=2048)      # window warped to search_size x search_size pixels
    num_scales: int = checked(3, ge=1, le=9)
    scale_step: float = checked(1.0275, ge=1, le=2)
    scale_penalty: float = checked(0.985, gt=0, le=1)
    min_scale: float = checked(0.2, gt=0, le=1)          # target size clamped to [min, max] x the initial one
    max_scale: float = checked(5.0, ge=1, le=100)
    template: int = checked(14, ge=0, le=256)            # XCorr template: central cells of the first window;
                                                         # 0: cells / (1 + padding), the target's extent
    response_scale: float = checked(0.1, gt=0)           # XCorr response multiplier
    dcf_lambda: float = checked(1e-4, gt=0)              # DCF ridge regulariser
    sigma_factor: float = checked(0.1, gt=0, le=10)      # DCF label sigma = cells / (1 + padding) x factor
    dcf_lr: float = checked(0.01, ge=0, le=1)            # DCF template / alpha update rate


@dataclass
class VOSParams:
    context: int = checked(5, ge=0, le=100)              # previous predicted frames besides the first one
    temperature: float = checked(0.05, gt=0)             # affinity = dot / temperature
    radius: float = checked(12.0, gt=0)                  # previous frames: keys within this many cells
    topk: int = checked(10, ge=1, le=10000)
    chunk: int = checked(8, ge=1, le=4096)               # query rows of the feature map per affinity block


@dataclass
class SOTConfig:
    protocol: str                   # required: "paper" or "fast" (set in tasks/*.yaml)
    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    model: VideoModelConfig = field(default_factory=VideoModelConfig)
    sot: SOTParams = field(default_factory=SOTParams)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)

    def check_config(self, prefix: str) -> None:
        _check_dataset(self.data.name, ("otb2015", "shapes-video"), prefix)
        if self.sot.min_scale > self.sot.max_scale:
            raise UserError(f"config key '{prefix}sot.min_scale' must be <= '{prefix}sot.max_scale'")


@dataclass
class VOSConfig:
    protocol: str                   # required: "paper" or "fast" (set in tasks/*.yaml)
    data: VideoDataConfig = field(default_factory=lambda: VideoDataConfig(name="davis2017"))
    model: VideoModelConfig = field(default_factory=VideoModelConfig)
    vos: VOSParams = field(default_factory=VOSParams)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)

    def check_config(self, prefix: str) -> None:
        _check_dataset(self.data.name, ("davis2017", "shapes-video"), prefix)


def _check_dataset(name: str, allowed: tuple[str, ...], prefix: str) -> None:
    if name not in allowed:
        raise UserError(f"config key '{prefix}data.name' must be {' or '.join(allowed)}, got {name!r}")
