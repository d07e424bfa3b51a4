"""`netbend live` as a user runs it: a separate process, steered over real UDP OSC on
loopback, recording a take that `netbend render --take` and `--replay` then use; and the
same app in a real glfw window under Xvfb."""
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_message_builder import OscMessageBuilder

from engine.demo_audio import demo_audio
from live.media import probe, write_audio_wav
from live.control.takes import load_take
from xvfb import xvfb  # noqa: F401  (session fixture)

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def netbend(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "live.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env or os.environ.copy())


class Osc:
    """The controller side: sends from one UDP socket and reads replies and echoes on it
    (the app's feedback target is this socket too)."""

    def __init__(self, port: int):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port, self.app = self.sock.getsockname()[1], port

    def send(self, address, *args):
        b = OscMessageBuilder(address=address)
        for a in args:
            b.add_arg(a)
        self.sock.sendto(b.build().dgram, ("127.0.0.1", self.app))

    def receive(self, timeout=2.0, until=None):
        got, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                break
            messages = [timed.message for timed in OscPacket(data).messages]  # a message or a bundle
            got += [(m.address, tuple(m.params)) for m in messages]
            if until and any(m.address == until for m in messages):
                break
        return got

    def wait_for_app(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send("/netbend/state")  # answered while the model loads too: wait for /netbend/ready 1
            if ("/netbend/ready", (1,)) in self.receive(0.5, until="/netbend/state/end"):
                return
        raise AssertionError("the app never answered /netbend/state")


@pytest.fixture(scope="module")
def demo_wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "demo.wav"
    write_audio_wav(path, demo_audio(seconds=20.0), 44100)
    return path


def test_osc_controls_a_running_show_records_a_take_and_renders_it(demo_wav, tmp_path):
    port = free_port()
    osc = Osc(port)
    take = tmp_path / "take"
    app = netbend("live", "--headless", "--duration", "12", "--model", "tiny", "--audio-file", str(demo_wav),
                  "--osc-port", str(port), "--osc-feedback", f"127.0.0.1:{osc.port}", "--record", str(take))
    try:
        osc.wait_for_app()
        osc.receive(0.3)  # drain
        osc.send("/netbend/bend/2/operator", "rotate_spatial")  # bend 2 is a rotate: a change, so echoed
        osc.send("/netbend/bend/2/layer", 5)  # an index into the U-Net points
        osc.send("/netbend/bend/2/scale", 0.0, 3.1)
        osc.send("/netbend/bend/2/feature", "rms")
        osc.send("/netbend/prompt", "stained glass cathedral")
        echoes = osc.receive(2.0)
        echoed = [a for a, _ in echoes]
        for address in ("/netbend/bend/2/operator", "/netbend/bend/2/layer", "/netbend/bend/2/scale",
                        "/netbend/prompt"):
            assert address in echoed, (address, echoes)

        # bad input: an error reply each, nothing changes, the app keeps answering
        bad = [("/netbend/strength", "loud"), ("/netbend/strength", float("nan")), ("/netbend/bend/2/operator", "wobble"),
               ("/netbend/nope", 1), ("/netbend/bend/2/layer", "nowhere")]
        for address, arg in bad:
            osc.send(address, arg)
        osc.sock.sendto(b"\x00garbage\xff", ("127.0.0.1", port))
        replies = osc.receive(2.0)
        errors = [args for a, args in replies if a == "/netbend/error"]
        assert len(errors) >= len(bad), replies
        assert any("valid operators" in str(e) for e in errors)

        osc.send("/netbend/state")
        state = dict(osc.receive(2.0, until="/netbend/state/end"))
        assert state["/netbend/bend/2/operator"] == ("rotate_spatial",)
        assert state["/netbend/prompt"] == ("stained glass cathedral",)
        assert state["/netbend/strength"][0] == pytest.approx(0.5)  # the bad strengths changed nothing

        osc.send("/netbend/freeze", 1)  # a frozen picture still sends the audio features out
        osc.receive(0.3)
        frozen = osc.receive(1.0)
        assert any(a.startswith("/netbend/audio/") for a, _ in frozen), frozen
        osc.send("/netbend/freeze", 0)
        out, err = app.communicate(timeout=90)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["frames"] > 10 and stats["fps"] > 0 and stats["latency_ms_p50"] > 0
    assert stats["upload"].startswith("host (the model runs on cpu")  # the frame path, chosen and reported

    recorded = load_take(take)
    addresses = [c.address for c in recorded.commands]
    assert addresses[:5] == ["/netbend/bend/2/operator", "/netbend/bend/2/layer", "/netbend/bend/2/scale",
                             "/netbend/bend/2/feature", "/netbend/prompt"]
    assert "/netbend/strength" not in addresses  # refused commands are not part of the take
    assert len(recorded.features) > 100  # the feature stream, every 10 ms

    video = tmp_path / "take.mp4"
    render = subprocess.run([sys.executable, "-m", "live.cli", "render", "--take", str(take), "-o", str(video),
                             "--fps", "10", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert render.returncode == 0, render.stderr
    assert probe(video).frames == math.ceil(recorded.duration * 10)
    assert probe(video).audio_codec == "aac"  # the show ran from a file: the take has its audio

    replay = netbend("live", "--headless", "--model", "tiny", "--no-audio", "--osc-port", "-1", "--replay", str(take))
    out, err = replay.communicate(timeout=120)
    assert replay.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["frames"] > 0


def test_unknown_device_monitor_and_preset_list_what_exists(tmp_path):
    for args, needle in [(["--audio-device", "no-such-soundcard", "--headless"], "available inputs"),
                         (["--preset", "no-such-preset", "--headless"], "available"),
                         (["--preset", "paper-piano-mesh", "--headless"], "stream presets")]:
        proc = netbend("live", "--model", "tiny", "--duration", "1", "--osc-port", "-1", *args)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (args, err)
        assert err.startswith("netbend: error:") and needle in err, (args, err)


def test_the_show_in_a_real_window(xvfb, tmp_path):
    """The whole app with its glfw window under Xvfb: frames reach the screen, and the app
    measures audio-to-photon latency."""
    env = os.environ.copy()
    env["DISPLAY"] = xvfb.display
    before = xvfb.screen()
    app = netbend("live", "--model", "tiny", "--no-audio", "--duration", "15", "--osc-port", "-1", env=env)
    try:
        shown = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and app.poll() is None:
            screen = xvfb.screen()  # what X really shows, read from Xvfb's framebuffer
            if screen.astype(int).std(axis=(0, 1)).max() > 10:  # a generated frame, not one flat colour
                shown = screen
                break
            time.sleep(0.2)
        out, err = app.communicate(timeout=120)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0, err
    assert shown is not None and not (shown == before).all(), "no generated frame reached the screen"
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["frames"] > 5 and stats["display_fps"] > 5
    assert stats["photon_latency_ms_p50"] > 0
    assert stats["upload"].startswith("host (")


def test_an_unknown_monitor_lists_the_monitors(xvfb):
    env = os.environ.copy()
    env["DISPLAY"] = xvfb.display
    proc = netbend("live", "--model", "tiny", "--no-audio", "--duration", "1", "--osc-port", "-1", "--fullscreen",
                   "--monitor", "projector-that-is-not-there", env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "projector-that-is-not-there" in err and "1280x720" in err, err


def test_a_missing_display_says_to_use_headless(tmp_path):
    env = os.environ.copy()
    env["DISPLAY"] = ":99987"
    proc = netbend("live", "--model", "tiny", "--no-audio", "--duration", "1", "--osc-port", "-1", env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--headless" in err, err


def test_live_options_are_checked_when_made():
    from live.show.app import LiveOptions

    for kwargs, message in [({"osc_port": -1}, "--osc-port must be a UDP port 0..65535.*--no-osc"),
                            ({"osc_port": 70000}, "--osc-port must be"),
                            ({"duration": 0.0}, "--duration must be > 0"),
                            ({"features_hz": 0.0}, "--features-hz must be > 0"),
                            ({"audio_device": "1", "audio_file": Path("a.wav")}, "not both"),
                            ({"no_audio": True, "audio_device": "1"}, "--no-audio takes no"),
                            ({"play": True}, "--play plays an --audio-file")]:
        with pytest.raises(ValueError, match=message):
            LiveOptions(**kwargs)
    assert LiveOptions(osc_port=None).osc_port is None  # no OSC: None, not a magic port number

