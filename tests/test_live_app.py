"""`netbend live` as a user runs it: a separate process, steered over real UDP OSC on
loopback, recording a take that `netbend render --take` and `--replay` then use; and the
same app in a real glfw window under Xvfb."""
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers_live import ROOT, Osc, demo_wav, free_port, netbend  # noqa: F401  (demo_wav: the fixture)
from live.media import probe
from live.control.takes import load_take
from pulse import pulse  # noqa: F401  (session fixture)
from xvfb import xvfb  # noqa: F401  (session fixture)


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
    assert stats["backend"] == "trace"  # --backend auto on a CPU

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


def test_a_walk_preset_is_refused_by_live_with_the_command_that_renders_it():
    proc = netbend("live", "--model", "tiny", "--duration", "1", "--osc-port", "-1", "--preset", "paper-piano-mesh",
                   "--headless")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.startswith("netbend: error:") and "stream presets" in err and "netbend render --preset" in err, err


LIVE = ["live", "--headless", "--model", "tiny", "--osc-port", "-1"]


@pytest.mark.parametrize("argv, needle", [([*LIVE, "--preset", "no-such"], "unknown preset 'no-such'"),
                                          ([*LIVE, "--audio-device", "no-such-soundcard"], "unknown audio input device"),
                                          (["render", "--preset", "no-such", "-o", "x.mp4"], "unknown preset 'no-such'"),
                                          (["render", "no-such.wav", "-o", "x.mp4"], "no-such.wav: no such file")])
def test_a_wrong_preset_device_or_audio_file_is_reported_before_the_model_code_loads(argv, needle, tmp_path):
    """Before the fix the error handler imported diffusers (seconds) only to catch its errors,
    and a wrong audio device, or a render's wrong preset or audio, was found only then."""
    code = f"import sys; from live.cli import main; code = main({argv!r}); print(code, 'diffusers' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.split() == ["2", "False"], (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("netbend: error:") and needle in proc.stderr


def test_every_user_error_type_the_cli_names_exists():
    import importlib

    from live.cli import _USER_ERRORS

    for home, name in _USER_ERRORS:
        assert issubclass(getattr(importlib.import_module(home), name), Exception), (home, name)


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
    from live.show.options import LiveOptions

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


def test_live_options_check_every_field_and_name_it():
    from live.show.options import LiveOptions

    for kwargs, message in [({"gain_db": 100.0}, "--gain must be -60..40 dB"),
                            ({"gate_db": 3.0}, "--gate must be a level in dBFS"),
                            ({"channels": "left"}, "--channels must be 1-based"),
                            ({"channels": "0,1"}, "--channels must be 1-based"),
                            ({"tempo": 5.0}, "--tempo must be 20..300 BPM"),
                            ({"quantize": "sometimes"}, "--quantize must be one of off, beat, bar"),
                            ({"backend": "onnx"}, "unknown --backend 'onnx'"),
                            ({"size": (100, 64)}, "bad --size 100x64.*multiples of 8"),
                            ({"oscquery_port": -1}, "--oscquery-port must be"),
                            ({"osc_feedback": ("127.0.0.1", 0)}, "--osc-feedback must be"),
                            ({"slots": ["default", ""]}, "--slots must be preset names"),
                            ({"preset": ""}, "--preset must be"),
                            ({"outputs": "ndi"}, "outputs must be a live.outputs.options.OutputOptions")]:
        with pytest.raises(ValueError, match=message):
            LiveOptions(**kwargs)
    assert LiveOptions(channels="2,1").channel_list() == [2, 1] and LiveOptions().channel_list() is None
    assert LiveOptions(oscquery_port=0).oscquery_port == 0  # 0: no OSCQuery, as OSCQuery tools spell it


def test_the_starting_state_has_the_command_lines_gain_and_quantize(tmp_path):
    """--gain and --quantize reach /netbend/state from the first reply on (before the fix
    the state said 0 dB until the first /netbend/gain, and quantize off once the show ran)."""
    port = free_port()
    osc = Osc(port)
    app = netbend("live", "--headless", "--duration", "6", "--model", "tiny", "--no-audio", "--gain", "6",
                  "--quantize", "beat", "--osc-port", str(port), "--oscquery-port", "0")
    try:
        loading = {}
        while "/netbend/gain" not in loading and app.poll() is None:  # answered while the model loads
            osc.send("/netbend/state")
            loading = dict(osc.receive(0.5, until="/netbend/state/end"))
        osc.send("/netbend/prompt", "sent while loading")  # held, then handed to the show in order
        osc.wait_for_app(timeout=240)  # /netbend/ready 1: the show runs, so the state is the show's own
        osc.send("/netbend/state")
        running = dict(osc.receive(2.0, until="/netbend/state/end"))
        out, err = app.communicate(timeout=90)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0, err
    for state in (loading, running):
        assert state["/netbend/gain"] == (6.0,)
        assert state["/netbend/quantize"] == ("beat",)
    assert loading["/netbend/ready"] == (0,) and running["/netbend/ready"] == (1,)
    assert running["/netbend/prompt"] == ("sent while loading",)  # nothing sent before the start is lost


def test_a_line_in_without_channels_runs(pulse):
    """`--audio-device` alone records the device's first channel (before the fix it asked
    AudioInput for channels=None and stopped with "channels must be a count")."""
    proc = subprocess.run([sys.executable, "-m", "live.cli", "live", "--headless", "--model", "tiny",
                           "--audio-device", "pulse", "--gain", "3", "--duration", "3", "--osc-port", "-1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["frames"] > 0 and stats["audio_overruns"] >= 0
