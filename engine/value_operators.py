"""Point-wise and channel-space operators: each output value depends on the input values at
the same pixel only (the same element, or the channel vector of that pixel).

Sources: Dzwonczyk, Cella, Ban (DAFx 2024) and the authors' published code (github
dzluke/DAFX2024, ``util.py``). ``R1`` … ``R4`` are registered as operators of their own
(``rotate`` on that plane), so an OSC controller can send ``/netbend/bend/1/operator s R1``.
Each registers into ``engine.operators.OPERATORS`` (see that module for the contract).
"""
from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import torch
from torch import Tensor

from .operators import MIN_DIVISOR, NAMED_PLANES, Operator, blend, finite, operator


# -- the paper's point-wise operators ----------------------------------------------------


@operator("add", neutral=0.0)
def add(x: Tensor, r: float) -> Tensor:
    """x + r. Shape: any, kept."""
    return finite(x + r)


@operator("multiply", neutral=1.0)
def multiply(x: Tensor, r: float) -> Tensor:
    """x * r. Shape: any, kept."""
    return finite(x * r)


@operator("threshold")
def threshold(x: Tensor, r: float) -> Tensor:
    """The paper's eq. 3: 1 where x >= r, else 0."""
    return (x >= r).to(x.dtype)


@operator("threshold_abs", neutral=0.0)
def threshold_abs(x: Tensor, r: float) -> Tensor:
    """The authors' published threshold: 0 where |x| < r, x elsewhere."""
    return torch.where(x.abs() < r, torch.zeros_like(x), x)


@operator("invert")
def invert(x: Tensor, r: float) -> Tensor:
    """1/r - x. |r| < 1e-3 acts as +-1e-3 (r = 0 as +1e-3) so the offset stays finite."""
    r = float(r) if math.isfinite(r) else 0.0
    safe = math.copysign(max(abs(r), MIN_DIVISOR), r if r != 0 else 1.0)
    return finite(1.0 / safe - x)


@operator("soft_threshold", neutral=0.0)
def soft_threshold(x: Tensor, r: float) -> Tensor:
    """sign(x) * max(|x| - |r|, 0): shrink towards zero. Defined (0) at x = 0, unlike the
    authors' x / |x| form."""
    return torch.sign(x) * torch.clamp(x.abs() - abs(r), min=0.0)


@operator("power", neutral=1.0)
def power(x: Tensor, r: float) -> Tensor:
    """sign(x) * |x|^r. Sign-preserving so negative latents stay defined; for r < 0 the
    magnitude is floored at 1e-3 and the result clamped to the dtype's range."""
    magnitude = x.abs()
    if r < 0:
        magnitude = magnitude.clamp(min=MIN_DIVISOR)
    return finite(torch.sign(x) * magnitude.pow(r))


@operator("clamp")
def clamp(x: Tensor, r: float, lo: Optional[float] = None, hi: Optional[float] = None) -> Tensor:
    """Clamp to [lo, hi]; a bound not given is -|r| (lo) or +|r| (hi), so ``clamp`` alone
    follows r and ``opts = {lo = -1, hi = -0.5}`` is the authors' clamp((min, max)).
    lo > hi are swapped."""
    bound = abs(r) if math.isfinite(r) else torch.finfo(x.dtype).max
    a = -bound if lo is None else float(lo)
    b = bound if hi is None else float(hi)
    a, b = min(a, b), max(a, b)
    return x.clamp(a, b)


@operator("abs", neutral=0.0)
def absolute(x: Tensor, r: float) -> Tensor:
    """|x| faded in by r (1 = |x|)."""
    return blend(x, x.abs(), r)


@operator("noise", neutral=0.0)
def noise(x: Tensor, r: float, seed: int = 0) -> Tensor:
    """x + r * N(0, 1). The noise is drawn once per (seed, shape) and reused, so it is
    deterministic and costs nothing per frame; change ``seed`` for another pattern. Driven
    by rms (a mapping in_range [0, 1] -> out_range [0, 1]) it is the authors'
    add_gaussian_rms, except that their noise was drawn afresh every frame."""
    return finite(x + r * _fixed_noise(seed, tuple(x.shape), x.device, x.dtype))


@functools.lru_cache(maxsize=32)
def _fixed_noise(seed: int, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Tensor:
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(shape, generator=gen).to(device=device, dtype=dtype)


# -- channel-space operators -------------------------------------------------------------


def _plane(plane: "str | Sequence[int]", channels: int) -> tuple[int, int]:
    if isinstance(plane, str):
        if plane not in NAMED_PLANES:
            raise ValueError(f"unknown plane {plane!r}; use one of {sorted(NAMED_PLANES)} or a pair (i, j)")
        i, j = NAMED_PLANES[plane]
    else:
        i, j = (int(v) for v in plane)
    if i == j or not (0 <= i < channels and 0 <= j < channels):
        raise ValueError(f"rotation plane ({i}, {j}) needs two different channels in 0..{channels - 1}")
    return i, j


def rotation_matrix(r: float, plane: "str | Sequence[int]", channels: int = 4) -> Tensor:
    """The C x C matrix of a rotation by r in plane (i, j); R1..R4 equal the paper's."""
    i, j = _plane(plane, channels)
    m = torch.eye(channels, dtype=torch.float64)
    c, s = math.cos(r), math.sin(r)
    m[i, i], m[j, j], m[i, j], m[j, i] = c, c, -s, s
    return m


@operator("rotate", neutral=0.0)
def rotate(x: Tensor, r: float, plane: "str | Sequence[int]" = "R1") -> Tensor:
    """Rotate the channel vector at every pixel by angle r in ``plane`` (R1..R4 or (i, j)).
    Touches only channels i and j, so it costs two fused multiply-adds at any C."""
    i, j = _plane(plane, x.shape[-3])
    r = float(r) if math.isfinite(r) else 0.0
    c, s = math.cos(r), math.sin(r)
    xi, xj = x[..., i, :, :], x[..., j, :, :]
    out = x.clone()
    out[..., i, :, :] = c * xi - s * xj
    out[..., j, :, :] = s * xi + c * xj
    return out


def _plane_rotation(name: str) -> Operator:
    def op(x: Tensor, r: float) -> Tensor:
        return rotate(x, r, plane=name)

    i, j = NAMED_PLANES[name]
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"The paper's {name}: rotate by r in channel plane ({i}, {j}); rotate with plane={name}."
    return op


for _name in NAMED_PLANES:
    operator(_name, neutral=0.0)(_plane_rotation(_name))


@operator("rotate6", neutral=0.0)
def rotate6(x: Tensor, r: float, planes: Optional[Sequence[Sequence[int]]] = None) -> Tensor:
    """Rotate by r in each plane in turn: by default the six planes of channels 0..3, in
    the order (0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), or fewer on fewer channels.
    netbend's own composite (the paper and its code have the four single planes only)."""
    channels = x.shape[-3]
    if planes is None:
        k = min(channels, 4)
        planes = [(i, j) for i in range(k) for j in range(i + 1, k)]
    m = torch.eye(channels, dtype=torch.float64)
    r = float(r) if math.isfinite(r) else 0.0
    for plane in planes:
        m = rotation_matrix(r, plane, channels) @ m
    return _channel_matmul(x, m)


def _channel_matmul(x: Tensor, m: Tensor) -> Tensor:
    """out[c] = sum_k m[c, k] x[k] at every pixel. Shape: (..., C, H, W) kept."""
    m = m.to(device=x.device, dtype=x.dtype)
    return torch.einsum("ck,...khw->...chw", m, x)


@operator("mix", neutral=0.0)
def mix(x: Tensor, r: float, matrix: Optional[Sequence[Sequence[float]]] = None) -> Tensor:
    """Channel mixing by a C x C ``matrix`` (default: each channel takes the next one's
    values, a colour cycle), faded in by r."""
    channels = x.shape[-3]
    if matrix is None:
        m = torch.roll(torch.eye(channels, dtype=torch.float64), shifts=1, dims=1)
    else:
        m = torch.as_tensor(matrix, dtype=torch.float64)
        if m.shape != (channels, channels):
            raise ValueError(f"mix matrix must be {channels}x{channels} here, got {tuple(m.shape)}")
    return blend(x, _channel_matmul(x, m), r)


@operator("reflect")
def reflect(x: Tensor, r: float) -> Tensor:
    """Negate channel int(r); r wraps modulo the channel count, so any r is valid."""
    channels = x.shape[-3]
    c = int(r) % channels if math.isfinite(r) else 0
    out = x.clone()
    out[..., c, :, :] = -x[..., c, :, :]
    return out
