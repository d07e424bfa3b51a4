"""Ctrl-C, SIGTERM and SIGHUP end the show cleanly: ``StopSignals``.

While installed, the first of these signals sets the show's stop Event (every thread then
ends and is joined) instead of raising wherever the main thread happens to be, and puts
the previous handlers back, so a second one acts as usual (KeyboardInterrupt, exit). Only
the main thread can install handlers; elsewhere it installs nothing and records nothing.

    signals = StopSignals(stop).install()
    try:
        ...                       # signals.caught: the signal's name once one arrived
    finally:
        signals.restore()
"""
from __future__ import annotations

import signal
import threading
from typing import Optional

__all__ = ["StopSignals"]

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class StopSignals:
    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.caught: Optional[str] = None  # "SIGINT" … once one arrived
        self._previous: dict = {}

    def install(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for name in STOP_SIGNALS:
                number = getattr(signal, name, None)  # Windows has no SIGHUP
                if number is not None:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.caught = signal.Signals(signum).name
        self.stop.set()
        self.restore()  # a second signal: the default action

    def restore(self) -> None:
        """Put the previous handlers back; safe to call more than once."""
        for number, previous in self._previous.items():
            try:
                signal.signal(number, previous)
            except (ValueError, OSError):  # not the main thread any more, or a handler Python cannot set
                pass
        self._previous = {}
