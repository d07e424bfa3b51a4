"""Live audio on real parts: PortAudio recording a PulseAudio null sink while another
process (pacat) plays into it; files played against the wall clock; the feature thread.

Nothing of PortAudio is mocked. The measured latencies are printed (pytest -s shows them).
"""
from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from live.audio.devices import AudioDeviceError, describe_audio_devices, list_audio_devices
from live.audio.features import FeatureThread
from live.audio.filesource import FileSource
from live.audio.input import AudioInput
from live.media import write_audio_wav
from pulse import RATE, pulse, tone  # noqa: F401  (the session fixture; tests/ is on sys.path)


@contextmanager
def listening(check_every: float = 0.5):
    """AudioInput on "pulse" and its FeatureThread, once blocks flow; both stopped after."""
    with AudioInput("pulse") as audio:
        features = FeatureThread(audio, check_every=check_every)
        features.start()
        try:
            flowing(audio)
            yield audio, features
        finally:
            features.stop()


TONE_RMS = 0.5 / math.sqrt(2)   # a sine of amplitude 0.5
HEARD = 0.05                     # rms above this: the tone is in the window


def wait_for(condition, timeout: float, what: str, step: float = 0.001):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


def flowing(audio: AudioInput, timeout: float = 6.0) -> None:
    """Wait until blocks arrive and their reported age has settled (the fixture keeps the
    sink awake, so both are quick; after the sink is reloaded they take ~2 s and ~1 s:
    see pulse.py)."""
    wait_for(lambda: audio.frames_received > 0, timeout, "the first audio block", step=0.01)
    wait_for(lambda: audio.input_delay < 0.02, timeout, "the reported input delay to settle", step=0.01)
    time.sleep(0.1)


def first_heard(features: FeatureThread, since: float, timeout: float = 1.0):
    """The first frame captured after `since` whose rms says the tone is there, and the
    monotonic time this thread saw it."""
    def find():
        for frame in features.frames_since(since):
            if frame["rms"] > HEARD:
                return frame, time.monotonic()
        return None
    return wait_for(find, timeout, "the tone in the feature ring")


def window_rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# --------------------------------------------------------------------------------------
# devices


def test_devices_are_listed_with_the_pulse_device(pulse):
    devices = list_audio_devices()
    names = {d["name"]: d for d in devices}
    assert names["pulse"]["inputs"] > 0 and names["pulse"]["outputs"] > 0
    assert sum(d["default_input"] for d in devices) == 1
    text = describe_audio_devices()
    assert "Audio inputs:" in text and "Audio outputs:" in text and "pulse" in text
    assert "*" in text


def test_an_unknown_device_is_refused_with_the_list_of_inputs(pulse):
    with pytest.raises(AudioDeviceError) as err:
        AudioInput("no such interface")
    message = str(err.value)
    assert "no such interface" in message
    index = next(d["index"] for d in list_audio_devices() if d["name"] == "pulse")
    assert f"{index}: pulse" in message
    with pytest.raises(AudioDeviceError, match="no audio input device has index 999"):
        AudioInput(999)
    with pytest.raises(ValueError, match="input channels 1.."):  # AudioDeviceError is a ValueError
        AudioInput("pulse", channels=[0])
    assert AudioInput("PULSE").device_name == "pulse"  # case-insensitive, exact name wins


# --------------------------------------------------------------------------------------
# the acceptance test: a tone from another process reaches the features within 200 ms


def test_a_played_tone_reaches_the_feature_ring_within_200_ms(pulse):
    with listening() as (audio, features):
        figures = []
        with pulse.player() as player:
            time.sleep(0.2)
            for _ in range(5):
                # t_play: the first tone sample is handed to pacat (process start excluded).
                t_play = player.play(tone(0.3))
                frame, t_seen = first_heard(features, since=t_play - 0.2)
                figures.append((frame.time - t_play, t_seen - frame.time, t_seen - t_play))
                time.sleep(0.15)  # the window is now entirely inside the tone
                steady = features.latest()
                assert steady["rms"] == pytest.approx(TONE_RMS, rel=0.05)
                assert steady["centroid"] == pytest.approx(1000.0, abs=50.0)
                time.sleep(0.5)   # tone over, window silent again before the next one
                assert features.latest()["rms"] < 1e-3
        assert features.is_alive() and features.errors == 0
    capture, delivery, total = np.array(figures).T
    print(f"\ntone start -> capture stamp of first frame that hears it: "
          f"{1000 * capture.min():.1f}..{1000 * capture.max():.1f} ms; "
          f"capture -> frame in ring: {1000 * delivery.min():.1f}..{1000 * delivery.max():.1f} ms; "
          f"tone start -> frame seen: {1000 * total.min():.1f}..{1000 * total.max():.1f} ms; "
          f"hop lateness {features.jitter()}")
    # The frame's capture stamp lies within 200 ms after the audio was handed over (a small
    # negative margin covers the block-length guess of the stamp) ...
    assert np.all(capture > -0.02) and np.all(capture < 0.2)
    # ... the frame is in the ring within 200 ms of its capture, and within 200 ms overall.
    assert np.all(delivery < 0.2)
    assert np.all(total < 0.2)


# --------------------------------------------------------------------------------------
# gain, gate, channels


def test_gain_and_gate_apply_to_the_read_window_while_running(pulse):
    with AudioInput(None, gate_db=None) as audio, pulse.player() as player:  # the default input
        assert audio.device_name in ("default", "pulse")
        flowing(audio)
        player.play(tone(2.0, amplitude=0.1))       # rms 0.0707, -23 dBFS
        n = 2205
        wait_for(lambda: window_rms(audio.read_window(n)[0]) > 0.06, 1.0, "the quiet tone")
        time.sleep(0.06)
        assert window_rms(audio.read_window(n)[0]) == pytest.approx(0.1 / math.sqrt(2), rel=0.05)
        audio.gain_db = 20 * math.log10(2)          # +6 dB doubles it
        assert window_rms(audio.read_window(n)[0]) == pytest.approx(0.2 / math.sqrt(2), rel=0.05)
        audio.gate_db = -10.0                       # above the tone: the window reads silence
        samples, _ = audio.read_window(n)
        assert not samples.any()
        audio.gate_db = -30.0                       # below it: the tone passes
        assert window_rms(audio.read_window(n)[0]) == pytest.approx(0.2 / math.sqrt(2), rel=0.05)
        audio.gate_db = None
        with pytest.raises(ValueError, match="gain_db"):
            audio.gain_db = math.nan
        assert audio.gain_db == pytest.approx(6.0206, abs=1e-3)


def test_two_channels_are_mixed_to_mono(pulse):
    with AudioInput("pulse", channels=[1, 2]) as audio, pulse.player() as player:
        assert audio.channels == (1, 2)
        flowing(audio)
        player.play(tone(1.0))
        wait_for(lambda: window_rms(audio.read_window(2205)[0]) > 0.3, 1.0, "the tone")
        time.sleep(0.06)
        assert window_rms(audio.read_window(2205)[0]) == pytest.approx(TONE_RMS, rel=0.05)


# --------------------------------------------------------------------------------------
# overruns and device loss


def test_a_stalled_reader_counts_an_overrun_and_reads_on(pulse):
    with AudioInput("pulse", buffer_s=0.1) as audio, pulse.player() as player:
        flowing(audio)
        audio.read_window(2205)
        assert audio.overruns == 0
        time.sleep(0.3)                              # the ring (0.1 s) laps the reader
        audio.read_window(2205)
        assert audio.overruns == 1
        player.play(tone(0.5))
        wait_for(lambda: window_rms(audio.read_window(2205)[0]) > 0.3, 1.0, "the tone after the overrun")
        assert audio.overruns == 1                   # reading every few ms again: no more laps


def test_reads_are_never_torn_while_the_callback_laps_the_ring(pulse):
    """The lock-free read under real contention: a writer thread drives the input's own
    callback with numbered samples (the stream is never started, so it is the only
    writer) while this thread reads windows of nearly the whole ring. Every window must be
    consecutive numbers; a read the writer overlapped is retried, never returned torn."""
    import sounddevice as sd

    audio = AudioInput("pulse", buffer_s=0.06)                # 2646 frames
    block = 64
    stamp = SimpleNamespace(inputBufferAdcTime=0.0, currentTime=0.0)
    done = threading.Event()

    def write():
        counter = np.arange(block, dtype=np.float32)[:, None]  # (block, 1)
        for i in range(30_000):
            audio._callback(counter + i * block, block, stamp, sd.CallbackFlags())
        done.set()

    writer = threading.Thread(target=write)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)                                # switch threads as often as possible
    try:
        writer.start()
        wait_for(lambda: audio.frames_received > 2600, 1.0, "the writer to fill a window")
        reads = 0
        while not done.is_set():
            x, _ = audio.read_window(2600)
            if x.any():                                        # four laps in a row give silence
                assert np.all(np.diff(x) == 1.0), "a torn window"
                reads += 1
    finally:
        sys.setswitchinterval(interval)
        writer.join()
    print(f"\n{reads} whole windows read, {audio.read_retries} reads retried")
    assert reads > 100 and audio.read_retries > 0


def test_a_process_stall_is_survived_without_declaring_the_device_lost(pulse, caplog):
    caplog.set_level(logging.INFO, logger="netbend.audio")
    with listening(check_every=0.1) as (audio, features):
        wait_for(lambda: audio.state == "running", 1.0, "state running")
        interval = sys.getswitchinterval()
        sys.setswitchinterval(5.0)  # this loop keeps the GIL: no callback, no feature hop
        try:
            t = time.monotonic()
            while time.monotonic() - t < 1.0:
                pass
        finally:
            sys.setswitchinterval(interval)
        time.sleep(0.5)
        assert features.is_alive() and features.errors == 0
        assert features.skipped_hops >= 50
        assert audio.state == "running"
        assert features.latest().time > t + 1.0
    assert not [r for r in caplog.records if "lost" in r.getMessage() or "reopened" in r.getMessage()]
    print(f"\nafter a 1 s stall: overruns {audio.overruns}, status flags {audio.status_flags} "
          "(PulseAudio buffers the stall, so PortAudio flags no overflow)")


def test_a_device_that_disappears_reads_silence_and_recovers(pulse, caplog):
    caplog.set_level(logging.INFO, logger="netbend.audio")
    with listening(check_every=0.25) as (audio, features):
        with pulse.player() as player:
            player.play(tone(0.5))
            first_heard(features, since=time.monotonic() - 0.1)
        pulse.unload_sink()                       # the monitor and our stream die
        try:
            wait_for(lambda: audio.state == "lost", 2.0, "state lost", step=0.01)
            samples, _ = audio.read_window(2205)
            assert not samples.any()
            time.sleep(1.0)                       # a few failed reopen attempts
            assert audio.state == "lost"
            assert features.is_alive() and features.errors == 0
            assert features.latest()["rms"] == 0.0
        finally:
            pulse.load_sink()
        t_back = time.monotonic()
        wait_for(lambda: audio.state == "running", 5.0, "the stream reopened", step=0.01)
        reopened = time.monotonic() - t_back
        flowing(audio)
        with pulse.player() as player:
            t_play = player.play(tone(0.5))
            frame, t_seen = first_heard(features, since=t_play - 0.2)
            time.sleep(0.1)
            assert features.latest()["centroid"] == pytest.approx(1000.0, abs=50.0)
    messages = [r.getMessage() for r in caplog.records]
    lost = [m for m in messages if ": lost" in m]
    assert len(lost) == 1, messages                   # once per state change, not per attempt
    assert "pulse" in lost[0]
    print(f"\nsink reloaded -> stream running again after {reopened:.2f} s; "
          f"tone heard {1000 * (t_seen - t_play):.0f} ms after playing")


def test_a_frozen_sound_server_never_blocks_the_feature_thread(pulse, caplog):
    """The stall path: the daemon is stopped (SIGSTOP), so blocks cease while the stream
    stays open and closing it blocks until the daemon runs again."""
    caplog.set_level(logging.INFO, logger="netbend.audio")
    with listening(check_every=0.25) as (audio, features):
        wait_for(lambda: audio.state == "running", 1.0, "state running", step=0.01)
        os.kill(pulse.process.pid, signal.SIGSTOP)
        try:
            t_frozen = time.monotonic()
            wait_for(lambda: audio.state == "lost", 2.0, "state lost", step=0.01)
            noticed = time.monotonic() - t_frozen
            hops = features.hops
            time.sleep(1.0)
            assert features.hops - hops >= 80              # still on its 10 ms hop
            assert features.errors == 0 and features.latest()["rms"] == 0.0
            assert not audio.read_window(2205)[0].any()
        finally:
            os.kill(pulse.process.pid, signal.SIGCONT)
        wait_for(lambda: audio.state == "running", 5.0, "the stream reopened", step=0.01)
        flowing(audio)
        with pulse.player() as player:
            t_play = player.play(tone(0.5))
            first_heard(features, since=t_play - 0.2)
    assert len([r for r in caplog.records if ": lost" in r.getMessage()]) == 1
    print(f"\nfrozen server noticed after {1000 * noticed:.0f} ms")


# --------------------------------------------------------------------------------------
# the file source


RAMP_RATE = 8000


@pytest.fixture
def ramp_wav(tmp_path):
    """2 s at 8 kHz whose sample i holds i / 32768 (16-bit PCM i): a value read back says
    exactly which sample it is."""
    path = tmp_path / "ramp.wav"
    write_audio_wav(path, np.arange(2 * RAMP_RATE, dtype=np.int16), RAMP_RATE)
    return path


def test_a_file_plays_against_the_wall_clock(ramp_wav):
    with FileSource(ramp_wav) as source:
        assert source.sample_rate == RAMP_RATE and source.check() == "running"
        for wait in (0.2, 0.3):
            time.sleep(wait)
            before = time.monotonic() - source._start
            samples, last = source.read_window(400)
            after = time.monotonic() - source._start
            index = np.round(samples * 32768).astype(int)         # which file samples these are
            assert np.all(np.diff(index) == 1)                     # consecutive, in order
            assert last - source._start == pytest.approx(index[-1] / RAMP_RATE, abs=1e-9)
            played = (index[-1] + 1) / RAMP_RATE                   # seconds of file played
            # the read happened between the two clock readings: its position must too (to a sample)
            assert before - 1 / RAMP_RATE <= played <= after + 1 / RAMP_RATE, (before, played, after)
        time.sleep(2.0 - source.position + 0.1)
        assert source.finished and source.check() == "finished"
        samples, _ = source.read_window(400)
        assert not samples.any()


def test_a_looping_file_keeps_going(tmp_path):
    path = tmp_path / "short.wav"
    write_audio_wav(path, tone(0.3, rate=RATE), RATE)
    with FileSource(path, loop=True) as source:
        time.sleep(0.75)
        assert not source.finished
        samples, _ = source.read_window(2205)
        assert window_rms(samples) == pytest.approx(TONE_RMS, rel=0.1)


def test_features_of_a_tone_file_show_the_tone(tmp_path):
    path = tmp_path / "tone.wav"
    write_audio_wav(path, np.stack([tone(2.0), tone(2.0)], axis=1), RATE)
    with FileSource(path, gain_db=0.0) as source:
        features = FeatureThread(source)
        features.start()
        try:
            time.sleep(0.3)
            frame = features.latest()
        finally:
            features.stop()
    assert frame["rms"] == pytest.approx(TONE_RMS, rel=0.01)
    assert frame["centroid"] == pytest.approx(1000.0, abs=20.0)
    assert frame.time == pytest.approx(time.monotonic(), abs=0.1)
    assert len(features.frames_since(frame.time - 0.1)) >= 8  # ~10 frames per 100 ms


def test_a_file_played_to_the_speakers_is_heard_when_it_is_analysed(pulse, tmp_path):
    path = tmp_path / "late-tone.wav"
    write_audio_wav(path, np.concatenate([np.zeros(RATE // 2, np.float32), tone(0.5)]), RATE)
    with AudioInput("pulse") as audio:
        flowing(audio)
        features = FeatureThread(audio)
        features.start()
        try:
            with FileSource(path, play=True, output_device="pulse") as source:
                due = source._start + 0.5                   # when the tone is due by the file clock
                frame, _ = first_heard(features, since=due - 0.3, timeout=2.0)
                ahead = source.output_latency
        finally:
            features.stop()
    offset = frame.time - due
    print(f"\nspeaker playback heard {1000 * offset:.1f} ms after the file clock said it was due "
          f"(output latency {1000 * ahead:.1f} ms)")
    # A monitor hears what the sink renders, up to the output latency before a real speaker
    # would sound it; so the tone may come that much early, and must not come late.
    assert -(ahead + 0.02) < offset < 0.05


# --------------------------------------------------------------------------------------
# the feature thread


class FlakySource:
    """A source whose every other read fails: the thread must log once and carry on."""

    sample_rate = 8000

    def __init__(self):
        self.reads = 0

    def read_window(self, n):
        self.reads += 1
        if self.reads % 2:
            raise RuntimeError("flaky driver")
        return np.zeros(n, np.float32), time.monotonic()


def test_the_feature_thread_survives_exceptions_and_logs_once(caplog):
    caplog.set_level(logging.ERROR, logger="netbend.audio")
    features = FeatureThread(FlakySource(), hop=0.005)
    features.start()
    try:
        wait_for(lambda: features.errors >= 10, 2.0, "ten failed hops")
        assert features.is_alive()
        assert features.latest() is not None
    finally:
        features.stop()
    assert len([r for r in caplog.records if "flaky driver" in r.getMessage()]) == 1


def test_the_feature_thread_stops_promptly(ramp_wav):
    with FileSource(ramp_wav, loop=True) as source:
        features = FeatureThread(source, hop=0.01)
        features.start()
        wait_for(lambda: features.hops > 20, 2.0, "twenty hops")
        t = time.monotonic()
        features.stop()
        stopped_in = time.monotonic() - t
    assert not features.is_alive()
    assert stopped_in < 0.05
    jitter = features.jitter()
    assert 0.0 <= jitter["p50"] <= jitter["p95"] <= jitter["max"]
    assert jitter["p50"] < 0.005
    assert threading.active_count() >= 1


def test_read_since_gives_every_sample_exactly_once_for_takes(pulse):
    """Take recording reads from an absolute position: concatenated reads are the input,
    contiguous, with nothing doubled or dropped, while a writer drives the callback."""
    import sounddevice as sd

    audio = AudioInput("pulse", buffer_s=0.5)
    block = 64
    stamp = SimpleNamespace(inputBufferAdcTime=0.0, currentTime=0.0)
    done = threading.Event()

    def write():
        counter = np.arange(block, dtype=np.float32)[:, None]
        for i in range(2000):
            audio._callback(counter + i * block, block, stamp, sd.CallbackFlags())
            if i % 50 == 0:
                time.sleep(0.001)
        done.set()

    position, pieces = audio.frames_received, []
    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        samples, position = audio.read_since(position)
        pieces.append(samples)
        time.sleep(0.002)
    writer.join()
    samples, position = audio.read_since(position)
    pieces.append(samples)
    got = np.concatenate(pieces)
    assert position == audio.frames_received == 2000 * block
    assert np.array_equal(got, np.arange(2000 * block, dtype=np.float32))


def test_read_since_counts_what_the_ring_could_not_hold(pulse):
    import sounddevice as sd

    audio = AudioInput("pulse", buffer_s=0.06)  # 2646 frames
    stamp = SimpleNamespace(inputBufferAdcTime=0.0, currentTime=0.0)
    for i in range(100):
        audio._callback(np.full((64, 1), float(i), np.float32), 64, stamp, sd.CallbackFlags())
    samples, position = audio.read_since(0)
    assert position == 6400 and len(samples) == audio._size and samples[-1] == 99.0
    assert audio.overruns >= 1


def _hog_the_gil(stop):
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x += i


def test_speaker_playback_does_not_underrun_while_python_threads_are_busy(pulse, tmp_path, capfd):
    # --play on a show machine: the render and OSC threads hold the GIL in turns, and the
    # playback callback waits for it. With PortAudio's low default latency that starved
    # the stream and ALSA printed "underrun occurred" lines by the dozen.
    path = tmp_path / "tone.wav"
    write_audio_wav(path, tone(3.0), RATE)
    stop = threading.Event()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.02)  # a busy interpreter: each thread keeps the GIL for up to 20 ms
    hogs = [threading.Thread(target=_hog_the_gil, args=(stop,)) for _ in range(2)]
    try:
        for hog in hogs:
            hog.start()
        with FileSource(path, play=True, output_device="pulse") as source:
            time.sleep(2.5)
            underruns = source.underruns
    finally:
        stop.set()
        for hog in hogs:
            hog.join()
        sys.setswitchinterval(interval)
    err = capfd.readouterr().err
    assert "underrun" not in err, err[:300]
    assert underruns == 0
