"""The feature thread: the newest window of an audio source, every hop, to a FeatureFrame.

``FeatureThread`` reads from anything with the ``AudioSource`` interface declared here (a
sound card, ``live.audio.input.AudioInput``, or a file, ``live.audio.filesource.FileSource``),
runs the shared ``engine.features.FeatureExtractor`` and keeps the frames in a bounded ring
that the render thread reads (``latest()``, ``frames_since(t)``). A source that can lose
its device (a ``SupervisedSource``) also gets its ``check()`` called every half second, so
a pulled cable is noticed and recovered without the render thread ever waiting on the
sound card.

    features = FeatureThread(source)
    features.start()
    frame = features.latest()     # FeatureFrame; frame.time = capture time (monotonic s)
    features.stop()
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Protocol, runtime_checkable

import numpy as np

from engine.features import FeatureExtractor, FeatureFrame
from live.log_once import LogOnce

log = logging.getLogger("netbend.audio")  # one logger for the whole audio input side

__all__ = ["AudioSource", "FeatureThread", "JITTER_HISTORY", "SupervisedSource"]

JITTER_HISTORY = 1000   # hops of lateness kept for FeatureThread.jitter()


class AudioSource(Protocol):
    """What FeatureThread reads: AudioInput, FileSource, or a test's stand-in."""

    sample_rate: float

    def read_window(self, n: int) -> tuple[np.ndarray, float]:
        """The newest ``n`` samples, mono float32 (n,), and the capture time of the last one
        (monotonic s); silence stamped now while there is no audio. Never blocks."""
        ...


@runtime_checkable
class SupervisedSource(AudioSource, Protocol):
    """An AudioSource whose device can fail: ``check()`` notices and recovers (AudioInput
    reopens a lost stream), called from the feature thread, never from PortAudio's."""

    def check(self) -> str:
        """The source's state after looking at it (AudioInput: one of its STATES)."""
        ...


class FeatureThread(threading.Thread):
    """Every ``hop`` seconds: the newest ``window`` of the source -> one FeatureFrame.

    A frame's ``time`` is the capture time of its window's last sample. Frames go into a
    bounded ring (``capacity`` frames; the oldest drop off); ``latest()`` and
    ``frames_since(t)`` read it from any thread. The thread also calls ``source.check()``
    every ``check_every`` seconds. An exception in a hop is logged once (per kind) and the
    next hop runs; ``stop()`` sets the stop Event and joins.
    """

    def __init__(self, source: AudioSource, *, hop: float = 0.01, window: float = 0.05,
                 capacity: int = 1000, check_every: float = 0.5, taper: str = "hann"):
        super().__init__(name="netbend-features", daemon=True)
        self.source = source
        self.extractor = FeatureExtractor(source.sample_rate, window=window, hop=hop, taper=taper)
        self.hop = self.extractor.hop
        self.check_every = float(check_every)
        self._frames: deque[FeatureFrame] = deque(maxlen=int(capacity))
        self._stop_event = threading.Event()
        self._lateness = np.zeros(JITTER_HISTORY)  # s each hop woke after it was due
        self.hops = 0
        self.skipped_hops = 0
        self.errors = 0
        self._log_once = LogOnce(log)

    def run(self) -> None:
        n = self.extractor.window_length
        check = self.source.check if isinstance(self.source, SupervisedSource) else None
        due = time.monotonic()
        next_check = due
        while not self._stop_event.is_set():
            now = time.monotonic()
            self._lateness[self.hops % JITTER_HISTORY] = now - due
            self.hops += 1
            try:
                if check is not None and now >= next_check:
                    next_check = now + self.check_every
                    check()
                samples, captured = self.source.read_window(n)
                self._frames.append(self.extractor.process(samples, captured))
            except Exception as e:  # a bad hop must never end the features
                self.errors += 1
                self._log_once((type(e).__name__, str(e)), logging.ERROR,
                               "feature thread: %s: %s (logged once; carrying on)", type(e).__name__, e,
                               exc_info=True)
            due += self.hop
            late = time.monotonic() - due
            if late > self.hop:  # far behind: skip the missed hops rather than burst
                missed = int(late // self.hop)
                self.skipped_hops += missed
                due += missed * self.hop
            wait = due - time.monotonic()
            if wait > 0:
                self._stop_event.wait(wait)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop_event.set()
        if self.ident is not None:
            self.join(timeout)

    def latest(self) -> FeatureFrame | None:
        try:
            return self._frames[-1]
        except IndexError:
            return None

    def frames_since(self, t: float) -> list[FeatureFrame]:
        """Frames captured after time t (monotonic s), oldest first."""
        return [f for f in self._frames.copy() if f.time > t]

    def jitter(self) -> dict[str, float]:
        """How late the hops woke (s): p50, p95, p99, max over the last JITTER_HISTORY hops."""
        late = self._lateness[:min(self.hops, JITTER_HISTORY)]
        if not len(late):
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
        p50, p95, p99 = np.percentile(late, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(late.max())}
