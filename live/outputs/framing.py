"""Output size and scaling: where a generated frame goes in the picture the audience sees.

One home for the concept, shared by the window (live.display) and every output (NDI, the
virtual camera, the recording …), so all of them show the same picture:

    size     the picture's (width, height): ``--output-size 1920x1080``; None keeps the
             frame's own size (outputs get the frame as rendered, the window fits it)
    mode     fit      the whole frame, aspect kept, black bars where the shapes differ
             fill     the whole picture, aspect kept, the frame's overflow cropped
             stretch  the whole picture, the frame stretched to it
    upscale  smooth   bilinear (a 64x64 frame on a projector looks soft, not blocky)
             sharp    nearest pixel (pixel art stays crisp; exact at integer scales)

``place`` is the pure geometry, in pixels with a bottom-left origin like an OpenGL
viewport; ``Framing.apply`` makes the picture from an (H, W, 3) uint8 frame on the CPU
with the same rectangle, so the window and the outputs agree to the pixel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from live.checks import SizeRule

__all__ = ["MODES", "UPSCALES", "Framing", "Rect", "parse_output_size", "place"]

MODES = ("fit", "fill", "stretch")
UPSCALES = ("smooth", "sharp")
MAX_SIDE = 8192  # what GL textures and H.264 levels handle everywhere; 8K is past any projector

Rect = tuple[int, int, int, int]  # x, y, width, height; origin bottom-left (an OpenGL viewport)


# any size a GL texture and an H.264 level take: an odd 1366x768 laptop panel included
OUTPUT_SIZE = SizeRule(multiple=1, smallest=2, largest=MAX_SIDE, example="1920x1080")


def parse_output_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """'WxH' -> (width, height); None stays None. Raises ValueError naming what is allowed."""
    return OUTPUT_SIZE.parse(text, "--output-size")


def place(frame_size: tuple[int, int], area: Rect, mode: str = "fit") -> Rect:
    """The rectangle the frame is drawn into within ``area`` (both in pixels). For ``fill``
    it is larger than the area and centred on it: whatever lies outside is cropped."""
    fw, fh = frame_size
    ax, ay, aw, ah = area
    if mode == "stretch":
        return ax, ay, aw, ah
    if mode not in MODES:
        raise ValueError(f"unknown scaling mode {mode!r}; allowed: {', '.join(MODES)}")
    wider = fw * ah >= fh * aw  # the frame is wider than the area (or the same shape)
    if wider == (mode == "fit"):  # fit a wider frame / fill a taller one: full width
        w, h = aw, max(1, round(aw * fh / fw))
    else:
        w, h = max(1, round(ah * fw / fh)), ah
    return ax + (aw - w) // 2, ay + (ah - h) // 2, w, h


@dataclass(frozen=True)
class Framing:
    size: Optional[tuple[int, int]] = None  # the picture (width, height); None: the frame's own size
    mode: str = "fit"  # fit keeps everything the model drew: nothing is lost unless asked
    upscale: str = "smooth"  # bilinear: the model's frames are photographic, not pixel art

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown scaling {self.mode!r}; allowed: {', '.join(MODES)}")
        if self.upscale not in UPSCALES:
            raise ValueError(f"unknown upscale {self.upscale!r}; allowed: {', '.join(UPSCALES)}")
        OUTPUT_SIZE.check(self.size, "output size")

    def to_dict(self) -> dict:
        return {"size": None if self.size is None else list(self.size), "mode": self.mode, "upscale": self.upscale}

    @classmethod
    def from_dict(cls, d: dict) -> "Framing":
        size = d.get("size")
        return cls(None if size is None else (int(size[0]), int(size[1])), str(d.get("mode", "fit")),
                   str(d.get("upscale", "smooth")))

    def picture_size(self, frame_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the picture made from a frame of ``frame_size``."""
        return tuple(self.size) if self.size is not None else tuple(frame_size)

    def in_viewport(self, frame_size: tuple[int, int], viewport: Rect) -> tuple[Rect, Rect]:
        """For a window: (the picture's rectangle, the frame's rectangle) in ``viewport``.
        With a size, the picture keeps its shape and is fitted into the viewport (the window
        shows what the outputs get); without one the picture is the whole viewport."""
        picture = viewport if self.size is None else place(self.size, viewport, "fit")
        return picture, place(frame_size, picture, self.mode)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 frame -> (h, w, 3) uint8 picture at ``picture_size``; the frame
        itself (not a copy) when nothing changes."""
        fh, fw = image.shape[:2]
        pw, ph = self.picture_size((fw, fh))
        x, y, w, h = place((fw, fh), (0, 0, pw, ph), self.mode)
        if (x, y, w, h) == (0, 0, fw, fh) and (pw, ph) == (fw, fh):
            return image
        top = ph - (y + h)  # bottom-left origin -> the array's top row first
        scaled = self._resize(image, w, h)
        picture = np.zeros((ph, pw, 3), np.uint8)  # black bars: "off" on a projector
        # the part of the scaled frame inside the picture (all of it unless filling)
        sx0, sy0 = max(0, -x), max(0, -top)
        dx0, dy0 = max(0, x), max(0, top)
        cw, ch = min(w - sx0, pw - dx0), min(h - sy0, ph - dy0)
        picture[dy0:dy0 + ch, dx0:dx0 + cw] = scaled[sy0:sy0 + ch, sx0:sx0 + cw]
        return picture

    def _resize(self, image: np.ndarray, w: int, h: int) -> np.ndarray:
        if image.shape[:2] == (h, w):
            return image
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)  # (1, 3, H, W) uint8
        if self.upscale == "sharp":
            out = F.interpolate(t, size=(h, w), mode="nearest-exact")  # = OpenGL NEAREST's texel choice
        else:
            # bilinear with half-pixel centres = OpenGL LINEAR; antialias only when shrinking
            shrink = h < image.shape[0] or w < image.shape[1]
            out = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
        return out[0].permute(1, 2, 0).contiguous().numpy()  # (h, w, 3) uint8
