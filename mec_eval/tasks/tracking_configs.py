"""Typed configs of the UniTrack MOT, MOTS and PoseTrack tasks (torch-free, as :mod:`mec_eval.tasks.configs`).

Defaults are UniTrack's values (github Zhongdao/UniTrack ``config/imagenet_resnet18_s3.yaml``, sections
``mot`` / ``mots`` / ``posetrack``); the task YAMLs cite each one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mec_eval.config import EvalRunConfig, Rule, checked
from mec_eval.tasks.video_configs import (
    SHAPES_MAX_DISTRACTORS,
    SHAPES_MAX_PALETTE_JITTER,
    SHAPES_PALETTE_JITTER,
    SHAPES_PALETTES,
)


@dataclass
class TrackingDataConfig:
    name: str = "mot16"             # mot16 | mots20 | posetrack2018 | shapes-video (synthetic, written on first use)
    root: Optional[str] = None      # dataset root; for shapes-video where to write it (default: RUNS/.cache)
    sequences: list = field(default_factory=list)  # sequence names; empty: all under the root
    detections: Optional[str] = None  # folder of <seq>.txt / <seq>.json given observations; None: the dataset's own
    image_size: list = checked(factory=lambda: [1088, 608], items=Rule(ge=32, le=4096), min_items=2)
                                    # letterbox target (width, height) of the MOT frames (UniTrack img_size)
    max_cells: int = checked(200, ge=1)  # masked embeddings: mask area rescaled to at most this many cells
    min_box_area: float = checked(0.0, ge=0)  # output boxes smaller than this (pixels^2) are not written
    synthetic_videos: int = checked(3, ge=1, le=100)   # shapes-video: number of videos
    synthetic_frames: int = checked(24, ge=2, le=1000)  # shapes-video: frames per video
    synthetic_objects: int = checked(3, ge=1, le=6)     # shapes-video: objects per video (distinct kinds)
    synthetic_crossing_miss: float = checked(0.0, ge=0, le=1)  # shapes-video: miss rate of overlapping objects
    # shapes-video nuisances (mec_eval.data.shapes_video.make_video): "shared" draws every object and distractor
    # in one near-identical colour (synthetic_palette_jitter apart), so hue never tells the objects apart; moving
    # clutter behind them
    synthetic_palette: str = checked("distinct", choices=SHAPES_PALETTES)
    synthetic_distractors: int = checked(0, ge=0, le=SHAPES_MAX_DISTRACTORS)
    # shared palette: how far (per channel) each object's colour strays from the video's; 0: one colour
    synthetic_palette_jitter: int = checked(SHAPES_PALETTE_JITTER, ge=0, le=SHAPES_MAX_PALETTE_JITTER)


@dataclass
class TrackingModelConfig:
    layer: int = checked(0, choices=(0, 3, 4))  # 3: layer3 features, 4: layer4; 0: both (two runs, expand())
    batch_size: int = checked(8, ge=1)          # frames per forward pass


@dataclass
class AssociationConfig:
    motion: bool = True
    motion_lambda: float = checked(0.98, ge=0, le=1)
    motion_gated: bool = True
    only_position: bool = False
    match_thresh: float = checked(0.7, gt=0)
    iou_thresh: float = checked(0.5, gt=0, le=1)
    unconfirmed_thresh: float = checked(0.7, gt=0, le=1)
    dup_iou_thresh: float = checked(0.15, ge=0, le=1)
    new_track_thresh: float = 0.5
    track_buffer: int = checked(30, ge=1)
    frame_rate: float = checked(30.0, gt=0, le=1000)
    temperature: float = checked(0.01, gt=0)
    roi_size: list = checked(factory=lambda: [4, 10], items=Rule(ge=1, le=64), min_items=2)  # roi_align output


@dataclass
class TrackingConfig:
    protocol: str                   # required: "paper" or "fast" (set in tasks/*.yaml)
    data: TrackingDataConfig = field(default_factory=TrackingDataConfig)
    model: TrackingModelConfig = field(default_factory=TrackingModelConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    run: EvalRunConfig = field(default_factory=EvalRunConfig)


MOTConfig = MOTSConfig = PoseTrackConfig = TrackingConfig
TRACKING_CONFIGS = {"mot": TrackingConfig, "mots": TrackingConfig, "posetrack": TrackingConfig}
