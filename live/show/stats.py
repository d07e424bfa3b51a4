"""The show's numbers and its HUD text: ``ShowStats``.

What the render thread counts (frames, their times, audio-to-frame latency, failed frames,
refused commands, the last problem) and how the HUD shows it, kept apart from the loop
that produces them. Refused commands and failed frames are different things: a patcher
sending a bad address is not a render problem, so they are counted apart.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Optional

import numpy as np

__all__ = ["ShowStats", "percentile"]

HUD_METERS = ("rms", "bass", "mid", "high")


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


class ShowStats:
    """Counters and recent timings of one show; written by the render thread, read by any."""

    def __init__(self, log: logging.Logger):
        self._log = log
        self._seen: set[str] = set()
        self.frames = 0
        self.frame_errors = 0
        self.commands_refused = 0
        self.last_error: Optional[str] = None
        self.frame_times: deque = deque(maxlen=600)
        self.latencies: deque = deque(maxlen=6000)  # capture -> frame ready, seconds

    def frame_done(self, ready: float, capture_time: float) -> None:
        self.frames += 1
        self.frame_times.append(ready)
        self.latencies.append(ready - capture_time)

    def frame_failed(self, key: str, message: str) -> None:
        self.frame_errors += 1
        self._problem(key, message, message)

    def refused(self, key: str, message: str, shown: str) -> None:
        """A command the show refused: ``message`` for the log, ``shown`` for the HUD."""
        self.commands_refused += 1
        self._problem(key, message, shown)

    def _problem(self, key: str, message: str, shown: str) -> None:
        self.last_error = shown
        if key not in self._seen:  # a patcher can send the same mistake 100 times a second
            self._seen.add(key)
            self._log.error("%s", message)

    @property
    def fps(self) -> float:
        t = self.frame_times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def as_dict(self) -> dict:
        lat = list(self.latencies)
        return {"frames": self.frames, "fps": round(self.fps, 2),
                "latency_ms_p50": round(1000 * percentile(lat, 50), 1),
                "latency_ms_p95": round(1000 * percentile(lat, 95), 1),
                "frame_errors": self.frame_errors, "commands_refused": self.commands_refused}

    def hud_lines(self, state, features, bends, upload_path: str) -> list[str]:
        """The show's HUD: what renders and how fast, what it is, what drives it, what went wrong."""
        recent = list(self.latencies)[-120:]
        flags = ("   REC" if state.recording else "") + ("   FROZEN" if state.frozen else "")
        lines = [f"render  {self.fps:5.1f} fps   audio->frame p50 {1000 * percentile(recent, 50):.0f} ms{flags}",
                 f"preset {state.preset or '-'}", f"prompt {state.prompt}"]
        if features is not None:
            lines.append("  ".join(f"{n} {'#' * int(min(1.0, features[n] * 4) * 10):10s}" for n in HUD_METERS))
        lines.append(f"upload: {upload_path}")
        lines += [f"{i + 1}. {b}" for i, b in enumerate(bends)]
        if self.last_error:
            lines.append(f"error {self.last_error}")
        return lines
