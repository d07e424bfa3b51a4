"""What tests feed the show and its outputs: the tiny model's stream pipeline (the ``pipe``
fixture), a frame and a recognisable picture, and a tone that arrives in real time.

``from helpers_show import pipe`` in a test module makes the fixture available (tests/ is
on sys.path, as for ``xvfb`` and ``pulse``)."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from engine.stream import StreamConfig, StreamPipeline


@pytest.fixture
def pipe(tiny):
    """A prepared StreamPipeline on the session's tiny model, its hooks removed afterwards."""
    p = StreamPipeline(tiny, StreamConfig(prompt="neon"))
    p.prepare()
    yield p
    p.bender.remove()


@dataclass(frozen=True)
class Frame:  # the fields of live.show.mailbox.Frame that outputs read
    image: np.ndarray
    index: int
    capture_time: float
    rendered_time: float


def gradient(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """Picture ``i`` of a sequence: (h, w, 3) uint8, each one different from its neighbours."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 4 + i * 8) % 256, (yy * 5) % 256, np.full_like(xx, 40 + i % 100)], -1).astype(np.uint8)


class Tone:
    """An audio source with AudioInput's reader interface (``frames_received``,
    ``read_since``): a 440 Hz tone at amplitude 0.3, arriving in real time from creation."""

    def __init__(self, sample_rate: int = 44100):
        self.sample_rate = sample_rate
        self.start = time.monotonic()

    @property
    def frames_received(self) -> int:
        return int((time.monotonic() - self.start) * self.sample_rate)

    def read_since(self, position):
        now = self.frames_received
        t = np.arange(position, now) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), now
