"""The crash-safe recording (live/outputs/recording.py): every frame and the audio of the
whole time, never over an existing file unless told, still playable after a SIGKILL, and
started and stopped off the render thread."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from live.control.state import Command
from live.media import probe
from live.outputs.fanout import Outputs
from live.outputs.framing import Framing
from live.outputs.output import OutputError
from live.outputs.recording import VideoRecording
from helpers_show import Frame, Tone, gradient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def test_recording_has_every_frame_and_the_audio_of_the_whole_time(tmp_path):
    out = tmp_path / "show.mp4"
    outputs = Outputs(Framing((96, 63)), frame_size=(64, 48), fps=25)  # an odd height: padded for yuv420p
    outputs.add(VideoRecording(out, audio=Tone()))
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 2.0:
        outputs.put(Frame(gradient(n), n, time.monotonic(), time.monotonic()))
        n += 1
        time.sleep(0.04)
    stats = outputs.close()
    elapsed = time.monotonic() - t0
    info = probe(out)
    assert info.frames == n == stats["record"]["sent"] and stats["record"]["dropped"] == 0
    assert (info.width, info.height) == (96, 64) and info.video_codec == "h264"
    assert info.audio_codec == "aac" and abs(info.audio_duration - elapsed) < 0.25
    assert abs(info.video_duration - elapsed) < 0.4


def test_recording_never_overwrites_without_being_told(tmp_path):
    out = tmp_path / "show.mp4"
    out.write_bytes(b"last night's show")
    with pytest.raises(OutputError, match="already exists.*--overwrite"):
        VideoRecording(out)
    assert out.read_bytes() == b"last night's show"
    with pytest.raises(OutputError, match="ending in .mp4"):
        VideoRecording(tmp_path / "show.avi")
    with pytest.raises(OutputError, match="does not exist"):
        VideoRecording(tmp_path / "nowhere" / "show.mp4")
    outputs = Outputs(frame_size=(64, 48))
    outputs.add(VideoRecording(out, overwrite=True))
    outputs.put(Frame(gradient(0), 0, 0.0, time.monotonic()))
    outputs.close()
    assert probe(out).frames == 1


def test_a_recording_killed_mid_show_still_plays(tmp_path):
    out = tmp_path / "killed.mp4"
    script = f"""
import sys, time; sys.path.insert(0, {str(HERE)!r}); sys.path.insert(0, {str(ROOT)!r})
from helpers_show import Frame, Tone, gradient
from live.outputs.fanout import Outputs
from live.outputs.recording import VideoRecording
outputs = Outputs(frame_size=(64, 48), fps=25)
outputs.add(VideoRecording({str(out)!r}, audio=Tone()))
n = 0
while True:
    outputs.put(Frame(gradient(n), n, time.monotonic(), time.monotonic())); n += 1
    if n == 25: print("RUNNING", flush=True)
    time.sleep(0.04)
"""
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "RUNNING"
    time.sleep(3.0)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    info = probe(out)  # decodes every packet: it would raise on a broken file
    assert info.video_duration >= 2.0 and info.video_codec == "h264"  # of ~4 s, at most the last second is lost
    assert info.audio_codec == "aac" and abs(info.audio_duration - info.video_duration) < 1.2


def test_recording_starts_and_stops_off_the_render_thread(tmp_path):
    class SlowDisk(VideoRecording):
        def open(self, size, fps):
            time.sleep(1.0)  # a network share
            super().open(size, fps)

        def close(self):
            time.sleep(1.0)
            super().close()

    errors = []
    outputs = Outputs(frame_size=(64, 48), recording=lambda path: SlowDisk(path, audio=Tone()))
    outputs.error = lambda address, reason: errors.append((address, reason))
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"keep")
    outputs.act(Command("/netbend/record/video/start", (str(taken),)))
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert errors and errors[0][0] == "/netbend/record/video/start" and "already exists" in errors[0][1]
    assert taken.read_bytes() == b"keep" and "record" not in outputs
    out = tmp_path / "new.mp4"
    t = time.perf_counter()
    outputs.act(Command("/netbend/record/video/start", (str(out),)))
    assert time.perf_counter() - t < 0.5  # the file is made on another thread, not the render thread's
    with pytest.raises(OutputError, match="already recording"):
        outputs.act(Command("/netbend/record/video/start", (str(tmp_path / "other.mp4"),)))
    while "record" not in outputs and time.monotonic() < deadline + 5:
        time.sleep(0.01)
    for i in range(10):
        outputs.put(Frame(gradient(i), i, time.monotonic(), time.monotonic()))
        time.sleep(0.04)
    t = time.perf_counter()
    outputs.act(Command("/netbend/record/video/stop", ()))
    assert time.perf_counter() - t < 0.5 and "record" not in outputs  # finishing the file is not the caller's wait
    with pytest.raises(OutputError, match="not recording"):
        outputs.act(Command("/netbend/record/video/stop", ()))
    stats = outputs.close()  # waits for the file to be finished
    assert probe(out).frames == stats["record"]["sent"] == 10
