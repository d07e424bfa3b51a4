"""Rehearsal takes: everything the show did, on disk, so it can be replayed or re-rendered.

A take is a folder:

    take.json         what it is: start time, the state it began from, feature names, audio rate
    commands.jsonl    every applied command, one JSON object a line: {"t", "address", "args", "source"}
    features.f64      the feature stream, rows of [t, feature values...] as raw float64
    audio.f32         (optional) the input audio, mono float32 samples at the take's rate

All of them are written by the recorder's own thread (the render thread never waits for
a disk): take.json once, atomically and fsynced (engine/atomic.py); the others append-only,
flushed and fsynced at least once a second, so killing the app mid-take leaves a readable
take up to the last second: a torn last line or row is dropped on reading. Times are
seconds since the take started, on the show clock.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from engine.atomic import write_atomically
from live.control.state import Command, ShowState

FLUSH_EVERY_S = 0.5  # under the promised one second, with margin for a slow disk
FORMAT = 1


class TakeError(ValueError):
    """An unreadable or mismatched take; the message names the folder and the file."""


class TakeRecorder:
    """Writes a take. The render thread owns it; the files are written, flushed and fsynced
    on the recorder's own thread, so a slow disk never holds a frame.

    ``command``, ``features`` and ``audio`` only hand bytes to the writer thread; it
    flushes and fsyncs every FLUSH_EVERY_S of wall time while the take runs. ``close``
    (``wait=False`` on the render thread) finishes the files; ``close(wait=True)``, or
    leaving a ``with`` block, returns once everything is on disk.
    """

    def __init__(self, folder, *, start_state: ShowState, feature_names: Sequence[str],
                 audio_rate: Optional[int] = None, clock=time.monotonic, note: str = "",
                 model: Optional[str] = None, size: Optional[tuple[int, int]] = None):
        self.folder = Path(folder)
        if self.folder.exists() and any(self.folder.iterdir()):
            raise TakeError(f"take folder {self.folder} is not empty; takes are never overwritten")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self.start = clock()
        self.feature_names = list(feature_names)
        meta = {"format": FORMAT, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "note": note,
                "model": model, "size": list(size) if size else None,
                "feature_names": self.feature_names, "audio_rate": audio_rate,
                "start_state": start_state.to_dict()}
        self._meta = json.dumps(meta, indent=1)  # written (atomically, fsynced) by the writer thread
        self._files = {"commands": open(self.folder / "commands.jsonl", "ab"),
                       "features": open(self.folder / "features.f64", "ab")}
        if audio_rate:
            self._files["audio"] = open(self.folder / "audio.f32", "ab")
        self._queue: "queue.SimpleQueue[Optional[tuple[str, bytes]]]" = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="netbend-take", daemon=True)
        self._writer.start()
        self.closed = False

    @property
    def records_audio(self) -> bool:
        return "audio" in self._files

    def now(self) -> float:
        return self._clock() - self.start

    def command(self, command: Command) -> None:
        """Record an applied command; its time becomes take-relative."""
        row = Command(command.address, command.args, command.time - self.start, command.source)
        self._queue.put(("commands", (json.dumps(row.to_dict()) + "\n").encode("utf-8")))

    def features(self, frames: Iterable) -> None:
        """Record feature frames (anything with .time and [name] access)."""
        rows = [[f.time - self.start] + [float(f[n]) for n in self.feature_names] for f in frames]
        if rows:
            self._queue.put(("features", np.asarray(rows, dtype=np.float64).tobytes()))

    def audio(self, samples: np.ndarray) -> None:
        if self.records_audio and len(samples):
            self._queue.put(("audio", np.ascontiguousarray(samples, dtype=np.float32).tobytes()))

    def _write(self) -> None:
        """The writer thread: take.json first, then append what arrives, sync every
        FLUSH_EVERY_S, finish on None."""
        write_atomically(self.folder / "take.json", self._meta)
        last_sync = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=FLUSH_EVERY_S)
            except queue.Empty:
                item = ()
            if item is None:
                break
            if item:
                self._files[item[0]].write(item[1])
            if time.monotonic() - last_sync >= FLUSH_EVERY_S:
                self._sync()
                last_sync = time.monotonic()
        self._sync()
        for f in self._files.values():
            f.close()

    def _sync(self) -> None:
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())

    def close(self, wait: bool = True) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put(None)
        if wait:
            self._writer.join()

    def __enter__(self) -> "TakeRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Take:
    folder: Path
    start_state: ShowState
    commands: list[Command]
    feature_names: list[str]
    features: np.ndarray  # (n, 1 + k): time, then values
    audio: Optional[np.ndarray]
    audio_rate: Optional[int]
    model: Optional[str] = None  # the model the take was played on
    size: Optional[tuple[int, int]] = None  # (width, height) it was played at

    @property
    def duration(self) -> float:
        ends = [self.commands[-1].time if self.commands else 0.0,
                float(self.features[-1, 0]) if len(self.features) else 0.0]
        if self.audio is not None and self.audio_rate:
            ends.append(len(self.audio) / self.audio_rate)
        return max(ends)

    def features_at(self, t: float) -> dict[str, float]:
        """The newest recorded feature frame at or before t (zeros before the first)."""
        if not len(self.features):
            return {n: 0.0 for n in self.feature_names}
        i = int(np.searchsorted(self.features[:, 0], t, side="right")) - 1
        row = self.features[max(i, 0)] if i >= 0 else np.zeros(1 + len(self.feature_names))
        return dict(zip(self.feature_names, row[1:].tolist()))


def load_take(folder) -> Take:
    folder = Path(folder)
    meta_path = folder / "take.json"
    if not meta_path.is_file():
        raise TakeError(f"{folder} is not a take: no take.json (a take folder is made by `netbend live --record`)")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise TakeError(f"{meta_path}: take format {meta.get('format')!r}; this netbend reads format {FORMAT}")
        names = [str(n) for n in meta["feature_names"]]
        start_state = ShowState.from_dict(meta["start_state"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise TakeError(f"{meta_path}: unreadable take metadata ({e})") from None
    commands = []
    path = folder / "commands.jsonl"
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
    for n, line in enumerate(lines, start=1):
        try:
            commands.append(Command.from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            if n != len(lines):  # only a torn last line is expected (a kill mid-write)
                raise TakeError(f"{path}: line {n} is not a command") from None
    width = 1 + len(names)
    raw = np.fromfile(folder / "features.f64", dtype=np.float64) if (folder / "features.f64").exists() else np.zeros(0)
    features = raw[: len(raw) // width * width].reshape(-1, width)
    audio, rate = None, meta.get("audio_rate")
    if rate and (folder / "audio.f32").exists():
        audio = np.fromfile(folder / "audio.f32", dtype=np.float32)
    size = tuple(meta["size"]) if meta.get("size") else None
    return Take(folder, start_state, commands, names, features, audio, rate, meta.get("model"), size)


class TakePlayer:
    """Feeds a take's commands to ``submit`` at their recorded times (relative to ``start``),
    from a thread of its own; the show applies them at its next frame boundary as if they
    had just arrived over OSC. Stops on ``stop()`` or at the end of the take."""

    def __init__(self, take: Take, submit, clock=time.monotonic):
        self.take, self.submit, self.clock = take, submit, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="netbend-replay", daemon=True)
        self.start_time: Optional[float] = None
        self.sent = 0

    def start(self) -> "TakePlayer":
        self.start_time = self.clock()
        self._thread.start()
        return self

    def _run(self) -> None:
        for command in self.take.commands:
            due = self.start_time + command.time
            while not self._stop.is_set() and self.clock() < due:
                self._stop.wait(min(0.005, max(0.0, due - self.clock())))
            if self._stop.is_set():
                return
            self.submit(Command(command.address, command.args, self.clock(), "replay"))
            self.sent += 1

    @property
    def done(self) -> bool:
        return self.sent == len(self.take.commands)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)


class TakeFeatures:
    """A feature source that plays back a take's recorded feature stream in real time."""

    def __init__(self, take: Take, clock=time.monotonic):
        self.take, self.clock = take, clock
        self.start = clock()

    def latest(self):
        from engine.features import FeatureFrame

        t = self.clock()
        return FeatureFrame(t, self.take.features_at(t - self.start))
