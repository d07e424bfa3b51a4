"""Targets: which elements of a (B, C, H, W) tensor a bend touches.

A target is data (``Target``) parsed from a short text form that presets and OSC share:

    all                      every element (the default)
    channels 0 2 3           the listed channels
    random 0.25 [seed=7]     a seeded random fraction of elements, the same on every frame
    random_channels 0.5      a seeded random fraction of channels
    random_rows 0.1          a seeded random int(0.1 * H) of the rows, every channel (the
                             authors' add_rand_rows, but fixed across frames)
    random_cols 0.1          likewise columns (add_rand_cols)
    rows 10:20               rows a:b     (integers: cells; decimals like 0.25:0.5: fractions)
    cols 0.0:0.5             columns a:b
    box 10:20 5:30           rows a:b and columns c:d

Fractions let one target mean the same region at every U-Net resolution (64, 32, 16, 8).
The mask for a shape is built once and cached, so a target costs one ``torch.where`` a
frame.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

KINDS = ("all", "channels", "random", "random_channels", "random_rows", "random_cols", "rows", "cols", "box")
RANDOM_KINDS = ("random", "random_channels", "random_rows", "random_cols")

Span = tuple[float, float]


@dataclass(frozen=True)
class Target:
    kind: str = "all"
    channels: tuple[int, ...] = ()
    fraction: float = 1.0
    seed: int = 0
    rows: Optional[Span] = None
    cols: Optional[Span] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown target kind {self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.kind == "channels":
            if not self.channels or any(c < 0 for c in self.channels):
                raise ValueError("target 'channels' needs one or more channel indices >= 0, e.g. 'channels 0 2'")
        if self.kind in RANDOM_KINDS and not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"target '{self.kind}' fraction must be in 0..1, got {self.fraction}")
        if self.kind in ("rows", "box") and self.rows is None:
            raise ValueError(f"target '{self.kind}' needs a row span a:b")
        if self.kind in ("cols", "box") and self.cols is None:
            raise ValueError(f"target '{self.kind}' needs a column span a:b")
        for span in (self.rows, self.cols):
            if span is not None and not span[0] < span[1]:
                raise ValueError(f"target span {span[0]}:{span[1]} must have start < end")

    def __str__(self) -> str:
        if self.kind == "channels":
            return "channels " + " ".join(map(str, self.channels))
        if self.kind in RANDOM_KINDS:
            return f"{self.kind} {self.fraction:g} seed={self.seed}"
        spans = [s for s in (self.rows, self.cols) if s is not None]
        text = " ".join(f"{_fmt(a)}:{_fmt(b)}" for a, b in spans)
        return f"{self.kind} {text}".strip()


ALL = Target()


def _fmt(v: float) -> str:
    return str(v)  # ints print as cells (10), floats as fractions (0.25, 1.0)


def _span(text: str) -> Span:
    try:
        a, b = text.split(":")
        return (_number(a), _number(b))
    except ValueError:
        raise ValueError(f"bad span {text!r}; write start:end, e.g. 10:20 or 0.25:0.75") from None


def _number(text: str) -> float:
    """Integers stay int (cells); anything with a '.' is a float (a fraction of the size)."""
    text = text.strip()
    return float(text) if "." in text or "e" in text.lower() else int(text)


def parse_target(spec: Union[str, Sequence, Target, None]) -> Target:
    """A Target from its text form (see the module doc) or a list of its words."""
    if spec is None:
        return ALL
    if isinstance(spec, Target):
        return spec
    words = spec.split() if isinstance(spec, str) else [str(w) for w in spec]
    if not words:
        return ALL
    kind, args = words[0], words[1:]
    if kind not in KINDS:
        raise ValueError(f"unknown target kind {kind!r}; allowed: {', '.join(KINDS)}")
    try:
        if kind == "all":
            if args:
                raise ValueError("'all' takes no arguments")
            return ALL
        if kind == "channels":
            return Target("channels", channels=tuple(int(a) for a in args))
        if kind in RANDOM_KINDS:
            seed = 0
            rest = []
            for a in args:
                if a.startswith("seed="):
                    seed = int(a[5:])
                else:
                    rest.append(a)
            if len(rest) != 1:
                raise ValueError(f"'{kind}' takes one fraction and an optional seed=N")
            return Target(kind, fraction=float(rest[0]), seed=seed)
        if kind == "rows" and len(args) == 1:
            return Target("rows", rows=_span(args[0]))
        if kind == "cols" and len(args) == 1:
            return Target("cols", cols=_span(args[0]))
        if kind == "box" and len(args) == 2:
            return Target("box", rows=_span(args[0]), cols=_span(args[1]))
        raise ValueError(f"wrong number of arguments for {kind!r}")
    except ValueError as e:
        raise ValueError(f"bad target {' '.join(words)!r}: {e}. Forms: all | channels 0 2 | "
                         "random 0.25 [seed=N] | random_channels 0.5 | random_rows 0.1 | random_cols 0.1 | rows a:b | cols a:b | box a:b c:d") from None


def _resolve(span: Span, size: int) -> slice:
    a, b = span
    if isinstance(a, float) or isinstance(b, float):
        a, b = round(float(a) * size), round(float(b) * size)
    return slice(max(0, min(int(a), size)), max(0, min(int(b), size)))


@functools.lru_cache(maxsize=256)
def target_mask(target: Target, shape: tuple[int, ...], device: torch.device) -> Optional[Tensor]:
    """A bool mask broadcastable to ``shape`` (… C, H, W), or None for every element.

    Cached per (target, shape, device): random masks are drawn once from ``target.seed``
    and stay fixed across frames.
    """
    c, h, w = shape[-3:]
    if target.kind == "all":
        return None
    if target.kind == "channels":
        bad = [i for i in target.channels if i >= c]
        if bad:
            raise ValueError(f"target channels {bad} out of range: this layer has {c} channels (0..{c - 1})")
        mask = torch.zeros(c, 1, 1, dtype=torch.bool)
        mask[list(target.channels)] = True
    elif target.kind == "random":
        gen = torch.Generator().manual_seed(target.seed)
        mask = torch.rand(c, h, w, generator=gen) < target.fraction
    elif target.kind == "random_channels":
        gen = torch.Generator().manual_seed(target.seed)
        mask = (torch.rand(c, generator=gen) < target.fraction).view(c, 1, 1)
    elif target.kind in ("random_rows", "random_cols"):
        # exactly int(fraction * n) lines, as the authors' random.sample(range(n), int(k * n))
        n = h if target.kind == "random_rows" else w
        gen = torch.Generator().manual_seed(target.seed)
        picked = torch.randperm(n, generator=gen)[: int(target.fraction * n)]
        lines = torch.zeros(n, dtype=torch.bool)
        lines[picked] = True
        mask = lines.view(1, h, 1) if target.kind == "random_rows" else lines.view(1, 1, w)
    else:
        mask = torch.zeros(1, h, w, dtype=torch.bool)
        rows = _resolve(target.rows, h) if target.rows is not None else slice(None)
        cols = _resolve(target.cols, w) if target.cols is not None else slice(None)
        mask[:, rows, cols] = True
    return mask.to(device)
