"""Outputs in the show itself: `netbend live` recording what it rendered (cleanly and
killed with SIGKILL), switched over real UDP OSC, NDI frames of the tiny model reaching a
real receiver, a sleeping output that does not slow the show, and each wrong output
option as one line and exit status 2."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from live.control.state import Command, ShowState
from live.media import probe
from live.outputs.fanout import Outputs
from live.outputs.framing import Framing
from live.outputs.output import Output
from live.show.show import Show
from helpers_live import Osc, demo_wav, free_port, netbend  # noqa: F401  (demo_wav: the fixture)
from helpers_show import pipe  # noqa: F401  (the fixture)

HERE = Path(__file__).resolve().parent


def one_thread() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1")


# -- recording ----------------------------------------------------------------------------------------


@pytest.mark.slow  # a `netbend live` process: its imports alone take seconds
def test_live_records_every_rendered_frame_with_the_audio_of_the_show(demo_wav, tmp_path):
    out = tmp_path / "show.mp4"
    p = netbend("live", "--model", "tiny", "--headless", "--audio-file", str(demo_wav), "--duration", "4",
                "--osc-port", "-1", "--record-video", str(out), "--output-size", "128x72", "--scaling", "fill",
                env=one_thread())
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr
    stats = json.loads(stdout.strip().splitlines()[-1])
    info = probe(out)
    assert stats["frames"] > 4 and stats["outputs"]["record"]["sent"] == info.frames
    assert abs(info.frames - stats["frames"]) <= 0.05 * stats["frames"]  # the file has what was rendered
    assert (info.width, info.height, info.video_codec) == (128, 72, "h264")  # at the output size
    # as long as the show: from its first frame to the stop, which comes up to a frame later
    assert info.audio_codec == "aac" and 3.8 <= info.audio_duration <= 4.3 + 2 / max(stats["fps"], 1)
    assert abs(info.audio_duration - info.video_duration) < 0.3 + 2 / max(stats["fps"], 1)


@pytest.mark.slow  # a `netbend live` process: its imports alone take seconds
def test_a_show_killed_with_sigkill_leaves_a_recording_that_plays(demo_wav, tmp_path):
    out = tmp_path / "killed.mp4"
    p = netbend("live", "--model", "tiny", "--headless", "--audio-file", str(demo_wav), "--osc-port", "-1",
                "--record-video", str(out), env=one_thread())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and out.stat().st_size > 4_000):  # a fragment is in
        assert p.poll() is None, p.communicate()[1]
        time.sleep(0.2)
    time.sleep(3.0)  # a few seconds of show, a few fragments on disk
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    info = probe(out)  # decodes every packet of both streams: raises on a broken file
    assert info.frames >= 2 and info.video_codec == "h264"  # (a loaded 2-core CI renders tiny at 0.5-20 fps)
    assert info.video_duration >= 2.0 and info.audio_codec == "aac" and info.audio_duration >= 2.0
    assert abs(info.audio_duration - info.video_duration) < 1.5


# -- OSC --------------------------------------------------------------------------------------------


@pytest.mark.slow  # a `netbend live` process: its imports alone take seconds
def test_recording_starts_and_stops_over_osc_and_outputs_switch_by_name(demo_wav, tmp_path):
    port = free_port()
    osc = Osc(port, skip_unreadable=True)
    out = tmp_path / "from-osc.mp4"
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"keep me")
    p = netbend("live", "--model", "tiny", "--headless", "--audio-file", str(demo_wav), "--duration", "14",
                "--osc-port", str(port), "--osc-feedback", f"127.0.0.1:{osc.port}", "--features-hz", "5",
                env=one_thread())
    got = []
    try:
        deadline = time.monotonic() + 180
        while not any(a.startswith("/netbend/audio/") for a, _ in got):  # features go out once frames render
            assert time.monotonic() < deadline and p.poll() is None, "the show never started"
            osc.send("/netbend/state")
            got += osc.receive(0.5)
        osc.send("/netbend/record/video/start", str(taken))  # exists: refused, file kept
        refused = time.monotonic() + 30
        while not any(a == "/netbend/error" and "already exists" in str(args) for a, args in got):
            assert time.monotonic() < refused, "no answer to a start over an existing file"
            got += osc.receive(0.5)
        osc.send("/netbend/record/video/start", str(out))
        osc.send("/netbend/output/ndi/enable", 1)  # no such output
        osc.send("/netbend/output/record/enable", 2)  # malformed: answered at once
        got += osc.receive(2.0)
        time.sleep(2.0)
        osc.send("/netbend/output/record/enable", 0)
        time.sleep(1.0)
        osc.send("/netbend/output/record/enable", 1)
        time.sleep(1.0)
        osc.send("/netbend/record/video/stop")
    finally:
        stdout, stderr = p.communicate(timeout=180)
    got += osc.receive(1.0)  # what arrived meanwhile waits in the socket
    assert p.returncode == 0, stderr
    errors = [args for a, args in got if a == "/netbend/error"]
    assert any("already exists" in " ".join(map(str, e)) for e in errors), got
    assert any("no output named 'ndi'" in " ".join(map(str, e)) for e in errors), got
    assert any("0 or 1" in " ".join(map(str, e)) for e in errors), got
    assert taken.read_bytes() == b"keep me"
    stats = json.loads(stdout.strip().splitlines()[-1])
    info = probe(out)
    assert info.frames == stats["outputs"]["record"]["sent"] > 5 and info.audio_codec == "aac"
    assert info.audio_duration >= 3.0  # the ~4 s from the first frame to the stop, paused picture or not


# -- NDI: the tiny model's frames at a real receiver ------------------------------------------------


def run_show(show: Show, seconds: float) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=show.run, args=(stop,), daemon=True)
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(10)


def test_ndi_receiver_gets_the_rendered_frames(pipe, tmp_path, monkeypatch):
    pytest.importorskip("cyndilib", reason="NDI needs cyndilib (pip install -e .[test])")
    sys.path.insert(0, str(HERE))
    from ndi_receiver import loopback_config

    from live.outputs.ndi import NdiOutput

    monkeypatch.setenv("NDI_CONFIG_DIR", str(loopback_config(tmp_path / "ndi")))
    name = f"netbend-show-{os.getpid()}"
    framing = Framing((128, 96), "fit", "smooth")
    outputs = Outputs(framing, frame_size=(64, 64), fps=30)
    outputs.add(NdiOutput(name))
    show = Show(pipe, ShowState(prompt="neon"))
    show.outputs = outputs
    rendered = []
    show.on_frame = lambda f: rendered.append(framing.apply(f.image))
    receiver = subprocess.Popen([sys.executable, str(HERE / "ndi_receiver.py"), name, "8", str(tmp_path / "got.npz")],
                                stdout=subprocess.PIPE, text=True)
    assert receiver.stdout.readline().strip() == "READY"
    stop = threading.Event()
    thread = threading.Thread(target=show.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert receiver.wait(60) == 0, receiver.stdout.read()
    finally:
        stop.set()
        thread.join(10)
        stats = outputs.close()
    video = np.load(tmp_path / "got.npz")["video"]
    assert video.shape == (8, 96, 128, 3)
    frames = np.stack(rendered).astype(np.int16)
    for got in video:
        error = np.abs(frames - got).mean(axis=(1, 2, 3))
        assert error.min() < 4.0, error.min()  # a rendered frame, through NDI's lossy codec
    assert stats["ndi"]["failed"] == 0 and stats["ndi"]["sent"] > 0


# -- a sleeping output does not slow the show ---------------------------------------------------------


class Sleeper(Output):
    name = "sleeper"

    def __init__(self):
        self.sent = 0

    def send(self, picture, frame):
        time.sleep(2.0)  # an output stuck on a network or a disk
        self.sent += 1


def test_an_output_that_sleeps_every_frame_does_not_stop_the_show(pipe):
    show = Show(pipe, ShowState(prompt="neon"))
    outputs = Outputs(frame_size=(64, 64))
    sleeper = Sleeper()
    outputs.add(sleeper)
    show.outputs = outputs
    show.submit(Command("/netbend/output/sleeper/enable", (1,)))
    stop = threading.Event()
    thread = threading.Thread(target=show.run, args=(stop,), daemon=True)
    started = time.monotonic()
    thread.start()
    while show.index < 12 and time.monotonic() - started < 60:
        time.sleep(0.05)
    stop.set()
    thread.join(10)
    elapsed = time.monotonic() - started
    stats = outputs.close(timeout=0.1)  # don't wait out the last sleep
    assert show.index >= 12, f"{show.index} frames in {elapsed:.1f} s"
    # had the show waited on the output, it would have rendered one frame per send
    assert sleeper.sent <= elapsed / 2.0 + 1 and show.index >= 3 * (sleeper.sent + 1)
    # every frame sent or counted as dropped, but the one in its sleep and the one still waiting for it
    assert stats["sleeper"]["sent"] + stats["sleeper"]["dropped"] + 2 >= show.index


# -- wrong options: one line, exit 2 ------------------------------------------------------------------


@pytest.mark.parametrize("args, says", [
    (["--output", "hdmi:1"], "unknown output 'hdmi'; outputs: ndi, syphon"),
    (["--output-size", "1920"], "WIDTHxHEIGHT"),
    (["--output-size", "0x1080"], "2..8192"),
    (["--scaling", "zoom"], "allowed: fit, fill, stretch"),
    (["--upscale", "blurry"], "allowed: smooth, sharp"),
    (["--syphon", "netbend"], "macOS only; Linux offers"),
    (["--spout", "netbend"], "Windows only; Linux offers"),
    (["--ndi", "a (b)"], "NDI source name"),
    (["--ndi-audio"], "--ndi-audio goes with --ndi NAME"),
    (["--record-video", "show.avi"], "ending in .mp4"),
    (["--output-fps", "0"], "1..240"),
])
def test_each_wrong_output_option_is_one_line_and_exit_2(args, says, capsys):
    from live.cli import main

    code = main(["live", "--model", "tiny", "--headless", "--no-audio", "--osc-port", "-1", "--duration", "1", *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("netbend: error:"), lines
    assert says in lines[0]


def test_an_existing_recording_or_a_missing_camera_stops_the_show_before_it_starts(tmp_path, capsys):
    existing = tmp_path / "last-night.mp4"
    existing.write_bytes(b"last night")
    from live.cli import main

    live = ["live", "--model", "tiny", "--headless", "--no-audio", "--osc-port", "-1", "--duration", "1"]
    assert main([*live, "--record-video", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert existing.read_bytes() == b"last night"
    if sys.platform.startswith("linux") and not any(Path("/dev").glob("video*")):
        fresh = tmp_path / "not-made.mp4"
        assert main([*live, "--virtual-camera", "--record-video", str(fresh)]) == 2  # after the model loaded
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "modprobe v4l2loopback" in lines[0], lines
        assert not fresh.exists()  # the camera fails first: no half-made recording is left
