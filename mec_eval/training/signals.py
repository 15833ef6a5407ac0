"""Stop-at-the-next-iteration on SIGTERM / SIGUSR1 (SLURM's pre-emption and time-limit warnings)."""
from __future__ import annotations

import signal
import threading
from typing import Self

from mec_eval.utils import UserError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(UserError):
    """Training stopped on a signal after saving its state; re-running the same command resumes it."""


class StopFlag:
    """Context manager: while active, SIGTERM / SIGUSR1 set ``received`` instead of killing the process.

    The loop polls the flag at each iteration boundary, saves and stops. Handlers are installed
    only in the main thread (Python delivers signals there) and the previous ones are restored on exit.
    """

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
