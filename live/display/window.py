"""The show window: a glfw window on the main thread that puts the Display on screen.

Two layers, as in moderngl-window's WindowConfig:

- ``Display`` (live/display/display.py) owns the GL resources and draws the newest frame,
  crossfaded, letterboxed, with a HUD, into any moderngl framebuffer. Time is passed in,
  so it is deterministic and works on a window's context or a standalone EGL one
  (headless).
- ``Window`` (this module) is the glfw shell on the main thread (glfw requires it): window
  or fullscreen on a chosen monitor, vsync, keys, and the loop that takes frames from the
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
import logging
import os
import sys
import threading
import time
from collections import deque
from typing import Callable, Optional, Sequence

import glfw
import moderngl
import numpy as np

from live.display.display import Display, Viewport
from live.show.mailbox import Mailbox

log = logging.getLogger(__name__)

__all__ = ["MonitorError", "Window", "WindowError", "list_monitors", "select_monitor"]

HUD_PERIOD = 0.25  # s between HUD text renders: PIL text is too slow to redo every frame
ESCAPE_WINDOW = 1.0  # s within which a second Esc quits


class WindowError(RuntimeError):
    """No window can be opened here (no display, no OpenGL 3.3, wrong thread)."""


class MonitorError(ValueError):
    """The chosen monitor does not exist; the message lists the ones that do."""


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
    glfw.KEY_SPACE: "freeze", glfw.KEY_S: "save", glfw.KEY_R: "record", glfw.KEY_T: "tap", glfw.KEY_ESCAPE: "quit",
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
        lines = [f"display {self.fps:5.1f} fps   audio-to-photon {self._latency_text()}"]
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
