"""Logging each distinct problem once, at a bounded rate: ``LogOnce``.

A show runs for hours, and a bad OSC sender, a flaky driver or a failing output can repeat
the same error thousands of times a second. Each gets one line per distinct key (the
address and reason, the exception's type and text), at most a few new lines a second in
all, each line cut to MAX_LOG_LINE characters, and a count of what was held back.

    log_once = LogOnce(log)
    log_once((address, reason), logging.WARNING, "OSC %s refused: %s", address, reason)
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable

__all__ = ["LogOnce", "MAX_LOG_LINE", "shorten"]

MAX_LOG_LINE = 300  # characters of one log line (a 60 KB bad address is not logged whole)


def shorten(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters, with an ellipsis where it was cut."""
    return text if len(text) <= n else text[:n] + "…"


class LogOnce:
    """Logs each distinct key once, at most ``per_second`` new lines a second overall, each
    at most MAX_LOG_LINE characters. Memory is bounded: keys are short (callers cut them)
    and the oldest are forgotten past ``limit``."""

    def __init__(self, logger: logging.Logger, limit: int = 1024, per_second: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self._log, self._limit, self._rate, self._clock = logger, limit, per_second, clock
        self._seen: OrderedDict[Any, None] = OrderedDict()
        self._tokens, self._last, self._dropped = per_second, clock(), 0
        self._lock = threading.Lock()  # the server, render and feature threads all log here

    def __call__(self, key: Any, level: int, msg: str, *args: Any, exc_info: bool = False) -> bool:
        key = tuple(shorten(k, 120) if isinstance(k, str) else k for k in key) if isinstance(key, tuple) else key
        with self._lock:
            if key in self._seen:
                return False
            now = self._clock()
            self._tokens = min(self._rate, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1.0:
                self._dropped += 1  # not marked seen: it is logged once the burst is over
                return False
            self._tokens -= 1.0
            self._seen[key] = None
            if len(self._seen) > self._limit:
                self._seen.popitem(last=False)
            dropped, self._dropped = self._dropped, 0
        try:
            text = msg % args if args else msg
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        text = shorten(text, MAX_LOG_LINE)
        if dropped:
            text += f" ({dropped} more lines not logged: too many at once)"
        self._log.log(level, "%s", text, exc_info=exc_info)
        return True
