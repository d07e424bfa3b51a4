"""Live audio in: a sound card (or a file, for rehearsal) to timestamped feature frames.

Three pieces, each with one job and its own module:

* ``AudioInput`` (this module) records a PortAudio input stream (python-sounddevice). Its
  callback runs on PortAudio's thread and only copies the block into a preallocated
  float32 ring, stamps the newest sample's capture time and publishes the new write
  position. Everything else (channel mix, gain, noise gate, device supervision) happens in
  the reader.
* ``FileSource`` (live/audio/filesource.py) plays a decoded file against ``time.monotonic()``,
  with the same reader interface (the ``AudioSource`` protocol of live/audio/features.py),
  and optionally to the speakers, for rehearsal without a line-in.
* ``FeatureThread`` (live/audio/features.py) reads the newest window from either every hop,
  runs the shared ``FeatureExtractor`` and keeps the frames in a bounded ring for the
  render thread.

Finding and listing sound cards, choosing their channels, and ``AudioDeviceError`` are in
live/audio/devices.py; the ring in live/audio/ring.py; the gain and noise gate both sources
apply in live/audio/gain.py.

    with AudioInput("Scarlett", channels=[1, 2], gain_db=6.0) as audio:
        features = FeatureThread(audio)
        features.start()
        ...
        frame = features.latest()     # FeatureFrame; frame.time = capture time (monotonic s)
        features.stop()

Every time here is ``time.monotonic()`` seconds, so the render thread can subtract a frame's
capture time from the moment its picture is shown (audio-to-photon latency).

A show must survive a cable pull: a device that disappears makes the reader return silence,
and ``AudioInput.check()`` (which the feature thread calls every half second) reopens the
stream on the same device name once it is back, logging only when the state changes.
"""
from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Sequence

import numpy as np

from live.audio.devices import AudioDeviceError, find_device, import_sounddevice, input_channels
from live.audio.gain import checked_db, gain_and_gate
from live.audio.ring import InputRing

log = logging.getLogger("netbend.audio")

__all__ = ["AudioInput"]

BUFFER_S = 4.0          # the ring: a few seconds, far more than any window or reader stall
STALE_AFTER_S = 0.25    # no block for this long and the reader gives silence, not old audio
STALL_AFTER_S = 0.5     # no block for this long at two checks in a row: the device is gone
STARTUP_GRACE_S = 3.0   # a freshly opened stream may take this long to deliver its first block
                        # (a PulseAudio null sink takes up to 2 s to lower its latency)
_READ_TRIES = 4         # a writer lapping the reader this often in a row: give silence this time

STATES = ("stopped", "starting", "running", "lost")


class AudioInput:
    """A PortAudio input stream recorded into a lock-free ring, read as mono windows.

    device: None (the default input), an index, or part of a name (case-insensitive; an
    exact name wins over substrings). channels: a count n (channels 1..n) or a list of
    1-based channels; they are mixed to mono for analysis. sample_rate: None for the
    device's default. gain_db and gate_db (None = no gate) are applied by the reader and
    may be changed while running. An unknown device or channel raises AudioDeviceError
    listing what there is.

    The ring (live/audio/ring.py ``InputRing``) is written only by the callback and read
    without locks; it also says how each block's capture time is found.

    ``overruns`` counts blocks the device dropped before the callback ran (PortAudio's
    input-overflow flag) plus reader laps: reads that found more than the whole ring
    written since the previous read (the reader stalled longer than the ring holds).
    Neither stops anything. The lap count assumes one reader (the feature thread).
    """

    def __init__(self, device: int | str | None = None, channels: int | Sequence[int] = 1,
                 sample_rate: float | None = None, *, gain_db: float = 0.0,
                 gate_db: float | None = None, buffer_s: float = BUFFER_S,
                 latency: float | str = "low", blocksize: int = 0):
        sd = import_sounddevice()
        info = find_device(device, "input")
        self.device_index: int = info["index"]
        self.device_name: str = info["name"]
        self.channels = input_channels(channels, info)
        rate = info["default_samplerate"] if sample_rate is None else sample_rate
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            rate = math.nan
        if not math.isfinite(rate) or rate <= 0:
            raise AudioDeviceError(f"sample_rate must be a positive rate in Hz or None, got {sample_rate!r}")
        self.sample_rate = int(rate) if rate.is_integer() else rate
        self._open_channels = max(self.channels)  # PortAudio opens channels 1..n
        try:
            sd.check_input_settings(device=self.device_index, channels=self._open_channels,
                                    samplerate=self.sample_rate, dtype="float32")
        except sd.PortAudioError as e:
            raise AudioDeviceError(
                f"{self.device_name!r} cannot record {self._open_channels} channel(s) at "
                f"{self.sample_rate} Hz ({e}); its default rate is {info['default_samplerate']:g} Hz"
            ) from None
        self.gain_db = gain_db
        self.gate_db = gate_db
        self.latency = latency
        self.blocksize = int(blocksize)
        if not buffer_s > 0.05:
            raise ValueError(f"buffer_s must be more than 0.05 s (one analysis window), got {buffer_s!r}")
        self._size = int(round(buffer_s * self.sample_rate))
        self._ring = InputRing(self._size, self._open_channels, self.sample_rate)
        self._mix = np.array([c - 1 for c in self.channels])
        self._device_overruns = 0
        self._status_flags = 0
        self._reader_overruns = 0
        self._last_read: int | None = None

        self._lock = threading.Lock()  # start/stop/check against each other; never the callback
        self._stream = None
        self._generation = 0            # which stream a finished-callback belongs to
        self._ended = False             # the stream ended or was closed: read silence
        self._running = False
        self._state = "stopped"
        self._opened_at = 0.0
        self._opened_frames = 0
        self._silent_checks = 0         # consecutive checks that found no recent block
        self._reopener: threading.Thread | None = None
        self._reopen_error = ""
        self._stale_after = STALE_AFTER_S

    # -- PortAudio's thread

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        now = time.monotonic()
        if status:
            self._status_flags += 1
            if status.input_overflow:
                self._device_overruns += 1
        self._ring.write(indata, frames, time_info.inputBufferAdcTime, time_info.currentTime, now)

    def _on_finished(self, generation: int) -> None:
        if generation == self._generation and self._running:
            self._ended = True

    # -- the reader

    def read_window(self, n: int) -> tuple[np.ndarray, float]:
        """The newest n samples, mono, gain and gate applied, as a new float32 (n,) array,
        and the capture time (monotonic s) of its last sample. While no audio arrives
        (not started, device lost, stalled) it is silence stamped now."""
        n = int(n)
        if not 0 < n <= self._size:
            raise ValueError(f"a window is 1..{self._size} samples (the ring), got {n}")
        now = time.monotonic()
        for _ in range(_READ_TRIES):
            written, newest, heard = self._ring.head
            if written == 0 or self._ended or now - heard > self._stale_after:
                return np.zeros(n, np.float32), now
            take = min(n, written)
            block = self._ring.copy(written, take)
            if block is not None:
                break
        else:
            return np.zeros(n, np.float32), now
        if self._last_read is not None and written - self._last_read > self._size:
            self._reader_overruns += 1
        self._last_read = written
        x = np.zeros(n, np.float32)
        x[n - take:] = self._mono(block)
        return gain_and_gate(x, self._gain_db, self._gate_db), newest

    def _mono(self, block: np.ndarray) -> np.ndarray:
        """(frames, opened channels) -> (frames,): the chosen channels, mixed."""
        return block[:, self._mix[0]] if len(self._mix) == 1 else block[:, self._mix].mean(axis=1)

    @property
    def gain_db(self) -> float:
        return self._gain_db

    @gain_db.setter
    def gain_db(self, value: float) -> None:
        self._gain_db = checked_db(value, "gain_db", allow_none=False)

    @property
    def gate_db(self) -> float | None:
        return self._gate_db

    @gate_db.setter
    def gate_db(self, value: float | None) -> None:
        self._gate_db = checked_db(value, "gate_db", allow_none=True)

    @property
    def overruns(self) -> int:
        return self._device_overruns + self._reader_overruns

    @property
    def status_flags(self) -> int:
        """Callbacks that carried any PortAudio status flag."""
        return self._status_flags

    def read_since(self, position: int) -> tuple[np.ndarray, int]:
        """Every sample (mono, gain applied, no gate) from absolute sample ``position`` up
        to the newest, and the position to ask from next time: contiguous audio for a
        take. If more than the ring has arrived since ``position`` the oldest part is
        lost and counted as an overrun. Start with ``position = frames_received``."""
        for _ in range(_READ_TRIES):
            written = self._ring.head[0]
            position = min(position, written)
            if written - position > self._size:
                self._reader_overruns += 1
                position = written - self._size
            if written == position:
                return np.zeros(0, np.float32), written
            block = self._ring.copy(written, written - position)
            if block is not None:
                break
        else:
            return np.zeros(0, np.float32), position
        return gain_and_gate(np.ascontiguousarray(self._mono(block), np.float32), self._gain_db, None), written

    @property
    def read_retries(self) -> int:
        """Reads that copied again because the callback wrote over their span meanwhile."""
        return self._ring.retries

    @property
    def frames_received(self) -> int:
        return self._ring.head[0]

    @property
    def input_delay(self) -> float:
        """How old the newest sample was when its block reached the callback (s): the host
        API's report where it gives one, else the block length."""
        return self._ring.delay

    @property
    def capture_time(self) -> float | None:
        """Capture time of the newest sample received, or None before the first block."""
        written, newest, _ = self._ring.head
        return newest if written else None

    @property
    def state(self) -> str:
        """One of STATES, as of the last start/stop/check."""
        return self._state

    # -- the stream and its supervisor

    def start(self) -> None:
        """Open and start the stream; AudioDeviceError if the device refuses."""
        with self._lock:
            if self._running:
                return
            self._running = True
            try:
                self._open()
            except Exception as e:
                self._running = False
                sd = import_sounddevice()
                if isinstance(e, sd.PortAudioError):
                    raise AudioDeviceError(f"cannot open audio input {self.device_name!r}: {e}") from None
                raise
            self._set_state("starting", f"{len(self.channels)} channel(s) {list(self.channels)} "
                                        f"at {self.sample_rate} Hz")

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._close()
            self._set_state("stopped")

    def check(self) -> str:
        """Supervise the stream; call it every ~0.5 s from any thread but the audio one.

        If the stream ended, stalled or is missing, the reader goes silent at once and a
        short-lived thread closes it and reopens the same device by name (closing a stream
        on a hung driver can block for as long as the driver hangs; the caller never
        waits). Returns the state; logs when it changes."""
        reopener = self._reopener
        if reopener is not None and reopener.is_alive():
            return self._state
        if not self._lock.acquire(blocking=False):  # start/stop under way
            return self._state
        try:
            if not self._running:
                return self._set_state("stopped")
            trouble = self._trouble(time.monotonic())
            if trouble is None:
                return self._set_state("running" if self._ring.head[0] > self._opened_frames else "starting")
            self._ended = True  # silence from now on, not the last block over and over
            self._set_state("lost", f"{trouble}; reading silence until it is back")
            self._reopener = threading.Thread(target=self._reopen, name="netbend-audio-reopen", daemon=True)
            self._reopener.start()
            return self._state
        finally:
            self._lock.release()

    def _reopen(self) -> None:
        with self._lock:
            if not self._running:
                return
            self._close()
            try:
                self._open()
            except Exception as e:  # whatever the driver says, the show goes on in silence
                if str(e) != self._reopen_error:
                    self._reopen_error = str(e)
                    log.info("audio input %r: cannot reopen yet: %s", self.device_name, e)
                return
            self._reopen_error = ""
            self._set_state("starting", "reopened")

    def _trouble(self, now: float) -> str | None:
        stream = self._stream
        if stream is None:
            return "no stream"
        if self._ended:
            return "the stream ended (device error or disconnect)"
        sd = import_sounddevice()
        try:
            if not stream.active:
                return "the stream stopped"
        except sd.PortAudioError as e:
            return f"the stream failed ({e})"
        heard = self._ring.head[2]
        if self._ring.head[0] > self._opened_frames:
            silent = now - heard > STALL_AFTER_S
            why = f"no audio for {now - heard:.1f} s"
        else:
            silent = now - self._opened_at > STARTUP_GRACE_S
            why = f"no audio {now - self._opened_at:.1f} s after opening"
        # Silence must be seen by two checks in a row: after a process-wide stall (GC,
        # swapping) the checker may wake before the callback does, and that is no loss.
        self._silent_checks = self._silent_checks + 1 if silent else 0
        return why if self._silent_checks >= 2 else None

    def _open(self) -> None:
        sd = import_sounddevice()
        index = find_device(self.device_name, "input")["index"]  # indices may move
        self._generation += 1
        stream = sd.InputStream(
            device=index, channels=self._open_channels, samplerate=self.sample_rate,
            dtype="float32", latency=self.latency, blocksize=self.blocksize,
            callback=self._callback,
            finished_callback=functools.partial(self._on_finished, self._generation))
        self._stale_after = max(STALE_AFTER_S, 4.0 * float(stream.latency))
        self._opened_at = time.monotonic()
        self._opened_frames = self._ring.head[0]
        self._ended = False
        self._silent_checks = 0
        try:
            stream.start()
        except BaseException:
            self._ended = True
            stream.close(ignore_errors=True)
            raise
        self._stream = stream
        self.device_index = index

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._generation += 1  # its finished-callback no longer counts
        self._ended = True
        try:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        except Exception as e:  # a broken stream must not stop the show
            log.debug("closing audio input %r: %s", self.device_name, e)

    def _set_state(self, state: str, detail: str = "") -> str:
        if state != self._state:
            level = logging.WARNING if state == "lost" else logging.INFO
            log.log(level, "audio input %r: %s%s", self.device_name, state, f" ({detail})" if detail else "")
            self._state = state
        return state

    def __enter__(self) -> AudioInput:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
