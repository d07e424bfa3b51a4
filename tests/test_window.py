"""The show window and its shaders: a real glfw window under Xvfb, real moderngl on Mesa
(llvmpipe), a standalone EGL context for the headless path, shader sources without GL."""
from __future__ import annotations

import threading
import time

import glfw
import moderngl
import numpy as np
import pytest

from live.display import shaders
from live.display.display import Display, Meter, letterbox, render_hud
from live.display.window import MonitorError, Window, WindowError, list_monitors, select_monitor
from live.show.mailbox import Frame, Mailbox
from xvfb import xvfb  # noqa: F401  (the session fixture; tests/ is on sys.path)

FRAME_W, FRAME_H = 256, 128  # 2:1, so a 16:9 window gets bars top and bottom
SQUARE = (slice(32, 96), slice(32, 96))  # rows, columns of the red square in the frame
RED = (255, 0, 0)


def gradient_frame() -> np.ndarray:
    """R rises with x, G with y, B constant; a red square near the top-left corner."""
    x = np.arange(FRAME_W)[None, :].repeat(FRAME_H, 0)
    y = np.arange(FRAME_H)[:, None].repeat(FRAME_W, 1)
    image = np.stack([x, 2 * y, np.full_like(x, 64)], axis=-1).astype(np.uint8)
    image[SQUARE] = RED
    return image


def solid(colour, size=(64, 32)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (size[1], size[0], 3)).copy()


def frame(image, index=0, capture=0.0, rendered=0.0) -> Frame:
    return Frame(image=image, index=index, capture_time=capture, rendered_time=rendered)


def check_letterboxed_frame(pixels: np.ndarray) -> None:
    """``pixels`` (H, W, 3, top row first) shows the test frame letterboxed: black bars
    where the frame does not reach, the red square and the gradient where it does."""
    h, w = pixels.shape[:2]
    x0, y0_gl, fw, fh = letterbox((FRAME_W, FRAME_H), (0, 0, w, h))
    top = h - (y0_gl + fh)  # first frame row counted from the top
    scale = fw / FRAME_W
    assert fh < h, "test geometry: expected bars top and bottom"
    assert (pixels[: top - 1] == 0).all() and (pixels[top + fh + 1:] == 0).all(), "bars are not black"
    # The red square's centre, in window pixels.
    sy, sx = (SQUARE[0].start + SQUARE[0].stop) / 2, (SQUARE[1].start + SQUARE[1].stop) / 2
    assert tuple(pixels[top + int(sy * scale), x0 + int(sx * scale)]) == RED
    # The gradient away from the square: bilinear sampling of a linear ramp is the ramp.
    for px in range(x0 + int(120 * scale), x0 + fw - 4, 37):
        for py in range(top + 4, top + fh - 4, 23):
            u = (px - x0 + 0.5) / scale - 0.5
            v = (py - top + 0.5) / scale - 0.5
            expected = np.array([u, 2 * v, 64])
            got = pixels[py, px].astype(float)
            assert np.abs(got - expected).max() <= 2.0, (px, py, got, expected)


@pytest.fixture
def window(xvfb):
    win = Window((640, 360))
    yield win
    win.close()


# --- shader sources, no GL ---------------------------------------------------------------


def test_every_shader_is_found_through_importlib_resources():
    names = shaders.available()
    assert {"display", "hud"} <= set(names)
    for name in names:
        source = shaders.load(name)
        assert source.file == f"shaders/{name}.glsl"
        assert set(source.stages) == {"vertex_shader", "fragment_shader"}
        for stage, define in shaders.STAGES.items():
            lines = source.stages[stage].split("\n")
            assert lines[source.version_line - 1].startswith("#version 330")
            assert lines[source.version_line] == f"#define {define}"
    crossfade = shaders.load("display", {"CROSSFADE": 1})  # the display's crossfading variant
    assert crossfade.file == "shaders/display.glsl" and crossfade.inserted == 2
    assert crossfade.stages["fragment_shader"].split("\n")[crossfade.version_line + 1] == "#define CROSSFADE 1"


def test_unknown_shader_lists_the_available_ones():
    with pytest.raises(shaders.ShaderError, match=r"'nope\.glsl' not found.*: display, hud"):
        shaders.load("nope")


def test_malformed_shader_files_are_refused_with_the_file_name():
    with pytest.raises(shaders.ShaderError, match=r"shaders/bad\.glsl: the first line of code must be '#version"):
        shaders.parse("void main() {}\n#version 330 core\n", "bad")
    with pytest.raises(shaders.ShaderError, match=r"shaders/bad\.glsl:3: #include is not supported"):
        shaders.parse("// c\n#version 330 core\n#include \"x.glsl\"\nVERTEX_SHADER FRAGMENT_SHADER", "bad")
    with pytest.raises(shaders.ShaderError, match=r"shaders/bad\.glsl: no FRAGMENT_SHADER section"):
        shaders.parse("#version 330 core\n#if defined VERTEX_SHADER\n#endif\n", "bad")


def test_compile_logs_are_mapped_back_to_file_lines():
    text = shaders.read("display")
    source = shaders.parse(text, "display", defines={"GAMMA": 2.2})  # 2 inserted lines
    target = next(i for i, line in enumerate(text.split("\n"), 1) if "f_color = " in line)
    compiled = target + 2
    logs = {
        "mesa": f"0:{compiled}(12): error: `foo' undeclared",
        "nvidia": f"0({compiled}) : error C1008: undefined variable \"foo\"",
        "amd/apple": f"ERROR: 0:{compiled}: 'foo' : undeclared identifier",
    }
    for driver, log in logs.items():
        message = shaders.explain(source, log, "fragment_shader")
        assert message.startswith("shader shaders/display.glsl (fragment shader) failed to compile"), driver
        assert f"shaders/display.glsl:{target}" in message, (driver, message)
        assert "f_color = vec4(texture(u_frame" in message, (driver, message)
    assert "inserted preamble" in shaders.explain(source, "0:3(1): error: x")


# --- GL, headless (EGL) ----------------------------------------------------------------------


@pytest.fixture
def egl(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)  # headless means no X at all
    ctx = moderngl.create_standalone_context(backend="egl")
    yield ctx
    ctx.release()


def test_broken_shader_compile_error_names_the_file_and_line(egl, monkeypatch):
    good = shaders.read("display")
    lines = good.split("\n")
    broken_line = next(i for i, line in enumerate(lines, 1) if "vec3 newest =" in line)
    lines[broken_line - 1] = lines[broken_line - 1].replace("u_frame", "u_frme")  # undeclared
    monkeypatch.setattr(shaders, "read", lambda name: "\n".join(lines))
    with pytest.raises(shaders.ShaderError) as info:
        shaders.build(egl, "display", {"CROSSFADE": 1})  # the variant that compiles that line
    message = str(info.value)
    assert "shaders/display.glsl (fragment shader) failed to compile" in message
    assert f"shaders/display.glsl:{broken_line}:" in message and "u_frme" in message


def test_headless_display_on_egl_renders_the_frame_letterboxed(egl):
    display = Display.offscreen(egl, (640, 480))  # 4:3 target, 2:1 frame
    display.draw(0.0)
    assert (display.read_pixels() == 0).all(), "an empty display is the clear colour"
    display.upload(frame(gradient_frame()))
    display.draw(0.0)
    pixels = display.read_pixels()
    assert pixels.shape == (480, 640, 3)
    check_letterboxed_frame(pixels)
    # Same size: the textures are reused, not re-made.
    textures = list(display._textures)
    display.upload(frame(gradient_frame(), index=1, rendered=1.0))
    assert display._textures == textures
    display.release()


def test_letterbox_keeps_the_aspect_ratio():
    assert letterbox((512, 512), (0, 0, 1920, 1080)) == (420, 0, 1080, 1080)
    assert letterbox((1920, 1080), (0, 0, 1280, 720)) == (0, 0, 1280, 720)
    assert letterbox((256, 128), (10, 20, 640, 360)) == (10, 40, 640, 320)


def test_hud_text_is_drawn_over_the_frame(egl):
    image = render_hud(["60.0 fps", Meter.of("rms", 0.5)])
    assert image.shape[2] == 4 and image[..., 3].max() == 255  # text is opaque, panel is not
    assert Meter.of("x", float("nan")).value == 0.0 and Meter.of("x", 3).value == 1.0

    display = Display.offscreen(egl, (640, 360))
    display.upload(frame(solid((0, 0, 255), (64, 36))))
    display.set_hud(["HUD"])
    display.draw(0.0)
    assert (display.read_pixels() == (0, 0, 255)).all(), "the HUD is off by default"
    display.hud_enabled = True
    display.draw(0.0)
    pixels = display.read_pixels()
    corner = pixels[8:30, 8:40].reshape(-1, 3).astype(int)
    panel = round(255 * (1 - 150 / 255))  # blue under the panel's alpha 150 black
    assert (np.abs(corner[:, 2] - panel) <= 2).mean() > 0.5, "the HUD panel darkens the frame under it"
    assert (corner.min(axis=-1) > 200).any(), "white text in the panel"
    assert (pixels[100:, 100:] == (0, 0, 255)).all(), "the rest of the frame is untouched"
    display.release()


# --- a real glfw window under Xvfb ----------------------------------------------------------


def test_window_shows_the_newest_frame(window, xvfb):
    mailbox: Mailbox[Frame] = Mailbox()
    captured = time.monotonic()
    mailbox.put(frame(gradient_frame(), capture=captured, rendered=captured))
    window.run(mailbox, threading.Event(), on_key=lambda a: None, hud_lines=lambda: [], max_frames=3)

    pixels = window.read_pixels()  # glReadPixels of the back buffer (moderngl screen.read)
    assert pixels.shape == (360, 640, 3)
    check_letterboxed_frame(pixels)

    # What reached the X screen after the swap: Xvfb's own framebuffer (with the X
    # pointer, which Xvfb draws into it, moved off the window first).
    x, y = glfw.get_window_pos(window.handle)
    glfw.set_cursor_pos(window.handle, 1270 - x, 710 - y)
    window.run(mailbox, threading.Event(), max_frames=1)
    for _ in range(50):
        on_screen = xvfb.screen()[y:y + 360, x:x + 640]
        if np.abs(on_screen.astype(int) - pixels).max() <= 1:
            break
        time.sleep(0.02)
    check_letterboxed_frame(on_screen)

    assert window.frames_shown == 1 and len(window.latencies) == 1
    assert 0.0 <= window.latencies[0] < 5.0
    assert window.fps > 0.0


def test_window_crossfades_between_generated_frames(xvfb):
    now = [10.0]
    with Window((320, 160), clock=lambda: now[0]) as win:
        mailbox: Mailbox[Frame] = Mailbox()
        stop = threading.Event()
        a, b = (200, 40, 0), (0, 120, 240)
        mailbox.put(frame(solid(a), index=0, capture=9.9, rendered=10.0))
        win.run(mailbox, stop, max_frames=1)
        assert (win.read_pixels() == a).all()
        mailbox.put(frame(solid(b), index=1, capture=10.1, rendered=10.2))  # 0.2 s later
        for t, mix in [(10.2, 0.0), (10.3, 0.5), (10.35, 0.75), (10.4, 1.0), (11.0, 1.0)]:
            now[0] = t
            win.run(mailbox, stop, max_frames=1)
            expected = (1 - mix) * np.array(a) + mix * np.array(b)
            got = win.read_pixels().reshape(-1, 3).astype(float)
            assert np.abs(got - expected).max() <= 2.0, (t, got[0], expected)
        assert win.frames_shown == 2
        assert win.latencies[-1] == pytest.approx(10.2 - 10.1)  # photon (fake clock) − capture


def test_hud_is_rendered_at_most_four_times_a_second(window):
    now = [0.0]
    window._clock = lambda: now[0]
    calls = []
    mailbox: Mailbox[Frame] = Mailbox()
    mailbox.put(frame(solid((0, 0, 255), (64, 36))))  # 16:9 like the window: no bars
    window.display.hud_enabled = True
    for i in range(120):  # 2 s at 60 Hz
        now[0] = i / 60
        window.run(mailbox, threading.Event(), hud_lines=lambda: calls.append(1) or [Meter.of("rms", 0.3)],
                   max_frames=1)
    assert 7 <= len(calls) <= 9
    pixels = window.read_pixels()
    assert np.median(pixels[8:24, 8:40, 2]) < 128 and (pixels[200:, 300:] == (0, 0, 255)).all()


def test_keys_are_reported_as_actions_and_escape_needs_a_double_press(window):
    now = [100.0]
    window._clock = lambda: now[0]
    actions = []
    window.on_key = actions.append
    installed = glfw.set_key_callback(window.handle, None)  # the callback the window installed
    glfw.set_key_callback(window.handle, installed)

    def press(key, action=glfw.PRESS):
        installed(window.handle, key, 0, action, 0)

    for key in (glfw.KEY_H, glfw.KEY_SPACE, glfw.KEY_1, glfw.KEY_9, glfw.KEY_KP_5, glfw.KEY_S, glfw.KEY_R):
        press(key)
    press(glfw.KEY_SPACE, glfw.REPEAT)  # held keys do not re-toggle
    press(glfw.KEY_SPACE, glfw.RELEASE)
    press(glfw.KEY_Q)  # unmapped
    assert actions == ["hud", "freeze", "preset:1", "preset:9", "preset:5", "save", "record"]
    assert window.display.hud_enabled

    actions.clear()
    press(glfw.KEY_ESCAPE)
    now[0] += 1.5  # too late for a double press
    press(glfw.KEY_ESCAPE)
    now[0] += 0.3
    press(glfw.KEY_H)  # anything in between cancels it
    press(glfw.KEY_ESCAPE)
    assert actions == ["hud"] and not glfw.window_should_close(window.handle)
    now[0] += 0.5
    press(glfw.KEY_ESCAPE)
    assert actions == ["hud", "quit"] and glfw.window_should_close(window.handle)
    window.run(Mailbox(), threading.Event())  # returns at once: the window is closing


def test_fullscreen_key_toggles_on_the_chosen_monitor(xvfb):
    with Window((320, 180), monitor="screen") as win:
        actions = []
        win.on_key = actions.append
        installed = glfw.set_key_callback(win.handle, None)
        glfw.set_key_callback(win.handle, installed)
        installed(win.handle, glfw.KEY_F, 0, glfw.PRESS, 0)
        glfw.poll_events()
        assert win.fullscreen and tuple(glfw.get_framebuffer_size(win.handle)) == (1280, 720)
        assert glfw.get_input_mode(win.handle, glfw.CURSOR) == glfw.CURSOR_HIDDEN
        mailbox: Mailbox[Frame] = Mailbox()
        mailbox.put(frame(gradient_frame()))
        win.run(mailbox, threading.Event(), max_frames=2)
        check_letterboxed_frame(win.read_pixels())  # 1280x720, letterboxed anew
        installed(win.handle, glfw.KEY_F11, 0, glfw.PRESS, 0)
        glfw.poll_events()
        assert not win.fullscreen and tuple(glfw.get_window_size(win.handle)) == (320, 180)
        assert actions == ["fullscreen", "fullscreen"]


def test_monitors_are_listed_and_an_unknown_one_is_refused(xvfb):
    monitors = list_monitors()
    assert monitors == ["screen (1280x720)"]
    assert select_monitor(monitors, 0) == 0 and select_monitor(monitors, "SCR") == 0
    with pytest.raises(MonitorError, match=r"no monitor matching 'projector'; monitors: 0: screen \(1280x720\)"):
        Window(monitor="projector", fullscreen=True)
    with pytest.raises(MonitorError, match=r"no monitor 3; monitors: 0: screen"):
        select_monitor(monitors, "3")
    glfw.terminate()


def test_no_display_is_a_clear_window_error(xvfb, monkeypatch):
    monkeypatch.delenv("DISPLAY")
    with pytest.raises(WindowError, match=r"--headless.*Xvfb"):
        Window()
    monkeypatch.setenv("DISPLAY", ":4097")  # nothing listens there
    with pytest.raises(WindowError, match=r"glfw init failed.*--headless"):
        Window()


def test_the_window_hud_labels_its_fps_line(window):
    lines = window._hud_text(lambda: ["render   12.0 fps   audio->frame p50 40 ms"], 0.0)
    assert lines[0].startswith("display") and "fps" in lines[0]
    assert [line.split()[0] for line in lines if "fps" in line] == ["display", "render"]
