"""The graceful stop: SIGINT or SIGTERM sets a flag; the trainer stops at the end of its step and saves.

Installed first thing in the trainer process (before the slow imports), so a stop
that arrives in the first second is honoured too. The trainer ignores SIGHUP: it
must outlive the terminal that started it.
"""

from __future__ import annotations

import signal
from typing import Any


class StopRequest:
    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def install(self) -> StopRequest:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
