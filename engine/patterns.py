"""A VJ's visual vocabulary, generated in code: the images netbend's own model is trained on.

    spec = PatternSpec.random(np.random.default_rng(7))
    image = render_pattern(spec, 128)        # (128, 128, 3) float32 in [0, 1]
    spec.caption                             # "orange rings on deep blue"

Every image is one pattern kind (rings, stripes, waves, …) drawn in a bright foreground
colour on a dark background, so that its caption — made from the generator's own
parameters — says exactly what is in it, and a classifier trained on these images can
check whether a model draws what it was prompted for. Edges are soft (a few pixels of
smoothstep) and spatial frequencies stay below one cycle per ~10 pixels at 128 px, so an
8× autoencoder can represent every image; a pattern scales with the image side.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("rings", "stripes", "waves", "plasma", "blobs", "grid", "spiral", "starfield", "tunnel", "kaleidoscope")

# Foreground colours: bright and saturated, one per hue family (RGB in 0..1).
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.92, 0.12, 0.10),
    "orange": (1.00, 0.50, 0.05),
    "yellow": (0.98, 0.90, 0.12),
    "green": (0.15, 0.85, 0.20),
    "cyan": (0.10, 0.88, 0.92),
    "blue": (0.15, 0.35, 1.00),
    "purple": (0.62, 0.20, 0.95),
    "pink": (1.00, 0.40, 0.75),
    "white": (0.95, 0.95, 0.95),
}
# Backgrounds: dark, so the foreground is always the main colour; each names its hue
# family so a caption never says "blue rings on deep blue".
BACKGROUNDS: dict[str, tuple[tuple[float, float, float], str]] = {
    "black": ((0.02, 0.02, 0.03), ""),
    "deep blue": ((0.02, 0.05, 0.30), "blue"),
    "dark purple": ((0.18, 0.03, 0.25), "purple"),
    "dark green": ((0.02, 0.20, 0.07), "green"),
    "dark red": ((0.28, 0.03, 0.04), "red"),
    "charcoal": ((0.14, 0.14, 0.15), "white"),
}


@dataclass(frozen=True)
class PatternSpec:
    """What one image shows; ``params`` are the kind's shape numbers, all drawn from the seed."""

    kind: str
    colour: str
    background: str
    params: dict = field(default_factory=dict, compare=False)

    @property
    def caption(self) -> str:
        return f"{self.colour} {self.kind} on {self.background}"

    @classmethod
    def random(cls, rng: np.random.Generator, kind: str | None = None, colour: str | None = None) -> "PatternSpec":
        kind = kind or KINDS[rng.integers(len(KINDS))]
        colour = colour or list(COLOURS)[rng.integers(len(COLOURS))]
        backgrounds = [b for b, (_, family) in BACKGROUNDS.items() if family != colour]
        background = backgrounds[rng.integers(len(backgrounds))]
        params = dict(
            cx=rng.uniform(-0.4, 0.4), cy=rng.uniform(-0.4, 0.4),
            freq=rng.uniform(2.5, 6.0),  # cycles across the image
            angle=rng.uniform(0, np.pi), phase=rng.uniform(0, 2 * np.pi),
            width=rng.uniform(0.3, 0.6),  # foreground share of one period
            twist=rng.uniform(2.0, 6.0), arms=int(rng.integers(2, 6)), folds=int(rng.integers(3, 8)),
            count=int(rng.integers(5, 12)), amp=rng.uniform(0.08, 0.25),
            seed=int(rng.integers(2 ** 31)),
            brightness=rng.uniform(0.8, 1.0), glow=rng.uniform(0.0, 0.25),
        )
        return cls(kind, colour, background, params)


def _smooth_band(v: np.ndarray, width: float, softness: float) -> np.ndarray:
    """A periodic band: v in cycles → 1 on ``width`` of each period, soft edges."""
    d = np.abs(((v % 1.0) - 0.5))  # 0 at the band's centre, 0.5 at the gap's
    return np.clip((width / 2 - d) / softness + 0.5, 0.0, 1.0)


def _mask(spec: PatternSpec, size: int) -> np.ndarray:
    """The foreground coverage (size, size) in [0, 1] for the spec's kind."""
    p = spec.params
    s = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    y, x = np.meshgrid(s, s, indexing="ij")
    x, y = x - p["cx"], y - p["cy"]
    r = np.sqrt(x * x + y * y) + 1e-6
    theta = np.arctan2(y, x)
    u = x * np.cos(p["angle"]) + y * np.sin(p["angle"])
    w = -x * np.sin(p["angle"]) + y * np.cos(p["angle"])
    f, ph, width = p["freq"], p["phase"] / (2 * np.pi), p["width"]
    soft = 0.08  # in cycles: a few pixels of anti-aliasing at the highest frequency
    rng = np.random.default_rng(p["seed"])
    kind = spec.kind
    if kind == "rings":
        return _smooth_band(f * r + ph, width, soft)
    if kind == "stripes":
        return _smooth_band(f * u / 2 + ph, width, soft)
    if kind == "waves":
        return _smooth_band(f * (u + p["amp"] * np.sin(2 * np.pi * 1.5 * w + p["phase"])) / 2 + ph, width, soft)
    if kind == "plasma":
        v = (np.sin(2 * np.pi * (0.6 * f * u / 2) + p["phase"]) + np.sin(2 * np.pi * (0.5 * f * w / 2))
             + np.sin(2 * np.pi * 0.4 * f * r + p["phase"]))
        return np.clip(0.5 + v / 4.5, 0.0, 1.0) ** 1.5
    if kind == "blobs":
        field_ = np.zeros_like(x)
        for _ in range(p["count"] // 2 + 2):
            bx, by, br = rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8), rng.uniform(0.12, 0.3)
            field_ += br * br / ((x + p["cx"] - bx) ** 2 + (y + p["cy"] - by) ** 2 + 1e-3)
        return np.clip((field_ - 0.9) / 0.35, 0.0, 1.0)
    if kind == "grid":
        a = _smooth_band(f * u / 2 + ph, 0.22, soft)
        b = _smooth_band(f * w / 2 + ph, 0.22, soft)
        return np.maximum(a, b)
    if kind == "spiral":
        return _smooth_band(p["arms"] * theta / (2 * np.pi) + f * r * 0.8 + ph, width, soft)
    if kind == "starfield":
        stars = np.zeros_like(x)
        n = p["count"] * 6
        for sx, sy, rad in zip(rng.uniform(-1.1, 1.1, n), rng.uniform(-1.1, 1.1, n), rng.uniform(0.018, 0.05, n)):
            d2 = (x + p["cx"] - sx) ** 2 + (y + p["cy"] - sy) ** 2
            stars = np.maximum(stars, np.exp(-d2 / (2 * rad * rad)))
        return np.clip(stars * 1.3, 0.0, 1.0)
    if kind == "tunnel":
        depth = _smooth_band(0.6 / (r + 0.15) * f / 3 + ph, 0.5, soft * 1.5)
        spokes = _smooth_band(p["arms"] * 2 * theta / (2 * np.pi), 0.5, soft * 1.5)
        return np.abs(depth - spokes) * np.clip(r * 3, 0.0, 1.0)  # a checkered tube, dark at its far end
    if kind == "kaleidoscope":
        wedge = 2 * np.pi / p["folds"]
        t = np.abs(((theta % wedge) + wedge) % wedge - wedge / 2)  # mirror-fold the angle
        kx, ky = r * np.cos(t), r * np.sin(t)
        v = np.sin(2 * np.pi * f * kx / 2 + p["phase"]) * np.cos(2 * np.pi * f * ky / 1.5)
        return np.clip((v - 0.1) / 0.5 + 0.5, 0.0, 1.0)
    raise ValueError(f"unknown pattern kind {kind!r}; allowed: {', '.join(KINDS)}")


def render_pattern(spec: PatternSpec, size: int = 128) -> np.ndarray:
    """(size, size, 3) float32 RGB in [0, 1]: the spec's pattern in its colours."""
    m = _mask(spec, size)[..., None]  # (H, W, 1)
    p = spec.params
    fg = np.asarray(COLOURS[spec.colour], np.float32) * p["brightness"]
    bg = np.asarray(BACKGROUNDS[spec.background][0], np.float32)
    # a soft glow of the foreground over the background keeps the image from being two flat colours
    s = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(s, s, indexing="ij")
    glow = p["glow"] * np.exp(-((xx - p["cx"]) ** 2 + (yy - p["cy"]) ** 2) / 0.5)[..., None]
    image = bg + (fg - bg) * np.clip(m + glow * (1 - m), 0.0, 1.0)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def pattern_batch(rng: np.random.Generator, n: int, size: int = 128) -> tuple[np.ndarray, list[PatternSpec]]:
    """n random images (n, 3, size, size) float32 in [0, 1] and their specs."""
    specs = [PatternSpec.random(rng) for _ in range(n)]
    images = np.stack([render_pattern(s, size).transpose(2, 0, 1) for s in specs])
    return images, specs


def vocabulary() -> list[str]:
    """Every word a caption can hold, for the tokenizer."""
    words = set(KINDS) | {"on"}
    for name in [*COLOURS, *BACKGROUNDS]:
        words.update(name.split())
    return sorted(words)
