"""live/outputs on their own: output size and scaling, the newest-wins hand-off, outputs
that are slow or fail, NDI to a real receiver, the errors of the outputs this machine
cannot have (Syphon, Spout, a virtual camera), and the input audio as outputs read it.
The recording has its own tests, in test_outputs_recording.py."""
import importlib.util
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from live.outputs.audio_tap import AudioTap
from live.outputs.fanout import Outputs
from live.outputs.framing import Framing, parse_output_size, place
from live.outputs.handoff import Handoff
from live.outputs.output import Output, OutputError, import_for
from live.outputs.platforms import platform_outputs
from live.outputs.texture_sharing import SpoutOutput, SyphonOutput, texture_sharing_output
from live.outputs.virtual_camera import VirtualCamera
from helpers_show import Frame, Tone, gradient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# -- output size and scaling ------------------------------------------------------------------------


def test_place_fit_fill_stretch():
    assert place((64, 64), (0, 0, 1920, 1080), "fit") == (420, 0, 1080, 1080)
    assert place((64, 64), (0, 0, 1920, 1080), "fill") == (0, -420, 1920, 1920)
    assert place((64, 64), (0, 0, 1920, 1080), "stretch") == (0, 0, 1920, 1080)
    assert place((512, 256), (10, 20, 100, 100), "fit") == (10, 45, 100, 50)  # offsets kept
    with pytest.raises(ValueError, match="fit, fill, stretch"):
        place((1, 1), (0, 0, 1, 1), "zoom")


def test_framing_makes_the_picture_at_the_output_size():
    frame = gradient(0, 64, 32)
    fit = Framing((128, 128), "fit", "sharp").apply(frame)
    assert fit.shape == (128, 128, 3)
    assert (fit[:32] == 0).all() and (fit[-32:] == 0).all()  # bars above and below
    assert np.array_equal(fit[32:96], frame.repeat(2, 0).repeat(2, 1))  # sharp at 2x: each pixel a 2x2 block
    fill = Framing((32, 32), "fill", "sharp").apply(frame)
    assert np.array_equal(fill, frame[:, 16:48])  # the middle, cropped, no bars
    stretch = Framing((64, 64), "stretch", "sharp").apply(frame)
    assert np.array_equal(stretch, frame.repeat(2, 0))
    smooth = Framing((640, 320), "fit", "smooth").apply(frame)
    assert smooth.shape == (320, 640, 3) and len(np.unique(smooth[100, :, 0])) > 64  # interpolated, not blocks
    assert Framing().apply(frame) is frame  # no size: the frame as rendered


def test_framing_in_a_window_shows_what_the_outputs_get():
    framing = Framing((1920, 1080), "fill")
    picture, rect = framing.in_viewport((64, 64), (0, 0, 1280, 1024))
    assert picture == (0, 152, 1280, 720)  # the 16:9 picture fitted into a 5:4 window
    assert rect == (0, -128, 1280, 1280)  # the frame fills the picture, cropped top and bottom
    assert Framing(None, "stretch").in_viewport((64, 64), (0, 0, 800, 600)) == ((0, 0, 800, 600), (0, 0, 800, 600))


@pytest.mark.parametrize("text, message", [("1920", "WIDTHxHEIGHT"), ("axb", "WIDTHxHEIGHT"), ("0x100", "2..8192"),
                                           ("10000x100", "2..8192")])
def test_bad_output_sizes_say_what_is_allowed(text, message):
    with pytest.raises(ValueError, match=message):
        parse_output_size(text)
    assert parse_output_size("1920x1080") == (1920, 1080) and parse_output_size(None) is None
    with pytest.raises(ValueError, match="smooth, sharp"):
        Framing(None, "fit", "blurry")


# -- the hand-off -----------------------------------------------------------------------------------


def test_handoff_keeps_the_newest_and_counts_what_it_drops():
    h = Handoff(capacity=2)
    assert h.put(1) and h.put(2) and not h.put(3)
    assert h.dropped == 1 and h.take(0) == 2 and h.take(0) == 3 and h.take(0.01) is None
    h.put(4)
    assert h.clear() == 1 and h.dropped == 2 and len(h) == 0
    with pytest.raises(ValueError):
        Handoff(0)


# -- slow and failing outputs -----------------------------------------------------------------------


class Sleepy(Output):
    name = "sleepy"

    def __init__(self, seconds):
        self.seconds, self.got = seconds, []

    def send(self, picture, frame):
        time.sleep(self.seconds)
        self.got.append(frame.index)


class Broken(Output):
    name = "broken"

    def send(self, picture, frame):
        raise OSError("the cable is out")


def test_a_slow_and_a_failing_output_never_make_the_render_thread_wait(caplog):
    outputs = Outputs(frame_size=(64, 48))
    sleepy = Sleepy(0.25)
    outputs.add(sleepy)
    outputs.add(Broken())
    puts = []
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="netbend.outputs"):
        for i in range(100):  # 100 frames at 100 fps
            t = time.perf_counter()
            outputs.put(Frame(gradient(i), i, 0.0, time.monotonic()))
            puts.append(time.perf_counter() - t)
            time.sleep(0.01)
        time.sleep(0.3)
    stats = outputs.close()
    elapsed = time.monotonic() - started
    # a put is a copy and two short locks, never a wait on the output's 0.25 s (a loaded CI
    # machine can still preempt the odd one)
    assert sorted(puts)[90] < 0.01 and max(puts) < 0.2
    assert 2 <= stats["sleepy"]["sent"] <= elapsed / 0.25 + 1 and stats["sleepy"]["dropped"] >= 100 - elapsed / 0.25
    assert stats["sleepy"]["sent"] + stats["sleepy"]["dropped"] == 100  # every frame sent or counted
    assert 240 <= stats["sleepy"]["send_ms_p50"] < 1000  # what it costs per picture, for the HUD and the bench
    assert stats["broken"]["failed"] >= 90 and stats["broken"]["sent"] == 0
    assert stats["broken"]["dropped"] == 100  # each frame either pushed out or failed: all counted
    logged = [r for r in caplog.records if "broken" in r.getMessage()]
    assert len(logged) == 1 and "the cable is out" in logged[0].getMessage()  # once, with the reason
    assert sleepy.got == sorted(sleepy.got)  # in order, newest first after each sleep


def test_outputs_switch_by_name_and_report_each():
    outputs = Outputs(frame_size=(64, 48))
    fast = Sleepy(0.0)
    outputs.add(fast)
    outputs.enable("sleepy", False)
    for i in range(5):
        outputs.put(Frame(gradient(i), i, 0.0, time.monotonic()))
    time.sleep(0.1)
    assert fast.got == [] and outputs["sleepy"].skipped == 5 and outputs.states() == (("sleepy", False),)
    outputs.enable("sleepy", True)
    outputs.put(Frame(gradient(9), 9, 0.0, time.monotonic()))
    time.sleep(0.2)
    assert fast.got == [9]
    assert outputs.hud_lines()[0].startswith("sleepy:") and "dropped" in outputs.hud_lines()[0]
    with pytest.raises(OutputError, match="no output named 'ndi'; outputs: sleepy"):
        outputs.enable("ndi", True)
    with pytest.raises(OutputError, match="already an output named"):
        outputs.add(Sleepy(0))
    outputs.close()


def test_pictures_are_copies_the_render_thread_cannot_overwrite():
    outputs = Outputs(frame_size=(64, 48))
    slow = Sleepy(0.2)
    outputs.add(slow)
    kept = []
    slow.send = lambda picture, frame: kept.append(picture.copy()) or time.sleep(0.2)
    buffer = gradient(1)
    outputs.put(Frame(buffer, 1, 0.0, 0.0))
    buffer[:] = 0  # the render thread's ring reuses its buffers
    time.sleep(0.1)
    outputs.close()
    assert np.array_equal(kept[0], gradient(1))


# -- NDI to a real receiver -------------------------------------------------------------------------


@pytest.fixture
def ndi_loopback(tmp_path, monkeypatch):
    pytest.importorskip("cyndilib", reason="NDI needs cyndilib (pip install -e .[test])")
    sys.path.insert(0, str(HERE))
    from ndi_receiver import loopback_config

    folder = loopback_config(tmp_path / "ndi")
    monkeypatch.setenv("NDI_CONFIG_DIR", str(folder))
    return folder


def receive_ndi(name: str, count: int, out: Path, audio: bool = False) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, str(HERE / "ndi_receiver.py"), name, str(count), str(out),
                          *(["--audio"] if audio else [])], stdout=subprocess.PIPE, text=True)
    return p


def test_ndi_frames_reach_a_real_receiver_as_sent(ndi_loopback, tmp_path):
    from live.outputs.ndi import NdiOutput

    name = f"netbend-test-{os.getpid()}"
    framing = Framing((96, 64), "fit")
    outputs = Outputs(framing, frame_size=(64, 48), fps=30)
    tone = Tone()
    outputs.add(NdiOutput(name, audio=tone))
    receiver = receive_ndi(name, 10, tmp_path / "got.npz", audio=True)
    assert receiver.stdout.readline().strip() == "READY"
    sent, n = [], 0
    while receiver.poll() is None and n < 600:
        image = gradient(n)
        sent.append(framing.apply(image))
        outputs.put(Frame(image, n, time.monotonic(), time.monotonic()))
        n += 1
        time.sleep(1 / 30)
    stats = outputs.close()
    assert receiver.wait(10) == 0, receiver.stdout.read()
    got = np.load(tmp_path / "got.npz")
    video = got["video"]
    assert video.shape == (10, 64, 96, 3)  # at the output size
    sent = np.stack(sent).astype(np.int16)
    for frame in video:
        error = np.abs(sent - frame).mean(axis=(1, 2, 3))  # against every frame sent
        best = int(np.argmin(error))
        assert error[best] < 3.0  # NDI's codec is lossy: within a few levels of 255
        assert np.sort(error)[1] > 2 * error[best]  # and unmistakably that frame, not a neighbour
    assert stats["ndi"]["sent"] + stats["ndi"]["dropped"] == n and stats["ndi"]["failed"] == 0
    assert len(got["audio"]) > 0.1 * tone.sample_rate  # the input audio went along


def test_ndi_name_errors():
    from live.outputs.ndi import NdiOutput

    for bad in ("", "a (b)"):
        with pytest.raises(OutputError, match="NDI source name"):
            NdiOutput(bad)


# -- what this machine cannot have ------------------------------------------------------------------


def test_syphon_and_spout_on_the_wrong_platform_name_what_it_offers():
    with pytest.raises(OutputError, match="macOS only; Linux offers --ndi NAME.*--virtual-camera"):
        SyphonOutput("netbend", platform="linux")
    with pytest.raises(OutputError, match="Windows only; macOS offers .*--syphon NAME"):
        SpoutOutput("netbend", platform="darwin")
    with pytest.raises(OutputError, match="Linux has neither"):
        texture_sharing_output("netbend", platform="linux")
    assert isinstance(texture_sharing_output("netbend", platform="darwin"), SyphonOutput)
    assert isinstance(texture_sharing_output("netbend", platform="win32"), SpoutOutput)
    assert "--spout NAME" in platform_outputs("win32") and "--syphon NAME" not in platform_outputs("win32")
    with pytest.raises(OutputError, match="--syphon needs a sender name, e.g. --syphon netbend"):
        SyphonOutput("  ", platform="darwin")
    assert SpoutOutput(" vj ", platform="win32").describe() == "Spout sender 'vj'"
    assert SyphonOutput("vj", platform="darwin").describe() == "Syphon server 'vj'"
    # where the wrapper library is missing (on Linux, always), opening says what to install
    if importlib.util.find_spec("syphon") is None:
        with pytest.raises(OutputError, match=r"^--syphon needs syphon-python: pip install syphon-python \("):
            SyphonOutput("netbend", platform="darwin").open((64, 48), 30)
    if importlib.util.find_spec("SpoutGL") is None:
        with pytest.raises(OutputError, match=r"^--spout needs SpoutGL: pip install SpoutGL \("):
            SpoutOutput("netbend", platform="win32").open((64, 48), 30)
    with pytest.raises(OutputError, match=r"^--x needs no-such-lib, which brings y: pip install no-such-lib \("):
        import_for("--x", "no-such-lib", brings=", which brings y")


@pytest.mark.skipif(not sys.platform.startswith("linux") or any(Path("/dev").glob("video*")),
                    reason="checks the error when no v4l2loopback device exists")
def test_no_virtual_camera_says_how_to_get_one():
    with pytest.raises(OutputError, match="modprobe v4l2loopback"):
        VirtualCamera().open((64, 48), 30)
    with pytest.raises(OutputError, match="/dev/video7.*modprobe v4l2loopback"):
        VirtualCamera("/dev/video7").open((64, 48), 30)


def test_audio_tap_fills_a_lost_stretch_with_silence():
    class Ring:
        sample_rate, frames_received = 8000, 100

        def read_since(self, position):  # the reader was away too long: only the newest 50 are left
            return np.ones(50, np.float32), 400

    tap = AudioTap(Ring())
    tap.start()
    samples = tap.read()
    assert len(samples) == 300 and tap.lost == 250 and (samples[:250] == 0).all() and (samples[250:] == 1).all()
    with pytest.raises(ValueError, match="no read_since"):
        AudioTap(object())


# -- the window draws the same picture (one home for output size and scaling) -----------------------


@pytest.mark.parametrize("mode", ["fit", "fill", "stretch"])
@pytest.mark.parametrize("upscale", ["sharp", "smooth"])
def test_the_window_shows_what_the_outputs_get(monkeypatch, mode, upscale):
    moderngl = pytest.importorskip("moderngl")
    from live.display.display import Display
    from live.show.mailbox import Frame as ShownFrame

    monkeypatch.delenv("DISPLAY", raising=False)
    ctx = moderngl.create_standalone_context(backend="egl")
    try:
        framing = Framing((192, 108), mode, upscale)
        display = Display.offscreen(ctx, (192, 108))
        display.framing = framing
        image = (np.random.default_rng(1).random((32, 64, 3)) * 255).astype(np.uint8)
        display.upload(ShownFrame(image, 0, 0.0, 0.0))
        display.draw(0.0)
        shown, sent = display.read_pixels().astype(int), framing.apply(image).astype(int)
        display.release()
    finally:
        ctx.release()
    assert shown.shape == sent.shape == (108, 192, 3)
    if upscale == "sharp":  # the same texel for every pixel (measured: all equal on Mesa)
        assert (shown == sent).all(axis=-1).mean() > 0.99
    else:  # bilinear both ways; GL's fixed-point weights differ by a level here and there
        assert np.abs(shown - sent).mean() < 1.0
    assert ((shown == 0).all(axis=-1) == (sent == 0).all(axis=-1)).mean() > 0.99  # bars in the same places


def test_a_file_source_gives_every_sample_in_order_like_a_line_in(tmp_path):
    from live.audio.filesource import FileSource
    from live.media import write_audio_wav

    rate = 8000
    ramp = (np.arange(rate * 2) % 1000 / 1000.0).astype(np.float32)  # 2 s, recognisable everywhere
    write_audio_wav(tmp_path / "ramp.wav", ramp, rate)
    source = FileSource(tmp_path / "ramp.wav")
    assert source.frames_received == 0 and len(source.read_since(0)[0]) == 0  # not started: nothing yet
    source.start()
    tap = AudioTap(source)
    tap.start()
    got = []
    for _ in range(5):
        time.sleep(0.1)
        got.append(tap.read())
    source.stop()
    samples = np.concatenate(got)
    start = tap.position - len(samples)
    assert 0.4 * rate <= len(samples) <= 0.9 * rate and tap.lost == 0
    assert np.abs(samples - ramp[start:start + len(samples)]).max() < 1e-3  # contiguous: no gap, no repeat
