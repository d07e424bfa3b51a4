"""The lock-free ring an input stream records into: ``InputRing``.

One writer (PortAudio's callback thread, through ``AudioInput._callback``) and readers on
other threads, with no lock between them: the writer says where it is about to write
(``writing_to``) before copying a block and publishes ``head = (frames written, capture
time of the newest sample, callback time)`` as one tuple after; a reader copies a span and
keeps it only if the writer cannot have reached it meanwhile (``copy`` returns None
otherwise, and the reader tries again).

Capture time of a block's newest sample: the host API's ``inputBufferAdcTime`` mapped
onto time.monotonic() (its age ``currentTime - adc`` subtracted from the callback's
monotonic time) when it reports one no older than the ring; otherwise the callback's
monotonic time minus the block's duration. Stamps never go backwards. Measured with
ALSA's pulse plugin: the report is right (~2 ms) once a stream runs, but for about a
second after a stream opens on an idle PulseAudio sink it claims 0.5-0.7 s.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

__all__ = ["InputRing"]


class InputRing:
    """``size`` frames of ``channels`` float32 samples, preallocated, written in place."""

    def __init__(self, size: int, channels: int, sample_rate: float):
        self.size = int(size)
        self.channels = int(channels)
        self.sample_rate = sample_rate
        self._frames = np.zeros((self.size, self.channels), np.float32)  # (frames, channels)
        # (frames written, newest sample's capture time, monotonic time of that callback)
        self.head: tuple[int, float, float] = (0, -math.inf, -math.inf)
        self.writing_to = 0
        self.delay = 0.0  # how old the newest sample was when its block arrived (s)
        self.retries = 0  # copies dropped because the writer reached their span

    def write(self, indata: np.ndarray, frames: int, adc_time: float, current_time: float, now: float) -> None:
        """The callback's whole job: copy the block in, stamp it, publish the new head."""
        written, previous, _ = self.head
        if frames > self.size:  # never at sane block sizes; keep the newest part
            indata, written = indata[frames - self.size:], written + frames - self.size
            frames = self.size
        start = written % self.size
        first = min(frames, self.size - start)
        self.writing_to = written + frames
        self._frames[start:start + first] = indata[:first]
        if first < frames:
            self._frames[:frames - first] = indata[first:]
        newest = now - frames / self.sample_rate
        if adc_time > 0.0:  # 0 where the host API does not know; then the block-length guess
            age = current_time - adc_time - (frames - 1) / self.sample_rate
            if 0.0 <= age <= self.size / self.sample_rate:
                newest = now - age
        self.delay = now - newest
        self.head = (written + frames, max(newest, previous), now)

    def copy(self, end: int, take: int) -> Optional[np.ndarray]:
        """Frames ``end - take .. end`` (absolute numbers, ``end`` <= frames written) as a new
        (take, channels) array; None if the writer may have overwritten part of them while
        they were copied (the caller reads the head again and retries)."""
        start = (end - take) % self.size
        first = min(take, self.size - start)
        block = np.empty((take, self.channels), np.float32)  # (take, channels)
        block[:first] = self._frames[start:start + first]
        block[first:] = self._frames[:take - first]
        if self.writing_to - end <= self.size - take:
            return block  # nothing we copied was being overwritten
        self.retries += 1
        return None
