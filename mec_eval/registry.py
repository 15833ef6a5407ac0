"""Name -> constructor registries with close-match errors, in the style of timm's ``list_models``."""
from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from mec_eval.utils import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of builders; ``get`` fails with the close matches for a typo."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator: ``@REG.register("name", help="one line")``."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            doc = help or (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self._help[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"unknown {self.kind} '{name}'{hint} (known: {', '.join(sorted(self._items))})")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self) -> list[tuple[str, str]]:
        """(name, one-line help) for ``mec-eval list``."""
        return [(name, self._help[name]) for name in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._items
