"""Live audio in: a sound card (or a file, for rehearsal) to timestamped feature frames.

Three pieces, each with one job:

* ``AudioInput`` records a PortAudio input stream (python-sounddevice). Its callback runs on
  PortAudio's thread and only copies the block into a preallocated float32 ring, stamps the
  newest sample's capture time and publishes the new write position. Everything else (channel
  mix, gain, noise gate, device supervision) happens in the reader.
* ``FileSource`` plays a decoded file against ``time.monotonic()``, with the same reader
  interface, and optionally to the speakers, for rehearsal without a line-in.
* ``FeatureThread`` reads the newest window from either every hop, runs the shared
  ``FeatureExtractor`` and keeps the frames in a bounded ring for the render thread.

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
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from engine.features import FeatureExtractor, FeatureFrame

log = logging.getLogger("netbend.audio")

__all__ = [
    "AudioDeviceError", "AudioInput", "AudioSource", "FeatureThread", "FileSource",
    "describe_audio_devices", "list_audio_devices",
]

BUFFER_S = 4.0          # the ring: a few seconds, far more than any window or reader stall
STALE_AFTER_S = 0.25    # no block for this long and the reader gives silence, not old audio
STALL_AFTER_S = 0.5     # no block for this long at two checks in a row: the device is gone
STARTUP_GRACE_S = 3.0   # a freshly opened stream may take this long to deliver its first block
                        # (a PulseAudio null sink takes up to 2 s to lower its latency)
RESYNC_S = 0.05         # speaker playback this far off the wall clock jumps back onto it
JITTER_HISTORY = 1000   # hops of lateness kept for FeatureThread.jitter()
_READ_TRIES = 4         # a writer lapping the reader this often in a row: give silence this time

STATES = ("stopped", "starting", "running", "lost")


class AudioDeviceError(ValueError):
    """An audio device that cannot be used; the message lists the devices there are."""


def _sounddevice():
    """The sounddevice module, imported on first use so that importing live.audio needs no
    PortAudio (the offline renderer never touches a sound card)."""
    try:
        import sounddevice
    except ImportError as e:
        raise AudioDeviceError(f"python-sounddevice is not installed ({e}): pip install sounddevice") from None
    except OSError as e:  # sounddevice raises this when libportaudio is missing
        raise AudioDeviceError(f"PortAudio is not available ({e}): apt-get install libportaudio2") from None
    return sounddevice


# --------------------------------------------------------------------------------------
# devices


def list_audio_devices() -> list[dict]:
    """Every PortAudio device: index, name, hostapi, inputs, outputs (max channels),
    default_samplerate, default_input, default_output (bools)."""
    sd = _sounddevice()
    hostapis = sd.query_hostapis()
    defaults = {}
    for kind in ("input", "output"):
        try:
            defaults[kind] = sd.query_devices(kind=kind)["index"]
        except (sd.PortAudioError, ValueError, KeyError):  # no default of that kind
            defaults[kind] = None
    return [
        {
            "index": d["index"],
            "name": d["name"],
            "hostapi": hostapis[d["hostapi"]]["name"],
            "inputs": d["max_input_channels"],
            "outputs": d["max_output_channels"],
            "default_samplerate": d["default_samplerate"],
            "default_input": d["index"] == defaults["input"],
            "default_output": d["index"] == defaults["output"],
        }
        for d in sd.query_devices()
    ]


def describe_audio_devices() -> str:
    """A readable table of input and output devices for `netbend devices` (* = default)."""
    devices = list_audio_devices()
    lines = []
    for title, channels, default in (("Audio inputs", "inputs", "default_input"),
                                     ("Audio outputs", "outputs", "default_output")):
        lines.append(f"{title}:")
        found = [d for d in devices if d[channels] > 0]
        width = max((len(d["name"]) for d in found), default=0)
        for d in found:
            mark = "*" if d[default] else " "
            lines.append(f"  {mark} {d['index']:3d}  {d['name']:<{width}}  {d[channels]:3d} ch  "
                         f"{d['default_samplerate']:7.0f} Hz  {d['hostapi']}")
        if not found:
            lines.append("    (none: PortAudio sees no such device; is the sound server running?)")
    lines.append("(* = default)")
    return "\n".join(lines)


def _device_table(devices: list[dict], channels: str) -> str:
    if not devices:
        return "none (PortAudio sees no such device; is the sound server running?)"
    return "; ".join(f"{d['index']}: {d['name']} ({d[channels]} ch)" for d in devices)


def _find_device(device: int | str | None, kind: str) -> dict:
    """The input or output device meant by None (default), an index or a name substring."""
    channels = "inputs" if kind == "input" else "outputs"
    devices = [d for d in list_audio_devices() if d[channels] > 0]
    allowed = f"available {kind}s: {_device_table(devices, channels)}"
    if device is None:
        for d in devices:
            if d[f"default_{kind}"]:
                return d
        raise AudioDeviceError(f"there is no default audio {kind} device; name one, {allowed}")
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    if isinstance(device, int) and not isinstance(device, bool):
        for d in devices:
            if d["index"] == device:
                return d
        raise AudioDeviceError(f"no audio {kind} device has index {device}; {allowed}")
    if not isinstance(device, str) or not device.strip():
        raise AudioDeviceError(f"an audio device is None, an index or a name, got {device!r}; {allowed}")
    wanted = device.strip().casefold()
    exact = [d for d in devices if d["name"].casefold() == wanted]
    matches = exact or [d for d in devices if wanted in d["name"].casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise AudioDeviceError(f"audio {kind} device {device!r} is ambiguous, it matches "
                               f"{_device_table(matches, channels)}; give the index or more of the name")
    raise AudioDeviceError(f"unknown audio {kind} device {device!r}; {allowed}")


def _channel_list(channels: int | Sequence[int], info: dict) -> tuple[int, ...]:
    """A count n (channels 1..n) or explicit 1-based channels -> sorted 1-based tuple."""
    have = info["inputs"]
    where = f"{info['name']!r} has input channels 1..{have}"
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        if not 1 <= channels <= have:
            raise AudioDeviceError(f"channels={channels}: {where}")
        return tuple(range(1, int(channels) + 1))
    try:
        chosen = [int(c) for c in channels]
    except (TypeError, ValueError):
        raise AudioDeviceError(f"channels must be a count or a list of 1-based channels, "
                               f"got {channels!r}; {where}") from None
    if not chosen or len(set(chosen)) != len(chosen) or any(not 1 <= c <= have for c in chosen):
        raise AudioDeviceError(f"channels={list(channels)}: need distinct channels, at least one; {where}")
    return tuple(sorted(chosen))


def _level(db: float | None, name: str, allow_none: bool) -> float | None:
    if db is None and allow_none:
        return None
    try:
        v = float(db)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number of dB{' or None' if allow_none else ''}, got {db!r}")
    return v


def _gain_and_gate(x: np.ndarray, gain_db: float, gate_db: float | None) -> np.ndarray:
    """Input gain, then the noise gate: a window quieter than the gate reads as silence."""
    if gain_db != 0.0:
        x *= np.float32(10.0 ** (gain_db / 20.0))
    if gate_db is not None and len(x):
        rms = math.sqrt(float(np.dot(x, x)) / len(x))
        if rms < 10.0 ** (gate_db / 20.0):
            x[:] = 0.0
    return x


class AudioSource(Protocol):
    """What FeatureThread reads: AudioInput or FileSource."""

    sample_rate: float

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def check(self) -> str: ...
    def read_window(self, n: int) -> tuple[np.ndarray, float]: ...


# --------------------------------------------------------------------------------------
# a sound card


class AudioInput:
    """A PortAudio input stream recorded into a lock-free ring, read as mono windows.

    device: None (the default input), an index, or part of a name (case-insensitive; an
    exact name wins over substrings). channels: a count n (channels 1..n) or a list of
    1-based channels; they are mixed to mono for analysis. sample_rate: None for the
    device's default. gain_db and gate_db (None = no gate) are applied by the reader and
    may be changed while running. An unknown device or channel raises AudioDeviceError
    listing what there is.

    The ring is written only by the callback and read without locks: the callback says
    where it is about to write (``_writing_to``) before copying and publishes
    ``(frames written, capture time of the newest sample, callback time)`` as one tuple
    after; a reader that finds its span was being overwritten while it copied tries again.

    Capture time of a block's newest sample: the host API's ``inputBufferAdcTime`` mapped
    onto time.monotonic() (its age ``currentTime - adc`` subtracted from the callback's
    monotonic time) when it reports one no older than the ring; otherwise the callback's
    monotonic time minus the block's duration. Stamps never go backwards. Measured with
    ALSA's pulse plugin: the report is right (~2 ms) once a stream runs, but for about a
    second after a stream opens on an idle PulseAudio sink it claims 0.5-0.7 s.

    ``overruns`` counts blocks the device dropped before the callback ran (PortAudio's
    input-overflow flag) plus reader laps: reads that found more than the whole ring
    written since the previous read (the reader stalled longer than the ring holds).
    Neither stops anything. The lap count assumes one reader (the feature thread).
    """

    def __init__(self, device: int | str | None = None, channels: int | Sequence[int] = 1,
                 sample_rate: float | None = None, *, gain_db: float = 0.0,
                 gate_db: float | None = None, buffer_s: float = BUFFER_S,
                 latency: float | str = "low", blocksize: int = 0):
        sd = _sounddevice()
        info = _find_device(device, "input")
        self.device_index: int = info["index"]
        self.device_name: str = info["name"]
        self.channels = _channel_list(channels, info)
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
        self._ring = np.zeros((self._size, self._open_channels), np.float32)  # (frames, channels)
        self._mix = np.array([c - 1 for c in self.channels])
        # (frames written, newest sample's capture time, monotonic time of that callback)
        self._head: tuple[int, float, float] = (0, -math.inf, -math.inf)
        self._writing_to = 0
        self._delay = 0.0
        self._device_overruns = 0
        self._status_flags = 0
        self._reader_overruns = 0
        self._read_retries = 0
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
        written, previous, _ = self._head
        if frames > self._size:  # never at sane block sizes; keep the newest part
            indata, written = indata[frames - self._size:], written + frames - self._size
            frames = self._size
        start = written % self._size
        first = min(frames, self._size - start)
        self._writing_to = written + frames
        self._ring[start:start + first] = indata[:first]
        if first < frames:
            self._ring[:frames - first] = indata[first:]
        newest = now - frames / self.sample_rate
        adc = time_info.inputBufferAdcTime
        if adc > 0.0:  # 0 where the host API does not know; then the block-length guess
            age = time_info.currentTime - adc - (frames - 1) / self.sample_rate
            if 0.0 <= age <= self._size / self.sample_rate:
                newest = now - age
        self._delay = now - newest
        self._head = (written + frames, max(newest, previous), now)

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
            written, newest, heard = self._head
            if written == 0 or self._ended or now - heard > self._stale_after:
                return np.zeros(n, np.float32), now
            take = min(n, written)
            start = (written - take) % self._size
            first = min(take, self._size - start)
            block = np.empty((take, self._open_channels), np.float32)   # (take, channels)
            block[:first] = self._ring[start:start + first]
            block[first:] = self._ring[:take - first]
            if self._writing_to - written <= self._size - take:
                break  # nothing we copied was being overwritten
            self._read_retries += 1
        else:
            return np.zeros(n, np.float32), now
        if self._last_read is not None and written - self._last_read > self._size:
            self._reader_overruns += 1
        self._last_read = written
        x = np.zeros(n, np.float32)
        x[n - take:] = block[:, self._mix[0]] if len(self._mix) == 1 else block[:, self._mix].mean(axis=1)
        return _gain_and_gate(x, self._gain_db, self._gate_db), newest

    @property
    def gain_db(self) -> float:
        return self._gain_db

    @gain_db.setter
    def gain_db(self, value: float) -> None:
        self._gain_db = _level(value, "gain_db", allow_none=False)

    @property
    def gate_db(self) -> float | None:
        return self._gate_db

    @gate_db.setter
    def gate_db(self, value: float | None) -> None:
        self._gate_db = _level(value, "gate_db", allow_none=True)

    @property
    def overruns(self) -> int:
        return self._device_overruns + self._reader_overruns

    @property
    def status_flags(self) -> int:
        """Callbacks that carried any PortAudio status flag."""
        return self._status_flags

    @property
    def read_retries(self) -> int:
        """Reads that copied again because the callback wrote over their span meanwhile."""
        return self._read_retries

    @property
    def frames_received(self) -> int:
        return self._head[0]

    @property
    def input_delay(self) -> float:
        """How old the newest sample was when its block reached the callback (s): the host
        API's report where it gives one, else the block length."""
        return self._delay

    @property
    def capture_time(self) -> float | None:
        """Capture time of the newest sample received, or None before the first block."""
        return self._head[1] if self._head[0] else None

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
                sd = _sounddevice()
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
                return self._set_state("running" if self._head[0] > self._opened_frames else "starting")
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
        sd = _sounddevice()
        try:
            if not stream.active:
                return "the stream stopped"
        except sd.PortAudioError as e:
            return f"the stream failed ({e})"
        heard = self._head[2]
        if self._head[0] > self._opened_frames:
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
        sd = _sounddevice()
        index = _find_device(self.device_name, "input")["index"]  # indices may move
        self._generation += 1
        stream = sd.InputStream(
            device=index, channels=self._open_channels, samplerate=self.sample_rate,
            dtype="float32", latency=self.latency, blocksize=self.blocksize,
            callback=self._callback,
            finished_callback=functools.partial(self._on_finished, self._generation))
        self._stale_after = max(STALE_AFTER_S, 4.0 * float(stream.latency))
        self._opened_at = time.monotonic()
        self._opened_frames = self._head[0]
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


# --------------------------------------------------------------------------------------
# a file, for rehearsal


def _copy_span(src: np.ndarray, pos: int, out: np.ndarray, loop: bool) -> None:
    """out[:] = src[pos : pos + len(out)], zeros outside the file, wrapping when looping."""
    length, n, i = len(src), len(out), 0
    while i < n:
        p = pos + i
        if loop:
            p %= length
        if p < 0:
            k = min(n - i, -p)
            out[i:i + k] = 0.0
        elif p >= length:
            out[i:] = 0.0
            return
        else:
            k = min(n - i, length - p)
            out[i:i + k] = src[p:p + k]
        i += k


class FileSource:
    """An audio file played in real time: the reader interface of AudioInput over a file.

    The file is decoded once (live.media.load_audio, any format FFmpeg reads). After
    ``start()`` the position is ``(time.monotonic() - start) * rate``; at the end it loops
    (``loop=True``) or goes silent and ``finished`` turns true. ``play=True`` also sends it
    to the speakers (``output_device`` as for AudioInput); the speaker stream follows the
    same clock, compensating its output latency and jumping back if it drifts more than
    RESYNC_S, so what you hear is what is analysed.
    """

    def __init__(self, path: str | os.PathLike, *, loop: bool = False, play: bool = False,
                 output_device: int | str | None = None, sample_rate: int | None = None,
                 gain_db: float = 0.0, gate_db: float | None = None):
        from live.media import load_audio

        samples, rate = load_audio(path, sample_rate=sample_rate)   # (n, channels)
        self.path = path
        self.sample_rate = rate
        self.loop = bool(loop)
        self.gain_db = _level(gain_db, "gain_db", allow_none=False)
        self.gate_db = _level(gate_db, "gate_db", allow_none=True)
        self._mono = np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32))  # (n,)
        self.duration = len(self._mono) / rate
        self._output = None
        self._play = None
        if play:
            self._output = _find_device(output_device, "output")
            # The file's own channels if the device has them, else its mono mix on up to two.
            have = self._output["outputs"]
            if samples.shape[1] <= have and samples.shape[1] > 1:
                self._play = np.ascontiguousarray(samples)
            else:
                self._play = np.repeat(self._mono[:, None], min(2, have), axis=1)  # (n, channels)
        self._stream = None
        self._start: float | None = None
        self._play_pos = 0
        self._out_latency = 0.0

    def start(self) -> None:
        if self._start is not None:
            return
        lead = 0.0
        if self._play is not None:
            sd = _sounddevice()
            try:
                self._stream = sd.OutputStream(
                    device=self._output["index"], samplerate=self.sample_rate,
                    channels=self._play.shape[1], dtype="float32", callback=self._play_callback)
            except sd.PortAudioError as e:
                raise AudioDeviceError(
                    f"cannot play {self.sample_rate} Hz audio on {self._output['name']!r} ({e}); "
                    f"try sample_rate={int(self._output['default_samplerate'])}") from None
            self._out_latency = lead = float(self._stream.latency)
        # The file's first sample is due when it can first be heard.
        self._start = time.monotonic() + lead
        self._play_pos = 0
        if self._stream is not None:
            self._stream.start()

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort(ignore_errors=True)
            stream.close(ignore_errors=True)
        self._start = None

    def _play_callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        delay = time_info.outputBufferDacTime - time_info.currentTime
        if not 0.0 <= delay <= 1.0:   # a host API that does not know: trust the stream
            delay = self._out_latency
        due = int((time.monotonic() + delay - self._start) * self.sample_rate)
        if abs(due - self._play_pos) > RESYNC_S * self.sample_rate:
            self._play_pos = due
        _copy_span(self._play, self._play_pos, outdata, self.loop)
        self._play_pos += frames

    def read_window(self, n: int) -> tuple[np.ndarray, float]:
        """The n samples before the current position (mono, gain and gate applied) and the
        time the last of them was due; silence stamped now before start or after the end."""
        now = time.monotonic()
        x = np.zeros(int(n), np.float32)
        if self._start is None:
            return x, now
        end = int((now - self._start) * self.sample_rate)   # samples due so far
        _copy_span(self._mono, end - len(x), x, self.loop)
        return _gain_and_gate(x, self.gain_db, self.gate_db), self._start + (end - 1) / self.sample_rate

    @property
    def position(self) -> float:
        """Seconds since the file started (not wrapped when looping); 0 before start."""
        return 0.0 if self._start is None else max(0.0, time.monotonic() - self._start)

    @property
    def finished(self) -> bool:
        return not self.loop and self.position >= self.duration

    @property
    def output_latency(self) -> float:
        """The speaker stream's latency (s) that playback is scheduled ahead by; 0 without play."""
        return self._out_latency

    def check(self) -> str:
        if self._start is None:
            return "stopped"
        return "finished" if self.finished else "running"

    def __enter__(self) -> FileSource:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------
# the feature thread


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
        self._logged: set[tuple[str, str]] = set()

    def run(self) -> None:
        n = self.extractor.window_length
        check = getattr(self.source, "check", None)
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
                key = (type(e).__name__, str(e))
                if key not in self._logged and len(self._logged) < 100:
                    self._logged.add(key)
                    log.error("feature thread: %s: %s (logged once; carrying on)", *key, exc_info=True)
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
