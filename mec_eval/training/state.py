"""A trained task's ``workdir/state.pt``: the weights training changes plus the engine's state."""
from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import torch

from mec_eval.utils import UserError, atomic_torch_save


class StateFile:
    """The :class:`~mec_eval.training.engine.StateStore` of trained tasks, one atomic ``torch.save`` file.

    ``weights()`` gives what to keep (e.g. the head only for a frozen probe); ``load_weights(state)``
    restores it (strict: a key that is missing or left over is an error).
    """

    def __init__(self, path: Path, weights: Callable[[], dict], load_weights: Callable[[dict], None]):
        self.path, self.weights, self.load_weights = Path(path), weights, load_weights

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            self.load_weights(state.pop("model"))
            return state
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError, EOFError,
                pickle.UnpicklingError) as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
            raise UserError(f"cannot resume from {self.path} ({reason}); delete it to start this run over") from None

    def save(self, state: dict, epochs_done: int | None) -> None:
        atomic_torch_save({**state, "model": self.weights()}, self.path)  # the iteration says where
