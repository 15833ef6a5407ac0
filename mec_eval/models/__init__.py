"""Backbones, projection heads, the EMA teacher and the Siamese pre-training network."""
from mec_eval.models.backbones import BACKBONES, build_backbone
from mec_eval.models.heads import build_predictor, build_projector
from mec_eval.models.siamese import SiameseNetwork
from mec_eval.models.teacher import EMATeacher, cosine_momentum

__all__ = ["BACKBONES", "build_backbone", "build_projector", "build_predictor", "EMATeacher",
           "cosine_momentum", "SiameseNetwork"]
