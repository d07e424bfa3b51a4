"""The show's tempo: set over OSC, tapped, or followed from an Ableton Link session; and the
beat features (engine/beat.py) that mappings use like audio features.

    tempo = Tempo(120.0)                      # or LinkTempo(120.0).start() to join a Link session
    tempo.command("/netbend/tempo/tap", ())   # key T too
    tempo.features()                          # {"beat_phase": …, "bar_phase": …, "beat": …, "lfo_sine": …}
    tempo.next_boundary("bar")                # when the next bar starts (for quantised changes)

OSC:  /netbend/tempo f (BPM, 20..300)   /netbend/tempo/tap   /netbend/tempo/lock i (1 holds the
tempo: taps are ignored, so a steady tempo survives a stray tap).

A tap sets the tempo from the median gap of the last taps (at least two, gaps under 2 s) and
puts the downbeat on the tap. With Link, the session's tempo and beat are the show's: a
tempo set here is proposed to the session, and what the session says wins.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from statistics import median
from typing import Callable, Optional

from engine.beat import beat_features
from live.control.loop_thread import LoopThread

log = logging.getLogger("netbend.tempo")

BPM_RANGE = (20.0, 300.0)
TAP_GAP_S = 2.0   # a longer pause starts a new series of taps
TAPS = 8          # the last this many taps count


def check_bpm(value, what: str = "/netbend/tempo") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} takes a number of BPM; got {value!r}")
    if not BPM_RANGE[0] <= value <= BPM_RANGE[1]:
        raise ValueError(f"{what} must be {BPM_RANGE[0]:g}..{BPM_RANGE[1]:g} BPM; got {value:g}")
    return float(value)



def tapped_bpm(taps, now: float) -> Optional[float]:
    """Add a tap at ``now`` to ``taps`` (a deque, cleared after a long pause) and return the
    tempo of their median gap, within BPM_RANGE, once there are two; else None."""
    if taps and now - taps[-1] > TAP_GAP_S:
        taps.clear()
    taps.append(now)
    if len(taps) < 2:
        return None
    gaps = [b - a for a, b in zip(taps, list(taps)[1:])]
    return min(max(60.0 / median(gaps), BPM_RANGE[0]), BPM_RANGE[1])

class Tempo:
    """A tempo clock: beats since an origin, at ``bpm``; thread-safe."""

    def __init__(self, bpm: float = 120.0, beats_per_bar: int = 4, clock: Callable[[], float] = time.monotonic):
        self._bpm = check_bpm(bpm, "tempo")
        self.beats_per_bar = beats_per_bar
        self.clock = clock
        self._origin = clock()  # the time of beat 0
        self._base = 0.0        # beats at the origin
        self._taps: deque[float] = deque(maxlen=TAPS)
        self.locked = False
        self._lock = threading.Lock()
        self.on_change: list[Callable[[float], None]] = []

    @property
    def bpm(self) -> float:
        return self._bpm

    def beat(self, now: Optional[float] = None) -> float:
        now = self.clock() if now is None else now
        with self._lock:
            return self._base + (now - self._origin) * self._bpm / 60.0

    def set_bpm(self, bpm: float, now: Optional[float] = None) -> None:
        """A new tempo from now on, the beat position continuous (no jump in the phases)."""
        bpm = check_bpm(bpm)
        now = self.clock() if now is None else now
        position = self.beat(now)
        with self._lock:
            self._base, self._origin, self._bpm = position, now, bpm
        for callback in self.on_change:
            callback(bpm)

    def tap(self, now: Optional[float] = None) -> Optional[float]:
        """One tap; returns the new BPM once two taps make a gap, else None."""
        now = self.clock() if now is None else now
        if self.locked:
            return None
        bpm = tapped_bpm(self._taps, now)
        if bpm is None:
            return None
        self.set_bpm(bpm, now)
        self._downbeat_on_tap()
        return bpm

    def _downbeat_on_tap(self) -> None:
        with self._lock:  # set_bpm just put the origin on the tap
            self._base = float(round(self._base))

    def command(self, address: str, args: tuple) -> None:
        """Carry out a /netbend/tempo* message; ValueError with the reason for a bad one."""
        if address == "/netbend/tempo":
            if len(args) != 1:
                raise ValueError(f"/netbend/tempo takes one number of BPM; got {len(args)} argument(s)")
            self.set_bpm(check_bpm(args[0]))
        elif address == "/netbend/tempo/tap":
            if args:
                raise ValueError(f"/netbend/tempo/tap takes no arguments; got {len(args)}")
            self.tap()
        elif address == "/netbend/tempo/lock":
            if len(args) != 1 or isinstance(args[0], bool) or args[0] not in (0, 1):
                raise ValueError(f"/netbend/tempo/lock takes 0 or 1; got {list(args)!r}")
            self.locked = bool(args[0])
        else:
            raise ValueError(f"unknown tempo address {address!r}")

    def features(self, now: Optional[float] = None) -> dict[str, float]:
        return beat_features(self.beat(now), self.beats_per_bar)

    def next_boundary(self, unit: str, now: Optional[float] = None) -> float:
        """The clock time of the next beat ("beat") or bar ("bar") after ``now``."""
        now = self.clock() if now is None else now
        length = 1 if unit == "beat" else self.beats_per_bar
        position = self.beat(now)
        target = (math.floor(position / length) + 1) * length
        return now + (target - position) * 60.0 / self.bpm

    def values(self) -> dict:
        """For state replies and OSCQuery."""
        return {"/netbend/tempo": self.bpm, "/netbend/tempo/lock": int(self.locked)}


class LinkTempo(Tempo):
    """A Tempo that follows an Ableton Link session (aalink) and proposes tempo changes to it.

    The Link object lives on its own thread's asyncio loop; the show reads the session's
    tempo and beat from any thread."""

    def __init__(self, bpm: float = 120.0, beats_per_bar: int = 4, clock: Callable[[], float] = time.monotonic):
        super().__init__(bpm, beats_per_bar, clock)
        self._link = None
        self._loop = LoopThread("netbend-link", self._session)

    def start(self) -> "LinkTempo":
        try:
            import aalink  # noqa: F401
        except ImportError:
            raise ValueError("--link needs the aalink package (pip install aalink)") from None
        try:
            self._loop.start()
        except Exception as e:
            raise ValueError(f"cannot join an Ableton Link session: {e}") from None
        log.info("Ableton Link on at %.1f BPM", self._bpm)
        return self

    @contextlib.asynccontextmanager
    async def _session(self):
        import warnings

        from aalink import Link

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # aalink 0.2 still wants the loop
            self._link = Link(self._bpm, asyncio.get_running_loop())
        self._link.quantum = self.beats_per_bar
        self._link.enabled = True
        try:
            yield
        finally:
            self._link.enabled = False

    def stop(self) -> None:
        self._loop.stop()

    @property
    def peers(self) -> int:
        return int(self._link.num_peers) if self._link is not None else 0

    @property
    def bpm(self) -> float:
        return float(self._link.tempo) if self._link is not None else self._bpm

    def beat(self, now: Optional[float] = None) -> float:
        if self._link is None:
            return super().beat(now)
        return float(self._link.beat)  # the session's beat, now

    def set_bpm(self, bpm: float, now: Optional[float] = None) -> None:
        bpm = check_bpm(bpm)
        if self._link is not None:
            self._loop.call(setattr, self._link, "tempo", bpm)
        self._bpm = bpm
        for callback in self.on_change:
            callback(bpm)

    def _downbeat_on_tap(self) -> None:
        pass  # the session's beat is everyone's: a tap changes the tempo, not the downbeat


class TempoFeatures:
    """A feature source with the beat features added to every frame, so a mapping can use
    ``beat_phase`` like ``rms``. Wraps the audio feature source (or none)."""

    def __init__(self, source, tempo: Tempo):
        self.source, self.tempo = source, tempo

    def latest(self):
        from engine.features import FEATURE_NAMES, FeatureFrame

        frame = self.source.latest() if self.source is not None else None
        now = self.tempo.clock()
        values = dict(frame.values) if frame is not None else {n: 0.0 for n in FEATURE_NAMES}
        values.update(self.tempo.features(now))
        return FeatureFrame(frame.time if frame is not None else now, values)

    def __getattr__(self, name):  # frames_since, stop … of the audio source
        if self.source is None:
            raise AttributeError(name)
        return getattr(self.source, name)
