"""The show's picture, drawn with moderngl into any context: newest generated frame,
crossfaded from the one before, letterboxed, with a HUD on top.

``Display`` owns the GL resources (programs from shaders/, two frame textures, the HUD
texture), made once, and draws into any moderngl framebuffer. Time is passed in, so it is
deterministic and works on a window's context (``live.display.window.Window``) or a standalone EGL
one (headless), as moderngl-window's WindowConfig separates drawing from the window.

``letterbox``, ``Meter`` and ``render_hud`` are the pure parts (no GL): where the frame
goes in the viewport, and the HUD text as an RGBA image.
"""
from __future__ import annotations

import functools
import logging
import math
from typing import Optional, Sequence

import moderngl
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from live.display import shaders
from live.show.mailbox import Frame
from live.display.upload import DeviceImage, host_copy
from live.outputs.framing import Framing, place

log = logging.getLogger("netbend.display")

__all__ = ["CLEAR_COLOUR", "Display", "MAX_FADE", "Meter", "Viewport", "letterbox", "render_hud"]

Viewport = tuple[int, int, int, int]  # x, y, width, height in framebuffer pixels, origin bottom-left

MAX_FADE = 1.0  # s; a model stall must not turn into a slow dissolve once it recovers
CLEAR_COLOUR = (0.0, 0.0, 0.0, 1.0)  # letterbox bars: black on a projector is "off"


# --- pure helpers (no GL) -------------------------------------------------------------


def letterbox(frame_size: tuple[int, int], viewport: Viewport) -> Viewport:
    """The largest rectangle of the frame's aspect ratio centred in the viewport (the
    ``fit`` of live.outputs.framing, where output size and scaling live)."""
    return place(frame_size, viewport, "fit")


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
                 *, crossfade: bool = True, interop=None):
        self.ctx = ctx
        self.interop = interop  # a live.display.upload.CudaGLInterop for frames that stay on the GPU
        self.target = target or ctx.screen or ctx.fbo
        self.crossfade = crossfade
        self.hud_enabled = False
        self._programs = {"display": shaders.build(ctx, "display"),
                          "crossfade": shaders.build(ctx, "display", {"CROSSFADE": 1}),
                          "hud": shaders.build(ctx, "hud")}
        self._programs["display"]["u_frame"].value = 0
        self._programs["crossfade"]["u_previous"].value = 0
        self._programs["crossfade"]["u_frame"].value = 1
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
        self._framing = Framing()  # output size and scaling, shared with every output (live.outputs)
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
        self._write(self._textures[self._newest], frame.image)
        if self._last_rendered is not None and self._has_previous:
            gap = frame.rendered_time - self._last_rendered
            if gap > 0:
                self._interval = gap if self._interval is None else 0.5 * self._interval + 0.5 * gap
        self._last_rendered = frame.rendered_time
        self._fade_start = frame.rendered_time
        self.frame = frame

    def _write(self, texture: moderngl.Texture, image) -> None:
        if isinstance(image, DeviceImage):
            if self.interop is not None:
                try:
                    self.interop.upload(image, texture)
                    return
                except Exception as e:  # noqa: BLE001 - fall back for the rest of the show, never stop it
                    log.error("CUDA-GL interop failed (%s: %s); frames take the host copy from now on",
                              type(e).__name__, e)
                    self.interop.release()
                    self.interop = None
            image = host_copy(image)
        texture.write(np.ascontiguousarray(image))

    @property
    def framing(self) -> Framing:
        return self._framing

    @framing.setter
    def framing(self, framing: Framing) -> None:
        """Output size, fit/fill/stretch and smooth/sharp: the window shows what the outputs get."""
        self._framing = framing
        for texture in self._textures:
            texture.filter = self._filter()

    def _filter(self) -> tuple[int, int]:
        kind = moderngl.NEAREST if self._framing.upscale == "sharp" else moderngl.LINEAR
        return kind, kind

    def _frame_texture(self, size: tuple[int, int]) -> moderngl.Texture:
        texture = self.ctx.texture(size, 3, alignment=1)
        texture.filter = self._filter()
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
            picture, rect = self._framing.in_viewport(self._frame_size, viewport)
            ctx.scissor = picture  # fill draws past the picture's edges: crop there
            ctx.viewport = rect
            mix = self.mix_at(now)
            if mix >= 1.0:
                self._textures[self._newest].use(location=0)
                self._vaos["display"].render(moderngl.TRIANGLES, vertices=3)
            else:
                self._textures[1 - self._newest].use(location=0)
                self._textures[self._newest].use(location=1)
                self._programs["crossfade"]["u_mix"].value = mix
                self._vaos["crossfade"].render(moderngl.TRIANGLES, vertices=3)
            ctx.scissor = None
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
        if self.interop is not None:
            self.interop.release()
            self.interop = None
