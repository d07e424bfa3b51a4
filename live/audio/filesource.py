"""An audio file played in real time, for rehearsal without a line-in: ``FileSource``.

Like ``live.audio.input.AudioInput`` it is a ``SupervisedSource`` (live/audio/features.py:
``sample_rate``, ``read_window``, ``check``) with ``start``/``stop`` and ``read_since``, so
``live.audio.features.FeatureThread``, takes and outputs read either. The position
follows ``time.monotonic()``, so a window's time is the moment its last sample was due,
and with ``play=True`` the file also goes to the speakers on the same clock: what you
hear is what is analysed.

    with FileSource("take.wav", loop=True, play=True) as source:
        features = FeatureThread(source)
        ...
"""
from __future__ import annotations

import os
import time

import numpy as np

from live.audio.devices import AudioDeviceError, find_device, import_sounddevice
from live.audio.gain import checked_db, gain_and_gate

__all__ = ["FileSource", "PLAY_LATENCY_S", "RESYNC_S"]

RESYNC_S = 0.05         # speaker playback this far off the wall clock jumps back onto it
# Speaker playback is for rehearsal, and the file clock is shifted by the stream's latency
# anyway (what you hear is what is analysed), so it can afford a deep buffer. PortAudio's
# low default (~35 ms) starved while the render thread held the GIL and ALSA printed an
# "underrun occurred" line for each starved block. 0.25 s still underran through ALSA's
# pulse plugin about once in two 2.5 s runs with two GIL-bound threads busy (its period is
# a quarter of the latency and the plugin calls back in bursts); 0.5 s ran 14 of 14 clean.
PLAY_LATENCY_S = 0.5


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
        self.gain_db = checked_db(gain_db, "gain_db", allow_none=False)
        self.gate_db = checked_db(gate_db, "gate_db", allow_none=True)
        self._mono = np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32))  # (n,)
        self.duration = len(self._mono) / rate
        self._output = None
        self._play = None
        if play:
            self._output = find_device(output_device, "output")
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
        self.underruns = 0  # playback blocks the speaker stream reported late (counted, not logged)

    def start(self) -> None:
        if self._start is not None:
            return
        lead = 0.0
        if self._play is not None:
            sd = import_sounddevice()
            try:
                self._stream = sd.OutputStream(
                    device=self._output["index"], samplerate=self.sample_rate,
                    channels=self._play.shape[1], dtype="float32", callback=self._play_callback,
                    latency=PLAY_LATENCY_S)
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
        if status.output_underflow:
            self.underruns += 1
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
        return gain_and_gate(x, self.gain_db, self.gate_db), self._start + (end - 1) / self.sample_rate

    @property
    def frames_received(self) -> int:
        """Samples due since start, as AudioInput counts them: where a reader of every sample begins."""
        return 0 if self._start is None else max(0, int((time.monotonic() - self._start) * self.sample_rate))

    def read_since(self, position: int) -> tuple[np.ndarray, int]:
        """Every sample (mono, gain applied, no gate) from absolute sample ``position`` up to
        now and the position to ask from next time, like AudioInput.read_since: a recording
        of the show (or a take) gets the file's audio as it was played."""
        now = self.frames_received
        position = min(max(0, int(position)), now)
        x = np.zeros(now - position, np.float32)
        _copy_span(self._mono, position, x, self.loop)
        return gain_and_gate(x, self.gain_db, None), now

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
