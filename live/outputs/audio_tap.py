"""The input audio as an output sees it: every sample since the output started, in order.

Wraps an audio source with AudioInput's reader interface (``read_since(position) ->
(samples, next position)``, ``frames_received``, ``sample_rate``); each output keeps its
own position, so a recording and an NDI feed read the same ring without disturbing each
other or the take recorder. Samples lost to a ring overrun (the reader was away longer
than the ring lasts) come back as silence of the same length, so what follows stays in
sync with the picture.
"""
from __future__ import annotations

import numpy as np

__all__ = ["AudioTap"]


class AudioTap:
    def __init__(self, source) -> None:
        for need in ("read_since", "frames_received", "sample_rate"):
            if not hasattr(source, need):
                raise ValueError(f"{type(source).__name__} cannot feed an output's audio: it has no {need}")
        self.source = source
        self.sample_rate = int(source.sample_rate)
        self._position = None
        self.samples_read = 0  # since start, silence for lost samples included
        self.lost = 0  # samples of silence put in for an overrun

    def start(self, back_s: float = 0.0) -> None:
        """Read from now on, or from ``back_s`` seconds ago (what the ring still holds)."""
        self._position = max(0, int(self.source.frames_received) - int(round(back_s * self.sample_rate)))
        self.samples_read = 0

    @property
    def position(self) -> int:
        """The source's absolute sample number the next read starts at."""
        return self._position

    def read(self) -> np.ndarray:
        """(n,) float32 mono: everything that arrived since the last read."""
        if self._position is None:
            self.start()
        before = self._position
        samples, self._position = self.source.read_since(before)
        samples = np.asarray(samples, np.float32).reshape(-1)
        gap = (self._position - before) - len(samples)
        if gap > 0:
            self.lost += gap
            samples = np.concatenate([np.zeros(gap, np.float32), samples])
        self.samples_read += len(samples)
        return samples
