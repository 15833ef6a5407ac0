"""Video frames read from image files on access, so a long sequence is never held in memory (OTB, MOT, MOTS)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mec_eval.utils import UserError


class LazyFrames(Sequence):
    """PIL RGB frames of ``paths``; ``missing_hint`` says why a missing file was expected (e.g. seqinfo.ini)."""

    def __init__(self, paths: list[Path], missing_hint: str = ""):
        self.paths = list(paths)
        self.missing_hint = missing_hint

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except FileNotFoundError:
            hint = f" ({self.missing_hint})" if self.missing_hint else ""
            raise UserError(f"frame {path} is missing{hint}") from None
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise UserError(f"frame {path} cannot be read ({type(err).__name__}); the file is corrupt or "
                            "truncated") from None
