"""The show window: newest generated frame on screen, crossfaded, letterboxed, with a HUD.

Two layers, as in moderngl-window's WindowConfig:

- ``Display`` owns the GL resources (programs from shaders/, two frame textures, the HUD
  texture), made once, and draws into any moderngl framebuffer. Time is passed in, so it
  is deterministic and works on a window's context or a standalone EGL one (headless).
- ``Window`` is the glfw shell on the main thread (glfw requires it): window or
  fullscreen on a chosen monitor, vsync, keys, and the loop that takes frames from the
  render thread's Mailbox and measures display fps and audio-to-photon latency.

Keys (physical positions, so they do not move with the keyboard layout) map to action
names passed to ``on_key``:

    F, F11  fullscreen   (toggled by the window on its monitor, then reported)
    H       hud          (toggled by the window, then reported)
    Space   freeze       1-9 preset:N       S save       R record
    Esc     quit         only on a SECOND press within 1 s: a stray key must not end a
                         show. The first press shows a reminder on the HUD (if on).

Closing the window (its close button or Esc twice) also reports "quit"; ``run`` then
returns. Stopping the other threads is the caller's job.
"""
from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import glfw
import moderngl
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from live import shaders
from live.mailbox import Frame, Mailbox

log = logging.getLogger(__name__)

Viewport = tuple[int, int, int, int]  # x, y, width, height in framebuffer pixels, origin bottom-left

HUD_PERIOD = 0.25  # s between HUD text renders: PIL text is too slow to redo every frame
ESCAPE_WINDOW = 1.0  # s within which a second Esc quits
MAX_FADE = 1.0  # s; a model stall must not turn into a slow dissolve once it recovers
CLEAR_COLOUR = (0.0, 0.0, 0.0, 1.0)  # letterbox bars: black on a projector is "off"


class WindowError(RuntimeError):
    """No window can be opened here (no display, no OpenGL 3.3, wrong thread)."""


class MonitorError(ValueError):
    """The chosen monitor does not exist; the message lists the ones that do."""


# --- pure helpers (no GL) -------------------------------------------------------------


def letterbox(frame_size: tuple[int, int], viewport: Viewport) -> Viewport:
    """The largest rectangle of the frame's aspect ratio centred in the viewport."""
    fw, fh = frame_size
    vx, vy, vw, vh = viewport
    if fw * vh >= fh * vw:  # frame is wider: bars top and bottom
        w, h = vw, max(1, round(vw * fh / fw))
    else:  # frame is taller: bars left and right
        w, h = max(1, round(vh * fw / fh)), vh
    return vx + (vw - w) // 2, vy + (vh - h) // 2, w, h


class Meter(str):
    """A HUD line drawn as a bar: ``Meter.of("rms", 0.4)``. It is still a str (an ASCII
    bar) so it prints readably; ``render_hud`` draws a real bar for it."""

    label: str
    value: float

    @classmethod
    def of(cls, label: str, value: float, width: int = 20) -> "Meter":
        value = 0.0 if not math.isfinite(value) else min(1.0, max(0.0, float(value)))
        filled = round(value * width)
        line = cls(f"{label:<8}[{'#' * filled}{'-' * (width - filled)}] {value:.2f}")
        line.label, line.value = label, value
        return line


@functools.lru_cache(maxsize=4)
def _hud_font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def render_hud(lines: Sequence[str], font=None) -> np.ndarray:
    """HUD text as an (H, W, 4) uint8 RGBA image, top row first: white text on a
    translucent black panel; ``Meter`` lines become bars."""
    font = font or _hud_font()
    pad, gap, bar_w = 6, 3, 160
    height = max(font.getbbox("Ag|")[3], 8)
    widths = []
    for line in lines:
        if isinstance(line, Meter):
            widths.append(font.getbbox(line.label)[2] + 8 + bar_w + 8 + font.getbbox("0.00")[2])
        else:
            widths.append(font.getbbox(line)[2] if line else 0)
    w = pad * 2 + max(widths, default=0)
    h = pad * 2 + len(lines) * (height + gap)
    # Round up so the texture is re-made only when the text grows a lot.
    w, h = -(-max(w, 32) // 32) * 32, -(-max(h, 16) // 16) * 16
    image = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, w - 1, h - 1), fill=(0, 0, 0, 150))
    y = pad
    for line in lines:
        if isinstance(line, Meter):
            draw.text((pad, y), line.label, font=font, fill=(255, 255, 255, 255))
            x = pad + font.getbbox(line.label)[2] + 8
            draw.rectangle((x, y + 2, x + bar_w, y + height - 1), outline=(255, 255, 255, 200))
            draw.rectangle((x, y + 2, x + round(bar_w * line.value), y + height - 1), fill=(80, 220, 120, 255))
            draw.text((x + bar_w + 8, y), f"{line.value:.2f}", font=font, fill=(255, 255, 255, 255))
        else:
            draw.text((pad, y), line, font=font, fill=(255, 255, 255, 255))
        y += height + gap
    return np.asarray(image)


# --- Display: GL resources and drawing ------------------------------------------------


class Display:
    """Draws the newest frame (crossfading from the previous one) and the HUD into a
    framebuffer of a moderngl context: a window's screen, or an offscreen FBO.

    GL objects are made once here; ``upload`` reuses the frame textures unless the frame
    size changes. ``draw(now, viewport)`` is a pure function of the uploaded state and
    ``now``, so tests and headless renders get exactly what a window would show.
    """

    def __init__(self, ctx: moderngl.Context, target: Optional[moderngl.Framebuffer] = None,
                 *, crossfade: bool = True):
        self.ctx = ctx
        self.target = target or ctx.screen or ctx.fbo
        self.crossfade = crossfade
        self.hud_enabled = False
        self._programs = {name: shaders.build(ctx, name) for name in ("display", "crossfade", "hud")}
        self._programs["display"]["u_frame"].value = 0
        self._programs["crossfade"]["u_previous"].value = 0
        self._programs["crossfade"]["u_newest"].value = 1
        self._programs["hud"]["u_text"].value = 0
        self._programs["hud"]["u_opacity"].value = 1.0
        # Positions come from gl_VertexID in the shaders, so the VAOs hold no buffers.
        self._vaos = {name: ctx.vertex_array(prog, []) for name, prog in self._programs.items()}
        self._textures: list[moderngl.Texture] = []
        self._newest = 0  # index into _textures of the newest frame; the other is previous
        self._has_previous = False
        self._frame_size: Optional[tuple[int, int]] = None
        self._hud: Optional[moderngl.Texture] = None
        self._fade_start = 0.0
        self._interval: Optional[float] = None  # smoothed time between generated frames
        self._last_rendered: Optional[float] = None
        self._viewport: Viewport = (0, 0, *self.target.size)
        self.frame: Optional[Frame] = None  # the newest uploaded frame
        self._owned: list = []  # an offscreen framebuffer made for this Display

    @classmethod
    def offscreen(cls, ctx: moderngl.Context, size: tuple[int, int], **kwargs) -> "Display":
        """A Display drawing into its own RGBA framebuffer of ``size`` (width, height):
        the headless path, e.g. on ``moderngl.create_standalone_context(backend="egl")``."""
        display = cls(ctx, ctx.framebuffer(color_attachments=[ctx.renderbuffer(size, 4)]), **kwargs)
        display._owned.append(display.target)
        return display

    # -- frames

    def upload(self, frame: Frame) -> None:
        """Make ``frame`` the newest; the previously newest becomes the fade's start."""
        h, w = frame.image.shape[:2]
        if self._frame_size != (w, h):
            for texture in self._textures:
                texture.release()
            self._textures = [self._frame_texture((w, h)) for _ in range(2)]
            self._frame_size, self._newest, self._has_previous = (w, h), 0, False
            self._interval = None
        else:
            self._newest, self._has_previous = 1 - self._newest, True
        self._textures[self._newest].write(np.ascontiguousarray(frame.image))
        if self._last_rendered is not None and self._has_previous:
            gap = frame.rendered_time - self._last_rendered
            if gap > 0:
                self._interval = gap if self._interval is None else 0.5 * self._interval + 0.5 * gap
        self._last_rendered = frame.rendered_time
        self._fade_start = frame.rendered_time
        self.frame = frame

    def _frame_texture(self, size: tuple[int, int]) -> moderngl.Texture:
        texture = self.ctx.texture(size, 3, alignment=1)
        texture.filter = (moderngl.LINEAR, moderngl.LINEAR)
        texture.repeat_x = texture.repeat_y = False
        return texture

    def mix_at(self, now: float) -> float:
        """How far the fade from the previous to the newest frame is at ``now``: 0..1.

        The fade starts when the newest frame was rendered and lasts the measured interval
        between generated frames, so it ends about when the next one arrives: continuous
        motion at the cost of up to one model interval of added latency."""
        if not (self.crossfade and self._has_previous and self._interval):
            return 1.0
        duration = min(self._interval, MAX_FADE)
        return min(1.0, max(0.0, (now - self._fade_start) / duration))

    # -- HUD

    def set_hud(self, lines: Sequence[str]) -> None:
        """Render HUD text into the HUD texture (call a few times a second, not per frame)."""
        image = render_hud(lines)
        h, w = image.shape[:2]
        if self._hud is None or self._hud.size != (w, h):
            if self._hud is not None:
                self._hud.release()
            self._hud = self.ctx.texture((w, h), 4, alignment=1)
            self._hud.filter = (moderngl.NEAREST, moderngl.NEAREST)  # crisp at integer scale
        self._hud.write(np.ascontiguousarray(image))

    # -- drawing

    def draw(self, now: float, viewport: Optional[Viewport] = None) -> None:
        """Draw the state at time ``now`` into ``viewport`` of the target framebuffer."""
        ctx = self.ctx
        viewport = tuple(viewport) if viewport is not None else (0, 0, *self.target.size)
        self._viewport = viewport
        self.target.use()
        ctx.disable(moderngl.BLEND | moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.target.clear(*CLEAR_COLOUR, viewport=viewport)
        if self.frame is not None:
            ctx.viewport = letterbox(self._frame_size, viewport)
            mix = self.mix_at(now)
            if mix >= 1.0:
                self._textures[self._newest].use(location=0)
                self._vaos["display"].render(moderngl.TRIANGLES, vertices=3)
            else:
                self._textures[1 - self._newest].use(location=0)
                self._textures[self._newest].use(location=1)
                self._programs["crossfade"]["u_mix"].value = mix
                self._vaos["crossfade"].render(moderngl.TRIANGLES, vertices=3)
        if self.hud_enabled and self._hud is not None:
            self._draw_hud(viewport)
        ctx.viewport = viewport

    def _draw_hud(self, viewport: Viewport) -> None:
        x, y, w, h = viewport
        scale = max(1, round(h / 1000))  # readable on a 4K projector, 1:1 on a laptop
        margin = 8 * scale
        tw, th = self._hud.size
        x0, x1 = -1 + 2 * margin / w, -1 + 2 * (margin + tw * scale) / w
        y1, y0 = 1 - 2 * margin / h, 1 - 2 * (margin + th * scale) / h
        self.ctx.viewport = viewport
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self._programs["hud"]["u_rect"].value = (x0, y0, x1, y1)
        self._hud.use(location=0)
        self._vaos["hud"].render(moderngl.TRIANGLE_STRIP, vertices=4)
        self.ctx.disable(moderngl.BLEND)

    def read_pixels(self) -> np.ndarray:
        """The last drawn viewport as (H, W, 3) uint8 RGB, top row first (like a Frame)."""
        x, y, w, h = self._viewport
        data = self.target.read(viewport=self._viewport, components=3, alignment=1)
        return np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1].copy()

    def release(self) -> None:
        for obj in [*self._vaos.values(), *self._programs.values(), *self._textures, self._hud, *self._owned]:
            if obj is not None:
                obj.release()
        self._textures, self._hud, self._owned = [], None, []


# --- glfw: monitors and the window -----------------------------------------------------

_glfw_errors: deque[str] = deque(maxlen=8)


def _on_glfw_error(code: int, description: bytes) -> None:
    message = description.decode("utf-8", "replace") if isinstance(description, bytes) else str(description)
    _glfw_errors.append(message)
    log.debug("glfw error %s: %s", code, message)


def _init_glfw() -> None:
    """Initialise glfw (idempotent), or say why not and what to do instead."""
    glfw.set_error_callback(_on_glfw_error)
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise WindowError(
            "no display: $DISPLAY is not set. Use --headless, or start X "
            "(or a virtual one: Xvfb :99 & export DISPLAY=:99)"
        )
    if not glfw.init():
        reason = _glfw_errors[-1] if _glfw_errors else "unknown reason"
        raise WindowError(
            f"cannot open a window on display {os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')!r}: "
            f"glfw init failed ({reason}). Use --headless, or start X / Xvfb"
        )


def _release_stale_egl_context() -> None:
    """Un-current an EGL context left on this thread. moderngl's standalone EGL contexts
    stay current after ``release()``, and GLX then refuses to make a window's context
    current with an X error that ends the process (a headless render, then a window)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        egl = ctypes.CDLL("libEGL.so.1")
    except OSError:
        return  # no EGL, so nothing of it can be current
    egl.eglGetCurrentContext.restype = ctypes.c_void_p
    egl.eglGetCurrentDisplay.restype = ctypes.c_void_p
    egl.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
    if egl.eglGetCurrentContext():
        egl.eglMakeCurrent(egl.eglGetCurrentDisplay(), None, None, None)


def _describe(monitor) -> str:
    name = glfw.get_monitor_name(monitor)
    name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    mode = glfw.get_video_mode(monitor)
    return f"{name} ({mode.size.width}x{mode.size.height})"


def list_monitors() -> list[str]:
    """Connected monitors as 'name (WxH)', in glfw's order (index 0 is the primary)."""
    _init_glfw()
    return [_describe(m) for m in glfw.get_monitors()]


def select_monitor(monitors: Sequence[str], wanted: int | str) -> int:
    """The index of the wanted monitor: an index, a digit string, or a case-insensitive
    substring of its name (the first match wins)."""
    listing = "; ".join(f"{i}: {m}" for i, m in enumerate(monitors)) or "(none)"
    if isinstance(wanted, str) and wanted.strip().isdigit():
        wanted = int(wanted)
    if isinstance(wanted, int):
        if 0 <= wanted < len(monitors):
            return wanted
        raise MonitorError(f"no monitor {wanted}; monitors: {listing}")
    for i, name in enumerate(monitors):
        if wanted.lower() in name.lower():
            return i
    raise MonitorError(f"no monitor matching {wanted!r}; monitors: {listing}")


KEY_ACTIONS = {
    glfw.KEY_F: "fullscreen", glfw.KEY_F11: "fullscreen", glfw.KEY_H: "hud",
    glfw.KEY_SPACE: "freeze", glfw.KEY_S: "save", glfw.KEY_R: "record", glfw.KEY_ESCAPE: "quit",
    **{glfw.KEY_1 + n - 1: f"preset:{n}" for n in range(1, 10)},
    **{glfw.KEY_KP_1 + n - 1: f"preset:{n}" for n in range(1, 10)},
}


class Window:
    """A glfw window showing a Display; create, ``run`` and ``close`` on the main thread."""

    def __init__(self, size: tuple[int, int] = (1280, 720), *, fullscreen: bool = False,
                 monitor: int | str | None = None, title: str = "netbend", vsync: bool = True,
                 on_key: Optional[Callable[[str], None]] = None,
                 clock: Callable[[], float] = time.monotonic):
        if threading.current_thread() is not threading.main_thread():
            raise WindowError("the window must be created on the main thread (glfw requires it)")
        _init_glfw()
        monitors = glfw.get_monitors() or []
        if monitor is not None:
            self._monitor = monitors[select_monitor([_describe(m) for m in monitors], monitor)]
        else:
            self._monitor = glfw.get_primary_monitor()
        if fullscreen and not self._monitor:
            raise MonitorError("fullscreen needs a monitor, and glfw reports none")
        self.on_key = on_key
        self._clock = clock
        self._vsync = vsync
        self._windowed_size = tuple(size)
        self._windowed_pos: Optional[tuple[int, int]] = None
        self._escape_at: Optional[float] = None
        self._notice: Optional[tuple[str, float]] = None  # (text, until)
        self._hud_due = 0.0
        self._latencies: deque[float] = deque(maxlen=600)  # s, audio capture to photon
        self._swaps: deque[float] = deque(maxlen=120)
        self.frames_shown = 0  # generated frames that reached the screen

        glfw.default_window_hints()
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)  # macOS needs it for 3.3 core
        glfw.window_hint(glfw.AUTO_ICONIFY, False)  # the projector stays up when focus moves
        glfw.window_hint(glfw.DOUBLEBUFFER, True)
        _release_stale_egl_context()  # before create_window: it makes the context current
        if fullscreen:
            mode = glfw.get_video_mode(self._monitor)
            glfw.window_hint(glfw.REFRESH_RATE, mode.refresh_rate)  # current mode: no mode switch
            self.handle = glfw.create_window(mode.size.width, mode.size.height, title, self._monitor, None)
        else:
            self.handle = glfw.create_window(size[0], size[1], title, None, None)
        if not self.handle:
            reason = _glfw_errors[-1] if _glfw_errors else "unknown reason"
            glfw.terminate()
            raise WindowError(f"cannot create an OpenGL 3.3 core window: {reason}. Use --headless")
        if not fullscreen and monitor is not None:
            mx, my, _, _ = glfw.get_monitor_workarea(self._monitor)
            glfw.set_window_pos(self.handle, mx + 40, my + 40)
        try:
            glfw.make_context_current(self.handle)
            glfw.swap_interval(1 if vsync else 0)
            self._show_cursor(not fullscreen)
            self.ctx = moderngl.create_context()
            self.display = Display(self.ctx, self.ctx.screen)
        except Exception:
            glfw.destroy_window(self.handle)
            glfw.terminate()
            raise
        self._last_draw: Optional[tuple[float, Viewport]] = None
        glfw.set_key_callback(self.handle, self._on_key_event)  # pyGLFW keeps the references
        glfw.set_window_close_callback(self.handle, lambda handle: self._report("quit"))

    # -- state

    @property
    def fullscreen(self) -> bool:
        return bool(glfw.get_window_monitor(self.handle))

    @property
    def latencies(self) -> deque:
        """Recent audio-to-photon latencies in seconds (photon time − frame.capture_time)."""
        return self._latencies

    @property
    def fps(self) -> float:
        """Display frames per second over the last up to 120 swaps."""
        if len(self._swaps) < 2 or self._swaps[-1] <= self._swaps[0]:
            return 0.0
        return (len(self._swaps) - 1) / (self._swaps[-1] - self._swaps[0])

    def _show_cursor(self, visible: bool) -> None:
        glfw.set_input_mode(self.handle, glfw.CURSOR, glfw.CURSOR_NORMAL if visible else glfw.CURSOR_HIDDEN)

    def toggle_fullscreen(self) -> None:
        """Fullscreen on the chosen monitor (in its current video mode), or back to the
        window's previous place and size."""
        if self.fullscreen:
            x, y = self._windowed_pos or (40, 40)
            glfw.set_window_monitor(self.handle, None, x, y, *self._windowed_size, 0)
            self._show_cursor(True)
        elif not self._monitor:
            log.warning("fullscreen: glfw reports no monitor")
            return
        else:
            self._windowed_pos = glfw.get_window_pos(self.handle)
            self._windowed_size = glfw.get_window_size(self.handle)
            mode = glfw.get_video_mode(self._monitor)
            glfw.set_window_monitor(self.handle, self._monitor, 0, 0, mode.size.width,
                                    mode.size.height, mode.refresh_rate)
            self._show_cursor(False)
        glfw.swap_interval(1 if self._vsync else 0)  # some drivers drop it on a mode change

    # -- keys

    def _on_key_event(self, handle, key: int, scancode: int, action: int, mods: int) -> None:
        if action == glfw.PRESS and key in KEY_ACTIONS:  # repeats would re-toggle
            self.press(KEY_ACTIONS[key], self._clock())

    def press(self, action: str, now: float) -> None:
        """Apply one key action at time ``now`` (the key callback calls this)."""
        if action == "quit":
            if self._escape_at is not None and now - self._escape_at <= ESCAPE_WINDOW:
                self._escape_at = None
                glfw.set_window_should_close(self.handle, True)
                self._report("quit")
            else:
                self._escape_at = now
                self._notice = (f"press Esc again within {ESCAPE_WINDOW:g} s to quit", now + ESCAPE_WINDOW)
                self._hud_due = 0.0
                log.info("Esc: press again within %g s to quit", ESCAPE_WINDOW)
            return
        self._escape_at = None  # Esc, another key, Esc is not a double press
        if action == "fullscreen":
            self.toggle_fullscreen()
        elif action == "hud":
            self.display.hud_enabled = not self.display.hud_enabled
            self._hud_due = 0.0
        self._report(action)

    def _report(self, action: str) -> None:
        if self.on_key is None:
            return
        try:
            self.on_key(action)
        except Exception:  # a bad handler must not take the show's window down
            log.exception("on_key(%r) failed", action)

    # -- the loop

    def run(self, mailbox: Mailbox, stop: threading.Event,
            on_key: Optional[Callable[[str], None]] = None,
            hud_lines: Optional[Callable[[], list[str]]] = None, *, max_frames: Optional[int] = None) -> None:
        """Show frames until the window closes or ``stop`` is set (or after ``max_frames``
        display frames): poll events, take the newest frame, draw, swap, measure."""
        if on_key is not None:
            self.on_key = on_key
        drawn = 0
        while not stop.is_set() and not glfw.window_should_close(self.handle):
            glfw.poll_events()
            frame = mailbox.take()
            if frame is not None:
                self.display.upload(frame)
            now = self._clock()
            if self.display.hud_enabled and now >= self._hud_due:
                self.display.set_hud(self._hud_text(hud_lines, now))
                self._hud_due = now + HUD_PERIOD
            width, height = glfw.get_framebuffer_size(self.handle)
            if width == 0 or height == 0:  # minimised: nothing to draw into
                glfw.wait_events_timeout(0.05)
                continue
            self._last_draw = (now, (0, 0, width, height))
            self.display.draw(*self._last_draw)
            glfw.swap_buffers(self.handle)
            # Waiting for the swap keeps the driver from queueing frames (latency) and
            # makes the timestamp below the moment the frame went to the screen.
            self.ctx.finish()
            photon = self._clock()
            self._swaps.append(photon)
            if frame is not None:
                self._latencies.append(photon - frame.capture_time)
                self.frames_shown += 1
            drawn += 1
            if max_frames is not None and drawn >= max_frames:
                break

    def _hud_text(self, hud_lines: Optional[Callable[[], list[str]]], now: float) -> list[str]:
        lines = [f"{self.fps:5.1f} fps   audio-to-photon {self._latency_text()}"]
        if self._notice is not None and now < self._notice[1]:
            lines.append(self._notice[0])
        if hud_lines is not None:
            try:
                lines.extend(hud_lines())
            except Exception:  # the HUD is a diagnostic; it must not stop the display
                log.exception("hud_lines() failed")
                lines.append("(hud_lines failed: see log)")
        return lines

    def _latency_text(self) -> str:
        if not self._latencies:
            return "-"
        recent = sorted(list(self._latencies)[-120:])
        p50 = recent[len(recent) // 2]
        p95 = recent[min(len(recent) - 1, int(0.95 * len(recent)))]
        return f"{p50 * 1000:.0f} ms (p95 {p95 * 1000:.0f})"

    def read_pixels(self) -> np.ndarray:
        """What the loop last put on screen, as (H, W, 3) RGB, top row first: the back
        buffer is undefined after a swap, so the last draw (same state, same ``now``) is
        repeated into it and read back with glReadPixels. Nothing is swapped."""
        if self._last_draw is not None:
            self.display.draw(*self._last_draw)
        return self.display.read_pixels()

    def close(self) -> None:
        if getattr(self, "handle", None):
            self.display.release()
            self.ctx.release()
            glfw.destroy_window(self.handle)
            self.handle = None
        glfw.terminate()

    def __enter__(self) -> "Window":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
